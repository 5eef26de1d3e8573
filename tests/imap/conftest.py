"""Fixtures that start throwaway Dovecot servers on 127.0.0.1 (see dovecot.py)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from .dovecot import DovecotServer, dovecot_binary, imap_binary_present, make_traversable_tmpdir
from .scenario import USERS


@pytest.fixture
def dovecot_tmp() -> Path:
    """A temp dir that the `vmail` user can traverse (pytest's tmp_path is 0700 root)."""
    if dovecot_binary() is None or not imap_binary_present():
        pytest.skip("Dovecot IMAP is not installed (apt-get install dovecot-imapd)")
    path = make_traversable_tmpdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_dovecot(dovecot_tmp: Path) -> Callable[[str, Path], DovecotServer]:
    """start_dovecot(name, mail_root) -> a running server for USERS; all stopped at teardown.

    On failure the servers' logs are attached to the report (pytest shows captured output).
    """
    servers: list[DovecotServer] = []

    def start(name: str, mail_root: Path) -> DovecotServer:
        server = DovecotServer(workdir=dovecot_tmp / f"dovecot-{name}", mail_root=mail_root,
                               users=dict(USERS))
        servers.append(server)
        return server.start()

    yield start
    for server in servers:  # shut down side by side: each takes about a second
        server.request_stop()
    for server in servers:
        server.stop()
    for server in servers:
        print(f"--- {server.log_path} ---\n{server.log_text()}")

"""Fixtures of the fault tests (issue 6 parts 2-3, issue 2 "Crashes" and "full destination disk").

Real parts only: the real CLI in a subprocess, a real LMDB index, a real OpenSSH sshd on 127.0.0.1,
a real tmpfs for the full disk, an in-process asyncssh SFTP server for the hostile source.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from faulttools import RECORD, start_fault_sshd


def pytest_terminal_summary(terminalreporter):
    if RECORD:
        terminalreporter.section("fault tests: what happened")
        for line in RECORD:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory):
    """The OpenSSH sshd of the fault tests (see faulttools.start_fault_sshd)."""
    with start_fault_sshd(tmp_path_factory.mktemp("fault-sshd")) as s:
        yield s


@pytest.fixture
def rng(request) -> random.Random:
    """Random kill moments, reproducible: MAILDIRSYNC_FAULT_SEED=N replays a run (the seed is printed)."""
    seed = int(os.environ.get("MAILDIRSYNC_FAULT_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)
    print(f"{request.node.nodeid}: MAILDIRSYNC_FAULT_SEED={seed}")
    return random.Random(seed)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size=..., nr_inodes=...) -> a fresh tmpfs directory; mount.remount(path, **opts) resizes it.
    Skips when this host does not let us mount (no CAP_SYS_ADMIN, e.g. an unprivileged container)."""
    mounted: list[Path] = []

    def opts(kw) -> str:
        return ",".join(f"{k}={v}" for k, v in kw.items())

    def mount(**kw) -> Path:
        path = tmp_path / f"tmpfs{len(mounted)}"
        path.mkdir()
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700," + opts(kw), "tmpfs", str(path)],
                           capture_output=True, text=True, check=False)
        if p.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs for the full-disk test (needs root with CAP_SYS_ADMIN): "
                        f"{p.stderr.strip()}")
        mounted.append(path)
        return path

    def remount(path: Path, **kw) -> None:
        subprocess.run(["mount", "-o", "remount," + opts(kw), str(path)], check=True)

    mount.remount = remount
    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)

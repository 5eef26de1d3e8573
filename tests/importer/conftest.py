"""Fixtures for the importer tests (builders in importer_fixtures.py)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# the builders module sits beside this file (works with any --import-mode)
sys.path.insert(0, str(Path(__file__).parent))
from typer.testing import CliRunner

from importer.cli import app
from importer_fixtures import HOSTILE_ACCOUNTS, build_hostile_tree, build_sme_tree, write  # noqa: E402


@pytest.fixture
def sme_tree(tmp_path: Path) -> Path:
    return build_sme_tree(tmp_path / "migration")


@pytest.fixture
def hostile_tree(tmp_path: Path) -> Path:
    """An SME tree whose accounts database is not in canonical form, with Maildirs no user owns."""
    return build_hostile_tree(tmp_path / "migration")


@pytest.fixture
def hostile_accounts(tmp_path: Path) -> Path:
    """HOSTILE_ACCOUNTS with a Latin-1 line and a CRLF line in it."""
    data = HOSTILE_ACCOUNTS.encode() + "ren\xe9=user|FirstName|Ren\xe9\ncrlf=user|FirstName|Cr\r\n".encode("latin-1")
    return write(tmp_path / "accounts", data)


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli():
    """Run ``maildirsync-import`` in-process; asserts there is never a traceback."""
    # click < 8.2 (the newest on Python 3.8) mixes stderr into stdout unless told not to.
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:
        runner = CliRunner()

    def run(*args: str) -> Ran:
        res = runner.invoke(app, [str(a) for a in args])
        r = Ran(res.exit_code, res.stdout, res.stderr, res.exception)
        assert "Traceback" not in r.output, r.output
        if res.exception is not None:
            assert isinstance(res.exception, SystemExit), repr(res.exception)
        return r

    return run


STANDINS = Path(__file__).parent / "standins"


@pytest.fixture
def standins(monkeypatch) -> Path:
    """The stand-ins (signal-event, journalctl, rpm, nested-event) first on PATH."""
    monkeypatch.setenv("PATH", f"{STANDINS}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    return STANDINS

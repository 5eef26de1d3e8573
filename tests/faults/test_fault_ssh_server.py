"""The SSH server killed in the middle of a transfer (issue 6 "the SSH server killed mid-transfer"), with
the real CLI against a real OpenSSH sshd.

The moment is made certain, not timed: the users are synced one at a time (-j 1), and once the first
message has landed on the destination the client is frozen (SIGSTOP), the server is killed, and the client
is thawed, so the kill always falls in the middle of the transfer (the other users' mail is still to come).

- The whole server gone (listener and sessions, as on a crash or a power cut): the run fails with a
  reason per user (exit 1, no traceback); nothing partial lands; once the server is back, a re-run
  converges.
- Only the live sessions killed (the listener lives on, as after a network cut): the run reconnects,
  resumes, says so, and completes.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from faulttools import (
    Truth, assert_converged, bases, make_sme8_world, our_tmp_leftovers, record, start_cli, start_fault_sshd,
)  # fmt: skip
from maildirsync.lab.corpus import CorpusSpec
from maildirsync.lab.sshd import kill_sessions
from mdtools import cli


@pytest.fixture
def server(tmp_path):
    s = start_fault_sshd(tmp_path / "sshd")
    yield s
    s.stop()


def first_message_landed(world) -> bool:
    for u in world.users:
        d = world.dest_maildir(u)
        for sub in ("cur", "new"):
            with os.scandir(d / sub) as it:
                if any(True for _ in it):
                    return True
    return False


def freeze_after_first_message(p, world, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not first_message_landed(world):
        assert p.poll() is None, "the run ended before any message landed"
        assert time.monotonic() < deadline, "no message landed"
        time.sleep(0.002)
    p.send_signal(signal.SIGSTOP)
    assert p.poll() is None, "the run ended before it could be frozen"


@pytest.mark.parametrize("transport", ["auto", "sftp"])
def test_server_killed_mid_transfer_fails_the_run_and_a_rerun_converges(tmp_path, server, transport):
    world = make_sme8_world(tmp_path, CorpusSpec(users=3, folders=3, messages=40, seed=51, layout="sme8"))
    truth = Truth().learn(world.src)
    args = world.args(server, "--transport", transport, "-j", "1")
    log = tmp_path / "run.log"
    p = start_cli(args, log)
    try:
        freeze_after_first_message(p, world)
        port, workdir = server.port, server.workdir
        server.crash()  # listener and every session: the source is gone
    finally:
        p.send_signal(signal.SIGCONT)
        rc = p.wait(timeout=300)
    out = log.read_text()
    assert rc == 1, out
    assert "Traceback" not in out
    failed = dict(re.findall(r"^(\S+): failed: (.*)$", out, re.MULTILINE))
    assert failed, out
    assert any("the source stopped answering" in r for r in failed.values()), failed
    for user, reason in failed.items():  # each says what went wrong, on which side
        assert "source" in reason and ("re-run maildirsync" in reason or "is sshd running" in reason), (user, reason)
    assert not truth.partials(world.dest)  # nothing partial landed
    assert not our_tmp_leftovers(world.dest)
    landed = len(bases(world.dest))

    back = start_fault_sshd(workdir, port=port)  # same keys: the known_hosts entry still holds
    try:
        again = cli(*args)
    finally:
        back.stop()
    assert again.returncode == 0, again.stdout + again.stderr
    assert_converged(world.pairs(), seconds=transport == "sftp")  # SFTP v3: whole-second mtimes
    record(f"SSH server killed mid-transfer ({transport}): exit 1, {len(failed)} user(s) failed with a reason, "
           f"{landed} complete messages had landed, 0 partial; the re-run converged")


def test_sessions_killed_mid_transfer_reconnect_and_complete(tmp_path, server):
    world = make_sme8_world(tmp_path, CorpusSpec(users=3, folders=3, messages=40, seed=52, layout="sme8"))
    log = tmp_path / "run.log"
    p = start_cli(world.args(server, "-j", "1"), log)
    try:
        freeze_after_first_message(p, world)
        assert kill_sessions(server) >= 1  # the listener lives on
    finally:
        p.send_signal(signal.SIGCONT)
        rc = p.wait(timeout=300)
    out = log.read_text()
    assert rc == 0, out
    assert "Traceback" not in out
    assert re.search(r"connection to \S+ lost .*; reconnected", out), out  # the report says what happened
    assert_converged(world.pairs())
    record("SSH sessions killed mid-transfer (listener alive): the run reconnected and completed, exit 0, "
           "destination equal to the source")

"""Dovecot's dotlock on dovecot-uidlist, taken as Dovecot takes it (file-dotlock.c): an exclusive
create holding ``<pid>:<host>``; a holder that is alive is waited for; a dead one's lock, or one untouched
for two minutes along with the list, is overridden."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from maildirsync.dotlock import LOCK_NAME, STALE_SECONDS, FolderLock, LockTimeout


def lock_path(d):
    return d / os.fsdecode(LOCK_NAME)


def test_taken_exclusively_with_our_pid_and_host_and_released(tmp_path):
    with FolderLock(os.fsencode(tmp_path)):
        assert lock_path(tmp_path).read_text() == f"{os.getpid()}:{socket.gethostname()}"
    assert not lock_path(tmp_path).exists()


def test_a_live_holder_is_waited_for_then_reported(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock_path(tmp_path).write_text(f"{holder.pid}:{socket.gethostname()}")
        t0 = time.monotonic()
        with pytest.raises(LockTimeout) as e:
            FolderLock(os.fsencode(tmp_path), wait=0.3).acquire()
        assert time.monotonic() - t0 >= 0.3
        assert f"process {holder.pid}" in str(e.value) and lock_path(tmp_path).exists()  # never taken from it
    finally:
        holder.kill()
        holder.wait()


def test_a_holder_that_releases_is_followed(tmp_path):
    lock_path(tmp_path).write_text(f"{os.getppid()}:{socket.gethostname()}")  # alive: our parent
    p = subprocess.Popen([sys.executable, "-c", f"import time, os; time.sleep(0.3); os.unlink({str(lock_path(tmp_path))!r})"])
    try:
        with FolderLock(os.fsencode(tmp_path), wait=10) as lk:
            assert lk.waited >= 0.2
    finally:
        p.wait()


def test_the_lock_of_a_dead_process_on_this_host_is_overridden(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock_path(tmp_path).write_text(f"{gone.pid}:{socket.gethostname()}")
    with FolderLock(os.fsencode(tmp_path), wait=1):
        assert lock_path(tmp_path).read_text().startswith(f"{os.getpid()}:")


@pytest.mark.parametrize("list_age, overridden", [(STALE_SECONDS + 60, True), (5, False)])
def test_an_unreadable_holder_is_overridden_only_after_two_quiet_minutes(tmp_path, list_age, overridden):
    """Another host's pid (or none) cannot be checked: stale once neither the lock nor the list changed."""
    lock_path(tmp_path).write_text("4242:another-host")
    old = time.time() - STALE_SECONDS - 60
    os.utime(lock_path(tmp_path), (old, old))
    (tmp_path / "dovecot-uidlist").write_text("3 V1 N1\n")
    t = time.time() - list_age
    os.utime(tmp_path / "dovecot-uidlist", (t, t))
    lk = FolderLock(os.fsencode(tmp_path), wait=0.3)
    if overridden:
        with lk:
            pass
    else:
        with pytest.raises(LockTimeout):
            lk.acquire()
        assert lock_path(tmp_path).read_text() == "4242:another-host"


@pytest.mark.parametrize(
    "age, overridden",
    [(10, True),  # a process killed between creating the lock and writing its pid in it
     (0, False)],  # just created: its maker may be writing its pid this instant
)  # fmt: skip
def test_a_lock_still_empty_after_two_seconds_is_overridden(tmp_path, age, overridden):
    lock_path(tmp_path).write_text("")
    t = time.time() - age
    os.utime(lock_path(tmp_path), (t, t))
    lk = FolderLock(os.fsencode(tmp_path), wait=0.3)
    if overridden:
        with lk:
            assert lock_path(tmp_path).read_text().startswith(f"{os.getpid()}:")
    else:
        with pytest.raises(LockTimeout):
            lk.acquire()
        assert lock_path(tmp_path).read_text() == ""

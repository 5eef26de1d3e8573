"""Dovecot's dotlock on a folder's ``dovecot-uidlist``, taken the way Dovecot takes it, so that a live
Dovecot on the destination can never number messages between our placing them and our listing them.

Dovecot creates ``dovecot-uidlist.lock`` exclusively and writes ``<pid>:<hostname>`` in it. A waiter
overrides the lock when that process is gone (same host), or when neither the lock nor the uidlist has
changed for two minutes; ours also one that is still empty after two seconds (its maker was killed before
writing its pid: a run of ours SIGKILLed there held the next one off). Dovecot waits at most about two
minutes for a lock, so ours is held for milliseconds: the placing of files already written and the
rewrite of the list, never a download.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from typing import Optional, Tuple

from .errors import MaildirsyncError

LOCK_NAME = b"dovecot-uidlist.lock"
STALE_SECONDS = 120  # MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT in Dovecot
WAIT_SECONDS = 30.0


class LockTimeout(MaildirsyncError):
    """Another process (the destination's Dovecot) held the folder's lock for too long."""

    exit_code = 1


def _holder(path: bytes) -> Tuple[Optional[int], Optional[str], Optional[os.stat_result]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None, None, None
    try:
        st = os.fstat(fd)
        text = os.read(fd, 256).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    pid, _, host = text.partition(":")
    return (int(pid) if pid.isdigit() else None), host, st


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# A lock that names no holder: its maker was killed between creating it and writing its pid (Dovecot writes
# its pid the moment it has created the lock). Older than this and still empty, it is nobody's.
EMPTY_STALE_SECONDS = 2.0


class FolderLock:
    """``with FolderLock(folder_dir, owner):`` holds the folder's dotlock."""

    def __init__(self, folder_dir: bytes, owner: Optional[Tuple[int, int]] = None, wait: float = WAIT_SECONDS):
        self.dir = folder_dir
        self.path = folder_dir + b"/" + LOCK_NAME
        self.owner = owner
        self.wait = wait
        self._ino: Optional[int] = None
        self.waited = 0.0

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        me = f"{os.getpid()}:{socket.gethostname()}".encode()
        t0 = time.monotonic()
        delay = 0.005
        while True:
            try:
                # Readable by the mail server from its creation on (it watches a lock it waits for, with
                # inotify, which needs that); it holds nothing but our pid.
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                if self._override_stale():
                    continue
                if time.monotonic() - t0 > self.wait:
                    pid, host, _ = _holder(self.path)
                    who = f"process {pid} on {host}" if pid else "another process"
                    raise LockTimeout(
                        f"{os.fsdecode(self.path)} has been held by {who} for over {self.wait:.0f} s "
                        "(the destination's Dovecot?); nothing was placed in that folder, the next run retries"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            try:
                if os.write(fd, me) != len(me):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
                if self.owner is not None:
                    # Dovecot runs as the mail user: it must be able to read the pid to know we are alive.
                    os.fchown(fd, *self.owner)
                self._ino = os.fstat(fd).st_ino
            except BaseException:
                # A lock without our pid would hold everyone off (us included) for two minutes: never leave one.
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
                raise
            finally:
                os.close(fd)
            self.waited = time.monotonic() - t0
            return

    def _override_stale(self) -> bool:
        """Remove the lock if its holder is gone, as Dovecot would. True if it was removed (or vanished)."""
        pid, host, st = _holder(self.path)
        if st is None:
            return True  # released meanwhile
        stale = False
        if pid is not None and host == socket.gethostname():
            stale = not _alive(pid)
        elif st.st_size == 0 and time.time() - st.st_mtime > EMPTY_STALE_SECONDS:
            stale = True
        elif time.time() - st.st_mtime > STALE_SECONDS:
            try:
                uidlist_age = time.time() - os.stat(self.dir + b"/dovecot-uidlist").st_mtime
            except OSError:
                uidlist_age = STALE_SECONDS + 1
            stale = uidlist_age > STALE_SECONDS
        if not stale:
            return False
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            return True
        if (now.st_ino, now.st_mtime_ns) != (st.st_ino, st.st_mtime_ns):
            return False  # replaced since we read it: someone else took it
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        return True

    def release(self) -> None:
        if self._ino is None:
            return
        try:
            if os.lstat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
        self._ino = None

"""The LMDB index: what the last successful sync saw on the source and wrote on the destination.

This is the only module that imports ``lmdb``. The index is derived data: if it is missing, corrupt or
of another schema it is moved aside and the next plan adopts what the destination already holds
(DESIGN.md §3, "adopt"), so a lost index never causes a re-download.

Layout (one environment per source, keys are bytes):
- ``msgs``: ``user \\0 folder \\0 base`` -> :class:`Rec`
- ``folders``: ``user \\0 folder`` -> :class:`FolderState` (source cur/new mtimes, control files)
- ``users``: ``user`` -> JSON of the user's last run (for ``maildirsync status``)
- ``meta``: ``schema`` -> version
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import lmdb

from .compat import SLOTS
from .errors import IndexBusy, IndexError_

SCHEMA = b"2"
_PREFIX = object()  # a Batch operation's value: delete every key starting with the operation's key
DEFER_OPS = 64  # batches smaller than this wait for the next large one (Batch.commit)
MAP_SIZE = 64 << 30  # address space only; the file grows as needed
# Reads (a folder's records or listings) and commits between two trims of the map (Index.trim). Each maps
# far more than it reads: the kernel maps the 16 pages around every page touched (fault-around), and a
# user's records lie scattered over the file once runs have rewritten them. On the medium bench a user's
# run mapped ~18 MB of a 108 MB index; trimmed once per user, four workers held up to 40 MB of it at once.
TRIM_EVERY = 8
TRIM_OPS = 256
_SUBDIR = {b"cur": 0, b"new": 1}
_SUBDIR_NAME = (b"cur", b"new")
_REC = struct.Struct("<Qq16sBBBH")


@dataclass(**SLOTS)
class Rec:
    """One message as the last sync left it. ``size``/``mtime_ns`` are the source's (and so the
    destination's: we copy mtimes); ``hash`` is the xxh3-128 of the content written."""

    src_subdir: bytes
    src_name: bytes
    dst_subdir: bytes
    dst_name: bytes
    size: int
    mtime_ns: int
    hash: bytes

    def pack(self, base: bytes) -> bytes:
        """Names are stored without the base, which the key already holds: half the index's size."""
        src = self.src_name[len(base) :] if self.src_name.startswith(base) else None
        dst = self.dst_name[len(base) :] if self.dst_name.startswith(base) else None
        flags = (src is None) | (dst is None) << 1
        src = self.src_name if src is None else src
        dst = self.dst_name if dst is None else dst
        head = _REC.pack(self.size, self.mtime_ns, self.hash, _SUBDIR[self.src_subdir], _SUBDIR[self.dst_subdir], flags, len(src))
        return head + src + dst

    @classmethod
    def unpack(cls, data: bytes, base: bytes) -> Rec:
        size, mtime, h, ss, ds, flags, n = _REC.unpack_from(data)
        off = _REC.size
        src, dst = bytes(data[off : off + n]), bytes(data[off + n :])
        return cls(
            _SUBDIR_NAME[ss],
            src if flags & 1 else base + src,
            _SUBDIR_NAME[ds],
            dst if flags & 2 else base + dst,
            size,
            mtime,
            h,
        )


@dataclass(**SLOTS)
class Ctl:
    """A control file as last carried: source stamp, and the destination copy we wrote."""

    src_size: int
    src_mtime_ns: int
    dst_hash: str  # hex xxh3-128 of what the destination held after our write
    dst_size: int
    dst_mtime_ns: int


@dataclass(**SLOTS)
class FolderState:
    # Source cur/new mtimes, only stored when the folder was fully synced and the stamp is trustworthy.
    dir_mtimes: dict[bytes, int] = field(default_factory=dict)
    controls: dict[bytes, Ctl] = field(default_factory=dict)
    # Destination cur/new mtimes after the last run wrote there: both sides unchanged since means the
    # folder has nothing to do, and neither its listing nor its records need reading.
    dst_mtimes: dict[bytes, int] = field(default_factory=dict)
    # The destination holds mail of its own in this folder: its numbering is the one clients know, and
    # is only ever extended (DESIGN.md §3). Sticky: a UID it gave is never given again.
    uids_own: bool = False
    uidvalidity: int | None = None  # the destination's UIDVALIDITY once it is one we wrote or accepted
    snap: bool = False  # the last run left this folder's listings (views.py): its stamps may spare a listing
    verbatim: bool = False  # the destination's dovecot-uidlist is the source's, byte for byte, as we wrote it
    problems: list = field(default_factory=list)  # what of its cur/new is not synced, said again every run

    def pack(self) -> bytes:
        d = {
            "dirs": {k.decode("latin-1"): v for k, v in self.dir_mtimes.items()},
            "ctl": {k.decode("latin-1"): list(_ctl_tuple(c)) for k, c in self.controls.items()},
            "dst": {k.decode("latin-1"): v for k, v in self.dst_mtimes.items()},
        }
        if self.uids_own:
            d["own"] = True
        if self.uidvalidity is not None:
            d["uv"] = self.uidvalidity
        if self.snap:
            d["snap"] = 1
        if self.verbatim:
            d["vb"] = 1
        if self.problems:
            d["problems"] = self.problems
        return json.dumps(d).encode()

    @classmethod
    def unpack(cls, data: bytes) -> FolderState:
        d = json.loads(bytes(data))
        return cls(
            {k.encode("latin-1"): v for k, v in d["dirs"].items()},
            {k.encode("latin-1"): Ctl(*v) for k, v in d["ctl"].items()},
            {k.encode("latin-1"): v for k, v in d.get("dst", {}).items()},
            d.get("own", False),
            d.get("uv"),
            bool(d.get("snap")),
            bool(d.get("vb")),
            d.get("problems", []),
        )


def _ctl_tuple(c: Ctl):
    return (c.src_size, c.src_mtime_ns, c.dst_hash, c.dst_size, c.dst_mtime_ns)


def _mkey(user: bytes, folder: bytes, base: bytes = b"") -> bytes:
    return user + b"\0" + folder + b"\0" + base


class Index:
    """An open index. ``Index.empty()`` stands in when a dry run finds no index: it reads as empty and
    cannot be written."""

    def __init__(self, env: lmdb.Environment | None, readonly: bool):
        self._env = env
        self.readonly = readonly
        self.path = env.path() if env is not None else None
        # Users are synced in parallel threads; py-lmdb 1.x refuses a second write transaction on the
        # environment instead of waiting for the first, so they take turns here.
        self.write_lock = threading.Lock()
        self.deferred: list[tuple] = []  # small batches held back: one transaction (one flush) for them all
        self.syncs: list = []  # what must be on disk before the deferred batches are written (Batch.commit)
        self._trims, self._spans = 0, None
        if env is not None:
            self._msgs = env.open_db(b"msgs", create=not readonly)
            self._folders = env.open_db(b"folders", create=not readonly)
            self._users = env.open_db(b"users", create=not readonly)
            self._meta = env.open_db(b"meta", create=not readonly)
            self._lists = _open_optional(env, b"lists", readonly)

    @classmethod
    def empty(cls) -> Index:
        return cls(None, readonly=True)

    # --- runs in flight ---------------------------------------------------------------------------------
    # A user's run that may leave files of ours in its destination's tmp/ (killed, failed) is marked by a
    # file in the state directory; only then does the next run look through every folder's tmp/ for them.
    # (Not flushed: lost in a crash, the leftovers are garbage Dovecot itself deletes after 36 hours.)
    dirty_dir: Path | None = None

    def _mark(self, user: bytes) -> Path | None:
        return self.dirty_dir / user.hex() if self.dirty_dir is not None else None

    def in_flight(self, user: bytes) -> bool:
        m = self._mark(user)
        return m is None or m.exists()

    def set_in_flight(self, user: bytes, on: bool) -> None:
        m = self._mark(user)
        if m is None:
            return
        try:
            if on:
                m.parent.mkdir(mode=0o700, exist_ok=True)
                m.touch()
            else:
                m.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            pass  # without the mark the next run looks through tmp/ anyway (in_flight of a missing dir)

    # --- reading -------------------------------------------------------------------------------------
    def user_records(self, user: bytes) -> dict[bytes, dict[bytes, Rec]]:
        """All message records of a user, by folder then base."""
        out: dict[bytes, dict[bytes, Rec]] = {}
        prefix = user + b"\0"
        for key, val in self._scan(self._msgs_db(), prefix):
            folder, base = key[len(prefix) :].split(b"\0", 1)
            out.setdefault(folder, {})[base] = Rec.unpack(val, base)
        return out

    def get_recs(self, user: bytes, folder: bytes, bases) -> dict[bytes, Rec]:
        """The records of these bases of a folder (those there are), in one read transaction."""
        out: dict[bytes, Rec] = {}
        if self._env is None:
            return out
        prefix = _mkey(user, folder)
        with self._env.begin(db=self._msgs, buffers=False) as txn:
            for base in bases:
                v = txn.get(prefix + base)
                if v is not None:
                    out[base] = Rec.unpack(v, base)
        self.trim(TRIM_EVERY)
        return out

    def folder_lists(self, user: bytes, folder: bytes) -> dict[bytes, bytes]:
        """What the last run left of a folder's listings (see views.py), by tag."""
        prefix = _mkey(user, folder)
        out = {k[len(prefix):]: v for k, v in self._scan(getattr(self, "_lists", None), prefix)}
        self.trim(TRIM_EVERY)
        return out

    def folder_records(self, user: bytes, folder: bytes) -> dict[bytes, Rec]:
        prefix = _mkey(user, folder)
        return {key[len(prefix) :]: Rec.unpack(val, key[len(prefix) :]) for key, val in self._scan(self._msgs_db(), prefix)}

    def user_folders(self, user: bytes) -> dict[bytes, FolderState]:
        prefix = user + b"\0"
        return {k[len(prefix) :]: FolderState.unpack(v) for k, v in self._scan(self._folders_db(), prefix)}

    def user_status(self, user: bytes) -> dict | None:
        if self._env is None:
            return None
        with self._env.begin(db=self._users) as txn:
            v = txn.get(user)
        return json.loads(bytes(v)) if v is not None else None

    def all_status(self) -> dict[bytes, dict]:
        return {k: json.loads(bytes(v)) for k, v in self._scan(self._users_db(), b"")}

    def meta(self, key: bytes) -> bytes | None:
        """What the index says of itself (``source``, ``destination``: what it pairs, for people)."""
        if self._env is None:
            return None
        with self._env.begin(db=self._meta) as txn:
            v = txn.get(key)
        return bytes(v) if v is not None else None

    def _msgs_db(self):
        return getattr(self, "_msgs", None)

    def _folders_db(self):
        return getattr(self, "_folders", None)

    def _users_db(self):
        return getattr(self, "_users", None)

    def _scan(self, db, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        if self._env is None or db is None:
            return
        with self._env.begin(db=db, buffers=False) as txn:
            cur = txn.cursor()
            if not cur.set_range(prefix):
                return
            for key, val in cur:
                if not key.startswith(prefix):
                    break
                yield key, val

    # --- writing -------------------------------------------------------------------------------------
    def batch(self) -> Batch:
        if self.readonly:
            raise IndexError_("internal: the index is open read-only (dry run)")
        return Batch(self)

    def trim(self, every: int = 1) -> None:
        """Hand the index pages read so far back to the page cache (see :func:`_drop_pages`), at every
        ``every``-th call (pages read again must be mapped again)."""
        self._trims += 1  # (threads may race here: a trim more or less)
        if self.path is None or self._trims % every:
            return
        if self._spans is None:  # the map is made once, at its full size: it never moves
            self._spans = _map_spans(os.path.join(self.path, "data.mdb"))
        _drop_pages(self._spans)

    def close(self) -> None:
        """Write what was deferred (see :meth:`Batch.commit`), then close. Raises IndexError_ if that fails."""
        if self._env is not None:
            try:
                self.flush()
            finally:
                self._env.close()
                self._env = None
            if not self.readonly and self.path is not None:
                _left_clean(Path(self.path))

    def flush(self) -> None:
        """Commit the small batches held back for one transaction."""
        with self.write_lock:
            ops, self.deferred = self.deferred, []
        if ops or self.syncs:
            b = Batch(self)
            b._ops = ops
            b.commit(defer=False)


class Batch:
    """Index changes gathered while the executor works; :meth:`commit` writes them in one transaction.
    The executor commits only after the destination changes they describe are durable."""

    def __init__(self, index: Index):
        self._index = index
        self._ops: list[tuple] = []

    def __len__(self) -> int:
        return len(self._ops)

    def put(self, user: bytes, folder: bytes, base: bytes, rec: Rec) -> None:
        self._ops.append((self._index._msgs, _mkey(user, folder, base), rec.pack(base)))

    def delete(self, user: bytes, folder: bytes, base: bytes) -> None:
        self._ops.append((self._index._msgs, _mkey(user, folder, base), None))

    def put_folder(self, user: bytes, folder: bytes, state: FolderState) -> None:
        self._ops.append((self._index._folders, user + b"\0" + folder, state.pack()))

    def put_user(self, user: bytes, status: dict) -> None:
        self._ops.append((self._index._users, user, json.dumps(status).encode()))

    def forget_user(self, user: bytes) -> None:
        """Drop every message and folder record of ``user`` (its destination is not the one they describe)."""
        self._ops.append((self._index._msgs, user + b"\0", _PREFIX))
        self._ops.append((self._index._folders, user + b"\0", _PREFIX))
        self._ops.append((self._index._lists, user + b"\0", _PREFIX))

    def put_lists(self, user: bytes, folder: bytes, lists: dict[bytes, bytes] | None) -> None:
        """What this run leaves of a folder's listings for the next one; None: nothing (look at it whole)."""
        prefix = _mkey(user, folder)
        self._ops.append((self._index._lists, prefix, _PREFIX))
        for t, blob in (lists or {}).items():
            self._ops.append((self._index._lists, prefix + t, blob))

    def put_meta(self, key: bytes, value: bytes) -> None:
        self._ops.append((self._index._meta, key, value))

    def commit(self, defer: bool = True, sync=None) -> None:
        """Write the batch. A small one (a user's status, a folder's stamps) is held back and written with
        the next large one or when the index closes: a transaction costs a disk flush, and a run over a
        thousand quiet mailboxes would pay a thousand. What is lost if the process dies first is only what
        the next run works out again (the index is derived data).

        ``sync``: a callable that makes durable the destination changes the batch describes; called before
        the batch is written, so a batch held back has its flush held back too (one for many users)."""
        ix = self._index
        if not self._ops and sync is None:
            return
        if defer and len(self._ops) < DEFER_OPS:
            with ix.write_lock:
                ix.deferred.extend(self._ops)
                if sync is not None:
                    ix.syncs.append(sync)
                full = len(ix.deferred) >= DEFER_OPS * 8
            self._ops = []
            if full:
                ix.flush()
            return
        try:
            with ix.write_lock:
                # Held while flushing: a batch written meanwhile by another thread must not overtake ours.
                syncs, ix.syncs = ix.syncs + ([sync] if sync is not None else []), []
                for fn in syncs:
                    fn()
                ops, ix.deferred = ix.deferred + self._ops, []
                if not ops:
                    return
                with ix._env.begin(write=True) as txn:
                    _apply(txn, ops, ix.trim)
                ix.trim()  # what the commit itself read: the pages it copied, the free list
        except lmdb.Error as e:
            self._ops.clear()
            raise IndexError_(_write_failure(self._index.path, e)) from e
        self._ops.clear()


def _apply(txn, ops: list[tuple], trim) -> None:
    """``trim`` is called every TRIM_OPS operations: a batch of held-back statuses touches a page in every
    corner of the file (LMDB reads the pages it copies through the map, and the map can be trimmed while a
    write transaction is open: the file is written, never the map)."""
    for n, (db, key, val) in enumerate(ops, 1):
        if n % TRIM_OPS == 0:
            trim()
        if val is _PREFIX:
            cur = txn.cursor(db=db)
            if cur.set_range(key):
                while cur.key().startswith(key) and cur.delete():
                    pass
        elif val is None:
            txn.delete(key, db=db)
        else:
            txn.put(key, val, db=db)


# --- opening, locking, rebuilding ---------------------------------------------------------------------


class StateDir:
    """``<state-dir>/<source-key>/``: the index of one source and the lock that guards it."""

    def __init__(self, path: Path):
        self.path = path
        self.index_path = path / "index"
        self.lock_path = path / "lock"
        self._lock_fd: int | None = None
        self._ahead: subprocess.Popen | None = None

    def check_ahead(self) -> None:
        """Start the page walk of :func:`_check_pages` now, in the background, so that it runs while the
        source is being connected to; opening the index waits for it."""
        if self._ahead is None and (self.index_path / "data.mdb").exists() and not _as_left(self.index_path):
            try:
                self._ahead = _start_walk(self.index_path)
            except OSError:
                self._ahead = None

    def _take_ahead(self) -> subprocess.Popen | None:
        p, self._ahead = self._ahead, None
        return p

    def acquire(self, command: str) -> None:
        """Take the run lock, or raise IndexBusy naming the holder."""
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise IndexError_(f"cannot create the state directory {self.path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another maildirsync run"
            os.close(fd)
            raise IndexBusy(
                f"the index {self.index_path} is in use by {holder}; wait for it to finish (or stop it) and run again"
            ) from None
        info = f"pid {os.getpid()} on {socket.gethostname()} ({command}), started {time.strftime('%Y-%m-%d %H:%M:%S')}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._lock_fd = fd

    def release(self) -> None:
        p = self._take_ahead()
        if p is not None:
            p.kill()
            p.communicate()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def open_index(self, readonly: bool) -> tuple[Index, str | None]:
        """Open the index; returns it and a note when it had to be set aside and started anew."""
        if readonly:
            if not (self.index_path / "data.mdb").exists():
                return Index.empty(), None
            try:
                _check_file(self.index_path / "data.mdb")
                _check_pages(self.index_path, self._take_ahead())
                env = lmdb.open(str(self.index_path), readonly=True, lock=False, max_dbs=8, map_size=MAP_SIZE)
                idx = Index(env, readonly=True)
                if _schema(env) != SCHEMA:
                    idx.close()
                    return Index.empty(), "the index is of another version; a real run rebuilds it from the destination"
                return idx, None
            except (lmdb.Error, ValueError) as e:
                return Index.empty(), f"the index is unreadable ({e}); a real run rebuilds it from the destination"
        note = None
        try:
            env = self._open_rw()
            if _schema(env) not in (None, SCHEMA):
                env.close()
                raise lmdb.InvalidError("schema version differs")
        except (lmdb.Error, ValueError) as e:
            aside = self.index_path.with_name(f"index.broken-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(self.index_path, aside)
            note = f"the index was unreadable ({e}); moved to {aside} and rebuilt from the destination"
            env = self._open_rw()
        with env.begin(write=True) as txn:
            meta = env.open_db(b"meta", txn=txn)
            txn.put(b"schema", SCHEMA, db=meta)
        idx = Index(env, readonly=False)
        idx.dirty_dir = self.path / "in-flight"
        if note is not None:  # a new index: no user has a status, so every tmp/ is looked through anyway
            shutil.rmtree(idx.dirty_dir, ignore_errors=True)
        return idx, note

    def _open_rw(self) -> lmdb.Environment:
        self.index_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        _check_file(self.index_path / "data.mdb")
        _check_pages(self.index_path, self._take_ahead())
        # metasync off: one flush per commit, not two. A crash may then undo the last commit, which costs
        # nothing but an adoption next run (the index is derived data); it cannot corrupt the file.
        env = lmdb.open(str(self.index_path), max_dbs=8, map_size=MAP_SIZE, metasync=False)
        # Touch every database once, so corruption shows up now rather than mid-run.
        with env.begin() as txn:
            for _ in txn.cursor():
                pass
        return env


def _open_optional(env: lmdb.Environment, name: bytes, readonly: bool):
    """A table an older index may lack: opened (made, if writable), or None when read-only and absent."""
    try:
        return env.open_db(name, create=not readonly)
    except lmdb.NotFoundError:
        return None


def _write_failure(path: str | None, e: Exception) -> str:
    """LMDB reports a short write on a full disk as EIO: say what the administrator can act on."""
    if path is not None:
        try:
            st = os.statvfs(path)
            if st.f_bavail * st.f_frsize < 1 << 20 or (st.f_files and st.f_favail == 0):
                return f"the disk holding the index ({path}) is full; free space and run again"
        except OSError:
            pass
    return f"cannot write the index {path}: {e}"


# Beside data.mdb: its inode, size, mtime and ctime as the last run that closed it cleanly left it. A file
# changed since in any way (a crash mid-write, a copy, a damaged disk written over) has another ctime,
# which no one can set back; one still as left needs no page walk (a second per two million messages).
CLEAN = "closed-clean"


def _stamp(data: Path) -> str | None:
    try:
        st = os.stat(data)
    except OSError:
        return None
    return f"{st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"


def _left_clean(path: Path) -> None:
    stamp = _stamp(path / "data.mdb")
    if stamp is None:
        return
    try:
        (path / CLEAN).write_text(stamp + "\n")
    except OSError:
        pass  # the next run walks the pages, as after a crash


def _as_left(path: Path) -> bool:
    try:
        text = (path / CLEAN).read_text().strip()
    except OSError:
        return False
    return bool(text) and text == _stamp(path / "data.mdb")


def _check_pages(path: Path, ahead: subprocess.Popen | None = None) -> None:
    """Read every page of every table in a child process first. LMDB meets a damaged page with an
    assertion that aborts the process, which no handler here could catch; the child dies instead, and
    the index is set aside and rebuilt. (About half a second per million messages.)

    ``ahead``: the same walk started before the run lock was taken (:meth:`StateDir.check_ahead`). Its
    success counts; a failure is walked again, since a run that held the lock then may have been writing."""
    if not (path / "data.mdb").exists() or _as_left(path):
        if ahead is not None:
            ahead.kill()
            ahead.communicate()
        return
    if ahead is not None:
        _out, err = ahead.communicate()
        if ahead.returncode == 0:
            return
    p = _start_walk(path)
    _out, err = p.communicate()
    if p.returncode != 0:
        why = f"killed by signal {-p.returncode}" if p.returncode < 0 else (err.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        raise lmdb.CorruptedError(f"reading it failed: {why}")


def _start_walk(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "maildirsync.index", "--walk", str(path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def _walk(path: str) -> None:
    env = lmdb.open(path, readonly=True, lock=False, max_dbs=8)
    spans = _map_spans(os.path.join(path, "data.mdb"))
    for name in (b"msgs", b"folders", b"users", b"lists"):
        try:
            db = env.open_db(name, create=False)
        except lmdb.NotFoundError:
            continue
        with env.begin(db=db, buffers=True) as txn:
            read = 0
            for n, (_key, val) in enumerate(txn.cursor()):
                if name == b"msgs" and len(val) < _REC.size:
                    raise lmdb.CorruptedError("a message record is too short")
                # The kernel maps the pages around each one read (fault-around), the other tables' too:
                # often enough that the walk's memory stays flat at any index size.
                read += len(val)
                if n % 500 == 499 or read > 1 << 22:
                    _drop_pages(spans)
                    read = 0
    env.close()


_madvise = None


def _map_spans(data: str) -> list:
    real = os.path.realpath(data).encode()
    try:
        with open("/proc/self/maps", "rb") as f:
            spans = [ln.split(None, 1)[0] for ln in f if ln.rstrip(b"\n").endswith(b" " + real)]
    except OSError:
        return []
    return [tuple(int(x, 16) for x in span.split(b"-")) for span in spans]


def _drop_pages(spans: list) -> None:
    """Drop the pages of the index's memory map from this process (madvise MADV_DONTNEED), leaving them in
    the page cache: a later read maps them again from there, unchanged (the map is of the file, shared,
    written through the file, never in place). Without it every page a run ever read counts in its
    resident memory until the end, and the index grows with the mailboxes. Linux only; elsewhere nothing."""
    global _madvise
    if _madvise is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
            _madvise = libc.madvise
        except (OSError, AttributeError):
            _madvise = False
    if _madvise:
        for lo, hi in spans:
            _madvise(lo, hi - lo, 4)  # MADV_DONTNEED


def _check_file(data: Path) -> None:
    """Refuse a data file shorter than its own meta page says: LMDB would map past the end of it and the
    process would die of SIGBUS on the first read (a truncated index is a case we must survive)."""
    if not data.exists():
        return
    psize = os.sysconf("SC_PAGE_SIZE")
    size = data.stat().st_size
    with open(data, "rb") as f:
        head = f.read(2 * psize)
    best = None
    for off in (0, psize):
        meta = head[off + 16 : off + 16 + 136]
        if len(meta) < 136:
            continue
        magic, _version = struct.unpack_from("<II", meta, 0)
        if magic != 0xBEEFC0DE:
            continue
        last_pg, txnid = struct.unpack_from("<QQ", meta, 120)
        if best is None or txnid > best[1]:
            best = (last_pg, txnid)
    if best is None:
        raise lmdb.InvalidError(f"{data} has no valid LMDB header")
    if size < (best[0] + 1) * psize:
        raise lmdb.InvalidError(f"{data} is truncated ({size} bytes, needs {(best[0] + 1) * psize})")


def _schema(env: lmdb.Environment) -> bytes | None:
    with env.begin() as txn:
        raw = txn.get(b"meta")
    if raw is None:
        return None
    meta = env.open_db(b"meta", create=False)
    with env.begin(db=meta) as txn:
        v = txn.get(b"schema")
    return bytes(v) if v is not None else None


if __name__ == "__main__":  # the child of _check_pages
    if len(sys.argv) == 3 and sys.argv[1] == "--walk":
        _walk(sys.argv[2])

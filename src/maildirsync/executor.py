"""Apply a plan to one destination Maildir.

Safety rules (DESIGN.md §4), and how this module keeps them:
- A message reaches ``new/`` or ``cur/`` only complete: it is written under ``tmp/``, hashed while it
  streams, size-checked, flushed to disk, given its mtime, and only then renamed into place.
- Nothing is ever overwritten by accident: a rename checks first that the new name is free, and is one
  rename(2), so a kill never leaves a message under two names; renames keep the inode.
- The index learns of a change only after the change is durable: index updates are held in a batch
  and committed after the directories they touched have been fsynced.
- Nothing is written outside the destination Maildir: every directory written to is checked to be a
  real directory (not a symbolic link) under the root, and names come validated from the listing.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import xxhash

from .compat import SLOTS
from . import maildir, uidlist
from .dotlock import FolderLock, LockTimeout
from .errors import IndexError_
from .index import Batch, Ctl, Rec
from .keywords import Translation, render
from .plan import (
    ADOPT, CONFLICT, COPY, DELETE, FETCH, MOVE, REFETCH, RENAME, Action, Plan,
)  # fmt: skip
from .renames import rename_noreplace
from .transport import CHUNK, Source, SourceError, read_local
from .uidlist import UidlistError

MESSAGE_KINDS = frozenset({FETCH, REFETCH, CONFLICT, COPY, MOVE, RENAME, ADOPT, DELETE})  # what progress counts
ARRIVING = frozenset({FETCH, CONFLICT, COPY, MOVE})  # a new file in its folder: its UID comes with it

TMP_PREFIX = b"maildirsync."
NEW_SUFFIX = b".maildirsync-new"  # a control file being replaced, beside its final name
COMMIT_EVERY = 512  # actions per index transaction
STAGE_FILES = 256  # fetched messages made durable together
STAGE_BYTES = 64 << 20
COMMIT_SECONDS = 2.0


class DiskFull(Exception):
    pass


class Stopped(Exception):
    pass


@dataclass(**SLOTS)
class Outcome:
    done: list[Action] = field(default_factory=list)
    failed: list[tuple[Action, str]] = field(default_factory=list)
    bytes: int = 0
    fatal: str | None = None  # why the user's run stopped early (disk full, connection lost)
    interrupted: bool = False
    controls: dict[tuple[bytes, bytes], Ctl | None] = field(default_factory=dict)
    renumbered: dict[bytes, int] = field(default_factory=dict)  # folder -> messages given another UID


def rel(folder: bytes, subdir: bytes, name: bytes) -> bytes:
    return maildir.in_folder(folder, subdir + b"/" + name)


def hash_file(path: bytes) -> tuple[bytes, int]:
    h = xxhash.xxh3_128()
    n = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        while b := os.read(fd, CHUNK):
            h.update(b)
            n += len(b)
    finally:
        os.close(fd)
    return h.digest(), n


class Executor:
    def __init__(
        self,
        user: bytes,
        source: Source,
        src_root: bytes,
        dst_root: bytes,
        batch: Batch,
        *,
        owner: tuple[int, int] | None = None,
        keywords: dict[bytes, Translation] | None = None,
        stop: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
    ):
        self.user, self.source, self.src_root, self.root = user, source, src_root, dst_root
        self.batch, self.owner = batch, owner
        self.keywords = keywords or {}
        self.stop = stop or threading.Event()
        self.progress = progress or (lambda files, nbytes: None)
        self.out = Outcome()
        self._dirty_dirs: set[bytes] = set()
        self._last_commit = time.monotonic()
        self._checked: dict[bytes, str | None] = {}
        self._tmp_n = 0
        self._fallback: list[Action] = []
        self._staged: list[tuple[Action, bytes, bytes]] = []
        self._staged_bytes = 0
        self.uids: dict = {}  # folder -> uidplan.UidsCtx, from the plan
        self.sep = b":"
        self.files: dict = {}  # rel -> small source files read with the listing (no round trip each)
        self._merged: set[bytes] = set()  # folders whose UID list this run merged...
        self._since_merge: set[bytes] = set()  # ...and those changed since their last merge
        self._lists: dict[bytes, tuple] = {}  # folder -> (stat key, parsed list) of the list we left there
        self._pending: dict[bytes, int] = {}  # folder -> messages still to arrive in it this run

    # --- paths -----------------------------------------------------------------------------------------
    def folder_path(self, folder: bytes) -> bytes:
        return maildir.folder_dir(self.root, folder)

    def path(self, folder: bytes, where: tuple[bytes, bytes]) -> bytes:
        return self.folder_path(folder) + b"/" + where[0] + b"/" + where[1]

    def check_folder(self, folder: bytes) -> None:
        """Refuse to write through a symbolic link or into anything that is not a real Maildir folder.
        A folder whose directory is there but lacks cur/, new/ or tmp/ (a run killed while creating it)
        gets them, as the mail server itself would."""
        why = self._checked.get(folder, "")
        if why == "":
            why = None
            base = self.folder_path(folder)
            for p in (base, base + b"/cur", base + b"/new", base + b"/tmp"):
                try:
                    st = os.lstat(p)
                except FileNotFoundError:
                    if p == base:
                        why = f"{maildir.show(p)} is missing"
                        break
                    self.make_dir(p)
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    why = f"{maildir.show(p)} is not a directory (a symbolic link?): not written through"
                    break
            self._checked[folder] = why
        if why:
            raise OSError(errno.ENOTDIR, why)

    def make_dir(self, path: bytes) -> bool:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            return False
        self.chown(path)
        self.dirty(path)
        return True

    def tmp_path(self, folder: bytes) -> bytes:
        self._tmp_n += 1
        return self.folder_path(folder) + b"/tmp/" + TMP_PREFIX + b"%d.%d" % (os.getpid(), self._tmp_n)

    # --- the run ---------------------------------------------------------------------------------------
    def run(self, plan: Plan) -> Outcome:
        self.uids, self.sep = plan.uids, plan.sep
        for a in plan.actions:
            if a.kind in ARRIVING:
                self._pending[a.folder] = self._pending.get(a.folder, 0) + 1
        fetches: list[Action] = []
        acts = plan.actions
        try:
            i = 0
            while i < len(acts):
                a = acts[i]
                if a.kind in (FETCH, REFETCH, CONFLICT):
                    fetches.append(a)
                    i += 1
                    continue
                if fetches:
                    # Everything after the fetches in plan order (deletes, control files) waits for them.
                    self.fetch_all(fetches)
                    fetches = []
                if a.kind == "control" and a.note == "uids":
                    j = i
                    while j < len(acts) and acts[j].kind == "control" and acts[j].note == "uids":
                        j += 1
                    self.merge_group(acts[i:j])
                    i = j
                    continue
                if a.kind == RENAME:
                    j = i
                    while j < len(acts) and acts[j].kind == RENAME:
                        j += 1
                    self.rename_group(acts[i:j])
                    i = j
                    continue
                if a.kind in (MOVE, COPY):
                    # Messages arriving in folders land together, under their locks, with one flush for
                    # their UID lists.
                    j = i
                    while j < len(acts) and acts[j].kind == a.kind:
                        j += 1
                    self.place_group(acts[i:j])
                    i = j
                    continue
                self.one(a)
                i += 1
            self.fetch_all(fetches + self._fallback)
        except Stopped:
            self.out.interrupted = True
        except DiskFull as e:
            self.out.fatal = f"the destination disk is full ({e}); free space and run again"
        except SourceError as e:
            self.out.fatal = f"the source stopped answering: {e}"
        except IndexError_ as e:
            self.out.fatal = str(e)
        finally:
            try:
                # The run's last flush waits for the index's next write: users finishing one after
                # another share it instead of paying one each.
                self.batch.commit(sync=self.durable_later())
                self._last_commit = time.monotonic()
            except IndexError_ as e:
                # What was done stays on the destination; the next run adopts it.
                self.out.fatal = self.out.fatal or str(e)
        return self.out

    def place_group(self, group: list[Action]) -> None:
        held, refused = self.lock_all(a.folder for a in group)
        try:
            no = dict(refused)
            folders = []
            for a in group:
                if a.folder in no:
                    self.out.failed.append((a, no[a.folder]))
                    continue
                self.one(a)
                folders.append(a.folder)
            self.merge_uids(*dict.fromkeys(folders))
        finally:
            for lk in reversed(held):
                lk.__exit__(None, None, None)

    def merge_group(self, group: list[Action]) -> None:
        """The run's last UID merges (after its deletes), all folders at once."""
        if self.stop.is_set():
            raise Stopped
        # A folder merged when its messages landed, and not touched since, is as merged as it gets: its
        # lock is not taken again (after a +1 % change that is every folder the run wrote in).
        need = {a.folder for a in group if a.folder not in self._merged or a.folder in self._since_merge}
        held, refused = self.lock_all(need)
        try:
            for folder, why in refused:
                self.out.failed.append((Action("control", folder, base=uidlist.NAME, note="uids"), why))
            folders = [a.folder for a in group if a.folder not in {f for f, _ in refused}]
            for f in folders:
                self.check_folder(f)
            self.merge_uids(*[f for f in folders if f in need])
            for a in group:
                if a.folder in folders:
                    self.finished(a)
        finally:
            for lk in reversed(held):
                lk.__exit__(None, None, None)

    def locked(self, folder: bytes):
        """Dovecot's lock of the folder, where this run merges its UID list (else nothing to guard)."""
        if folder not in self.uids:
            return _Unlocked()
        return FolderLock(self.folder_path(folder), self.owner)

    def one(self, a: Action) -> None:
        if self.stop.is_set():
            raise Stopped
        try:
            getattr(self, "do_" + a.kind)(a)
        except OSError as e:
            self._failed(a, e)
            return
        self.finished(a)

    def _failed(self, a: Action, e: OSError) -> None:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            self.out.failed.append((a, "no space left on the destination"))
            raise DiskFull(e.strerror) from e
        self.out.failed.append((a, e.strerror if not e.filename and e.strerror else str(e)))

    def rename_group(self, group: list[Action]) -> None:
        """The plan's flag changes (and new/ -> cur/), as :meth:`one` would do each, in one loop that
        checks each folder and makes its path once: after 10 % flags on the medium corpus there are 20 000
        of them, and the calls around each cost about as much as the rename itself. The plan sorts them
        by folder."""
        folder, fdir = None, b""
        for a in group:
            if self.stop.is_set():
                raise Stopped
            try:
                if a.folder != folder:
                    folder = None  # until checked: each action in a folder refused fails with the reason
                    self.check_folder(a.folder)
                    folder, fdir = a.folder, self.folder_path(a.folder) + b"/"
                # The module's name, looked up at each call: the fault tests trace it there.
                rename_noreplace(fdir + a.old[0] + b"/" + a.old[1], fdir + a.dst[0] + b"/" + a.dst[1])
            except OSError as e:
                self._failed(a, e)
                continue
            self._dirty_dirs.add(fdir + a.old[0])
            self._dirty_dirs.add(fdir + a.dst[0])
            self.record(a, a.rec.hash, a.rec.size, a.rec.mtime_ns)
            self.finished(a)

    def finished(self, a: Action, nbytes: int = 0) -> None:
        if a.kind in ARRIVING:
            self._pending[a.folder] -= 1
        if a.kind in MESSAGE_KINDS:
            self._since_merge.add(a.folder)
            if a.from_folder is not None:
                self._since_merge.add(a.from_folder)
        self.out.done.append(a)
        self.out.bytes += nbytes
        self.progress(1 if a.kind in MESSAGE_KINDS else 0, nbytes)
        self.commit()

    def commit(self, force: bool = False) -> None:
        """Make the finished work durable, then let the index know of it."""
        if not force and len(self.batch) < COMMIT_EVERY and time.monotonic() - self._last_commit < COMMIT_SECONDS:
            return
        self.durable()
        self.batch.commit()
        self._last_commit = time.monotonic()

    def durable(self) -> None:
        """Everything done on the destination so far, on disk: one syncfs(2) of its filesystem (a folder's
        directory fsync each would cost hundreds of flushes after a change that touches every folder)."""
        if self._dirty_dirs:
            self.durable_later()()

    def durable_later(self):
        """What :meth:`durable` would do, to be called later; a flush of the filesystem that starts after
        this call (anyone's) does it already."""
        dirs, self._dirty_dirs = self._dirty_dirs, set()
        if not dirs:
            return None
        return _Durable(self.root, dirs)

    def record(self, a: Action, h: bytes, size: int | None = None, mtime: int | None = None) -> None:
        assert a.src is not None and a.dst is not None
        self.batch.put(
            self.user,
            a.folder,
            a.base,
            Rec(a.src[0], a.src[1], a.dst[0], a.dst[1], a.size if size is None else size,
                a.mtime_ns if mtime is None else mtime, h),
        )  # fmt: skip

    def dirty(self, path: bytes) -> None:
        self._dirty_dirs.add(path.rsplit(b"/", 1)[0])

    def rename(self, src: bytes, dst: bytes) -> None:
        """Rename a message, keeping its inode, in one atomic step (a kill cannot leave it under two
        names), never over an existing ``dst`` (see renames.py)."""
        rename_noreplace(src, dst)
        self.dirty(dst)
        self.dirty(src)

    def chown(self, fd_or_path) -> None:
        if self.owner is not None:
            os.chown(fd_or_path, *self.owner, follow_symlinks=False) if not isinstance(
                fd_or_path, int
            ) else os.fchown(fd_or_path, *self.owner)

    # --- actions ---------------------------------------------------------------------------------------
    def do_mkdir(self, a: Action) -> None:
        self.make_dir(self.folder_path(a.folder))
        self._checked.pop(a.folder, None)
        self.check_folder(a.folder)  # creates cur/, new/ and tmp/

    def do_record(self, a: Action) -> None:
        if a.note == "gone":
            r = a.rec
            self.batch.put(self.user, a.folder, a.base, Rec(a.src[0], a.src[1], r.dst_subdir, b"", r.size, r.mtime_ns, r.hash))
            return
        self.record(a, a.rec.hash, a.rec.size, a.rec.mtime_ns)

    def do_forget(self, a: Action) -> None:
        self.batch.delete(self.user, a.folder, a.base)

    def do_delete(self, a: Action) -> None:
        self.check_folder(a.folder)
        p = self.path(a.folder, a.old)
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass  # already gone: the aim is reached
        self.dirty(p)
        self.batch.delete(self.user, a.folder, a.base)

    def do_move(self, a: Action) -> None:
        self.check_folder(a.folder)
        self.check_folder(a.from_folder)
        dst = self.path(a.folder, a.dst)
        self.rename(self.path(a.from_folder, a.old), dst)
        if a.mtime_ns != a.rec.mtime_ns:
            os.utime(dst, ns=(a.mtime_ns, a.mtime_ns), follow_symlinks=False)
        self.batch.delete(self.user, a.from_folder, a.base)
        self.record(a, a.rec.hash)

    def do_copy(self, a: Action) -> None:
        self.check_folder(a.folder)
        self.check_folder(a.from_folder)
        fd = os.open(self.path(a.from_folder, a.old), os.O_RDONLY | os.O_NOFOLLOW)
        try:
            h = self.write_message(a, _fd_chunks(fd), expect=a.rec.hash)
        finally:
            os.close(fd)
        if h is None:
            # The destination copy is not what we once wrote: take the message from the source instead.
            self._fallback.append(Action(FETCH, a.folder, a.base, src=a.src, dst=a.dst, size=a.size, mtime_ns=a.mtime_ns))
            raise OSError(errno.EIO, "local copy differs from the index; downloading it instead")

    def do_adopt(self, a: Action) -> None:
        self.check_folder(a.folder)
        old = self.path(a.folder, a.old)
        h, n = hash_file(old)
        if n != a.size:
            raise OSError(errno.EAGAIN, "changed on the destination during the run")
        if a.dst != a.old:
            self.rename(old, self.path(a.folder, a.dst))
        self.record(a, h)

    def do_control(self, a: Action) -> None:
        self.check_folder(a.folder)
        if a.note == "uids":
            self.merge_group([a])
            return
        if a.base == b"dovecot-keywords":
            with self.locked(a.folder):  # Dovecot reads and writes it under the uidlist lock
                self._control(a)
            return
        self._control(a)

    def _control(self, a: Action) -> None:
        fp = self.folder_path(a.folder) + b"/" + a.base
        key = (a.folder, a.base)
        if a.note == "keywords":
            data = render(self.keywords[a.folder].dst_entries)
            self.write_file(fp, data, None)
            self.out.controls.setdefault(key, None)
            return
        srel = (a.folder + b"/" if a.folder else b"") + a.base
        data = self.files[srel] if srel in self.files else self.source.read(self.src_root, srel)
        if data is None:
            raise OSError(errno.ENOENT, "vanished on the source since the listing")
        if a.note == "check":
            try:
                with open(fp, "rb") as f:
                    mine = f.read()
            except FileNotFoundError:
                mine = None
            st = os.stat(fp)
            # Identical: ours, carried from now on. Different: the destination's own, left alone for good.
            mark = xxhash.xxh3_128_hexdigest(data) if mine == data else "theirs"
            self.out.controls[key] = Ctl(a.size, a.mtime_ns, mark, st.st_size, st.st_mtime_ns)
            return
        if a.note == "merge":
            try:
                with open(fp, "rb") as f:
                    mine = f.read().splitlines()
            except FileNotFoundError:
                mine = []
            extra = [ln for ln in data.splitlines() if ln and ln not in mine]
            data = b"".join(ln + b"\n" for ln in mine + extra)
            if extra:
                self.write_file(fp, data, None)
            # A merged file is the destination's own from now on: never "ours" to overwrite.
            self.out.controls[key] = Ctl(a.size, a.mtime_ns, "merged", len(data), 0)
            return
        self.write_file(fp, data, a.mtime_ns)
        # Read with another size than listed: the source rewrote it since the listing, within the same
        # (whole) second perhaps. Its stamp must not pass for the version we hold: carry it again next run.
        src_size = a.size if len(data) == a.size else -1
        self.out.controls[key] = Ctl(src_size, a.mtime_ns, xxhash.xxh3_128_hexdigest(data), len(data), a.mtime_ns)

    def merge_uids(self, *folders: bytes) -> None:
        """Merge each folder's UID list with what the folder holds now. The caller holds their locks: no
        Dovecot can number a message between our listing it here and our writing the list. The lists are
        written beside their names, made durable together (one flush for them all), then renamed."""
        done = self.prepare_uids(folders)
        if any(tmp for _f, _p, tmp, _n in done) and not _sync_filesystem(self.root):
            for _f, _p, tmp, _n in done:
                if tmp:
                    _fsync_path(tmp)
        self.commit_uids(done)

    def prepare_uids(self, folders, incoming: dict | None = None) -> list:
        """Each folder's merged list, written beside its name (not yet durable, not yet in place).
        ``incoming``: folder -> {base: name} of messages about to land there (they count as present)."""
        done = []
        for folder in folders:
            ctx = self.uids.get(folder)
            if ctx is None:
                continue
            try:
                prepared = self._prepare_uids(folder, ctx, (incoming or {}).get(folder))
            except OSError as e:
                self._uids_failed(folder, e)
                continue
            if prepared is None:
                continue  # waits for the rest of its messages: not merged
            done.append(prepared)
            self._merged.add(folder)
            self._since_merge.discard(folder)
        return done

    def commit_uids(self, done: list) -> None:
        for folder, path, tmp, stale in done:
            try:
                if tmp:
                    os.replace(tmp, path)
                    self.dirty(path)
                for n in stale:
                    # Before the switch: Dovecot numbered this folder otherwise. No client uses it yet: it
                    # rebuilds its index from the list we wrote.
                    _unlink_quiet(self.folder_path(folder) + b"/" + n)
            except OSError as e:
                self._uids_failed(folder, e)

    def _uids_failed(self, folder: bytes, e: OSError) -> None:
        a = Action("control", folder, base=uidlist.NAME, note="uids")
        self.out.failed.append((a, e.strerror or str(e)))
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(e.strerror) from e

    def _prepare_uids(self, folder: bytes, ctx, incoming: dict | None = None):
        """(folder, path, the new list written beside it or None, index files to remove); None when the
        list is to wait for messages still to come (the source's list as it is, once they are all here)."""
        arriving = len(incoming or ())
        fdir = self.folder_path(folder)
        path = fdir + b"/" + uidlist.NAME
        try:
            data, st = read_local(path)
        except FileNotFoundError:
            data, st = None, None
        key = (st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else None
        cached = self._lists.get(folder)
        ours_still = cached is not None and cached[0] == key  # the list we wrote here ourselves, untouched since
        if ctx.verbatim:
            as_planned = st is not None and ((st.st_size, st.st_mtime_ns) == ctx.dst_stamp or ours_still)
            if as_planned and not self._pending.get(folder, 0) - arriving and not self._failed_here(folder):
                # The source's list as it is: every message it numbers is here, or gone for good.
                tmp = None
                ctx.left = key
                if data != ctx.src_data:
                    tmp = path + NEW_SUFFIX
                    self._write_tmp(tmp, ctx.src_data)
                    t = os.stat(tmp)
                    ctx.left = (t.st_ino, t.st_size, t.st_mtime_ns)  # the rename keeps them
                    self._lists[folder] = (ctx.left, None)
                ctx.same = True
                return folder, path, tmp, []
            if not as_planned or self._failed_here(folder):
                ctx.verbatim = False  # merged the slow way from now on
            elif self._pending.get(folder, 0) - arriving:
                return None  # not all here yet: the list waits for the rest
        if ctx.src is None:
            ctx.src_list()
        if ctx.ours is None:
            ctx.ours_set()
        if ours_still and cached[1] is not None:
            dst = cached[1]
        else:
            try:
                dst = uidlist.parse(data, self.sep) if data is not None else None
            except UidlistError:
                dst = None  # Dovecot would rebuild it and renumber every message: ours replaces it
        present = {}
        for sub in (b"new", b"cur"):  # cur last: the later state of a message wins
            for name in os.listdir(fdir + b"/" + sub):
                if maildir.is_message_name(name):
                    present[maildir.base_of(name, self.sep)] = name
        present.update(incoming or {})
        names = os.listdir(fdir)
        m = uidlist.merge(
            ctx.src, dst, present, ctx.ours, own_before=ctx.own_before, uidvalidity_ours=ctx.uidvalidity_ours,
            has_index=any(n.startswith(b"dovecot.index") for n in names), folder=folder,
            dst_raw=data if dst is not None else None, on_source=ctx.on_source, src_raw=ctx.src_data,
        )  # fmt: skip
        tmp = None
        new = data
        ctx.left = key
        if m.uidlist is not None:
            new = m.data()
            if new != data:
                tmp = path + NEW_SUFFIX
                self._write_tmp(tmp, new)
                t = os.stat(tmp)
                ctx.left = (t.st_ino, t.st_size, t.st_mtime_ns)
                # (The source's file as read says more than the merge: read it again if merged again.)
                self._lists[folder] = (ctx.left, m.uidlist if m.raw is None else None)
        ctx.same = new is not None and new == ctx.src_data
        self.out.renumbered[folder] = self.out.renumbered.get(folder, 0) + m.renumbered
        ctx.own_before = ctx.own_before or m.own
        if m.uidvalidity is not None:
            ctx.uidvalidity_ours = m.uidvalidity
        ctx.merged = m
        stale = [n for n in names if n.startswith(b"dovecot.index")] if m.reindex else []
        return folder, path, tmp, stale

    def _failed_here(self, folder: bytes) -> bool:
        return any(a.folder == folder or a.from_folder == folder for a, _ in self.out.failed)

    def _write_tmp(self, tmp: bytes, data: bytes) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            _write_all(fd, data)
            self.chown(fd)
        finally:
            os.close(fd)

    def lock_all(self, folders) -> tuple[list, list]:
        """Take the locks of ``folders`` (those whose lists this run merges), in folder order. Returns the
        locks held and the folders whose lock could not be had (with the reason)."""
        held, refused = [], []
        for folder in sorted(set(folders)):
            lk = self.locked(folder)
            try:
                lk.__enter__()
            except LockTimeout as e:
                refused.append((folder, str(e)))
                continue
            except OSError as e:  # the lock file cannot even be made (a full disk): nothing lands there
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    for h in reversed(held):
                        h.__exit__(None, None, None)
                    raise DiskFull(e.strerror) from e
                refused.append((folder, f"cannot take {maildir.show(self.folder_path(folder))}'s lock: {e.strerror}"))
                continue
            held.append(lk)
        return held, refused

    def write_file(self, path: bytes, data: bytes, mtime_ns: int | None) -> None:
        tmp = path + NEW_SUFFIX
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
            self.chown(fd)
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self.dirty(path)

    # --- fetching --------------------------------------------------------------------------------------
    def fetch_all(self, actions: list[Action]) -> None:
        todo = []
        for a in actions:
            try:
                self.check_folder(a.folder)
            except OSError as e:
                self.out.failed.append((a, e.strerror))
                continue
            todo.append(a)
        if not todo:
            return
        if self.stop.is_set():
            raise Stopped
        stream = self.source.fetch(self.src_root, [rel(a.folder, *a.src) for a in todo])
        try:
            for a, got in zip(todo, stream):
                if got.error:
                    self.out.failed.append((a, f"{got.error} (changed on the source since the listing?)"))
                    continue
                try:
                    self.write_message(a, got.chunks, stage=True)
                except SourceError:
                    raise
                except OSError as e:
                    if e.errno in (errno.ENOSPC, errno.EDQUOT):
                        self.out.failed.append((a, "no space left on the destination"))
                        raise DiskFull(e.strerror) from e
                    self.out.failed.append((a, e.strerror or str(e)))
                    continue
                if len(self._staged) >= STAGE_FILES or self._staged_bytes >= STAGE_BYTES:
                    self.land_staged()
                if self.stop.is_set():
                    self.land_staged()  # the messages in flight are finished before stopping
                    raise Stopped
            self.land_staged()
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            for _a, tmp, _d in self._staged:  # not landed (disk full, source lost): tmp/ leftovers
                _unlink_quiet(tmp)
            self._staged.clear()

    def land_staged(self) -> None:
        """Make the staged tmp/ files durable with one filesystem flush, then put each in place, folder by
        folder under the folder's lock, with its UID list merged before the lock goes. One syncfs(2) for
        hundreds of messages costs what a single fsync(2) does, and nothing reaches new/ or cur/ before its
        content is on disk."""
        if not self._staged:
            return
        staged, self._staged, self._staged_bytes = self._staged, [], 0
        groups: dict[bytes, list] = {}
        for item in staged:
            groups.setdefault(item[0].folder, []).append(item)
        pending = dict.fromkeys(t for _a, t, _d in staged)  # the tmp/ files not yet landed (in order)
        held: list = []
        lists: list = []
        try:
            held, refused = self.lock_all(groups)
            for folder, why in refused:
                for a, tmp, _d in groups.pop(folder):
                    del pending[tmp]
                    _unlink_quiet(tmp)
                    self.out.failed.append((a, why))
            # Each folder's list as it will be once its messages are in: written now, so that one flush makes
            # the messages and their lists durable together.
            incoming = {f: {maildir.base_of(a.dst[1], self.sep): a.dst[1] for a, _t, _d in items}
                        for f, items in groups.items()}  # fmt: skip
            before = {f: (c.own_before, c.uidvalidity_ours, self.out.renumbered.get(f, 0), self._lists.get(f))
                      for f, c in self.uids.items() if f in groups}  # fmt: skip
            lists = self.prepare_uids(groups, incoming)
            _flush(self.root, [*pending, *(tmp for _f, _p, tmp, _n in lists if tmp)])
            for folder, items in groups.items():
                for a, tmp, digest in items:
                    del pending[tmp]
                    self._land_one(a, tmp, digest)
            missing = {a.folder for a, _e in self.out.failed}
            self.commit_uids([d for d in lists if d[0] not in missing])
            failed = {a.folder for a, _e in self.out.failed}  # a list that could not be put in place too
            for d in lists:  # merged with these messages counted in: as merged as it gets, now they landed
                if d[0] not in failed:
                    self._since_merge.discard(d[0])
            for d in lists:  # a message that did not land: its folder's list is made again without it
                if d[0] in missing:
                    if d[2]:
                        _unlink_quiet(d[2])
                    ctx = self.uids[d[0]]
                    ctx.own_before, ctx.uidvalidity_ours, self.out.renumbered[d[0]], cached = before[d[0]]
                    if cached is None:
                        self._lists.pop(d[0], None)
                    else:
                        self._lists[d[0]] = cached
            self.merge_uids(*[d[0] for d in lists if d[0] in missing])
            lists = []
        finally:
            for _f, _p, tmp, _n in lists:
                if tmp:
                    _unlink_quiet(tmp)
            for lk in reversed(held):
                lk.__exit__(None, None, None)
            for t in pending:  # not landed (disk full): tmp/ leftovers
                _unlink_quiet(t)

    def _land_one(self, a: Action, tmp: bytes, digest: bytes) -> None:
        try:
            self.land(a, tmp, digest)
        except OSError as e:
            _unlink_quiet(tmp)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                self.out.failed.append((a, "no space left on the destination"))
                raise DiskFull(e.strerror) from e
            self.out.failed.append((a, e.strerror or str(e)))
            return
        self.finished(a, a.size)

    def write_message(self, a: Action, chunks, expect: bytes | None = None, stage: bool = False) -> bytes | None:
        """Stream a message into tmp/ and check it. Then either put it in place now (fsynced alone) or,
        with ``stage``, leave it for :meth:`land_staged`. Returns its hash, or None (failure recorded,
        nothing placed) when it arrived with another size than listed (it changed on the source while we
        read it) or another hash than ``expect``."""
        tmp = self.tmp_path(a.folder)
        h = xxhash.xxh3_128()
        n = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            try:
                for chunk in chunks:
                    h.update(chunk)
                    n += len(chunk)
                    _write_all(fd, chunk)
                digest = h.digest()
                if n != a.size or (expect is not None and digest != expect):
                    if n != a.size:
                        self.out.failed.append(
                            (a, f"read {n} bytes, listed {a.size}: it changed on the source; the next run retries")
                        )
                    os.close(fd)
                    fd = -1
                    os.unlink(tmp)
                    return None
                if not stage:
                    os.fsync(fd)
                self.chown(fd)
                os.utime(fd, ns=(a.mtime_ns, a.mtime_ns))
            finally:
                if fd >= 0:
                    os.close(fd)
            if stage:
                self._staged.append((a, tmp, digest))
                self._staged_bytes += n
                return digest
            self.land(a, tmp, digest)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        return digest

    def land(self, a: Action, tmp: bytes, digest: bytes) -> None:
        """Put a durable tmp/ file in place and record it."""
        dst = self.path(a.folder, a.dst)
        if a.kind == REFETCH:
            old = self.path(a.folder, a.old)
            os.replace(tmp, old)  # atomic: readers see the old or the new content, never a mix
            self.dirty(old)
            if a.old != a.dst:
                self.rename(old, dst)
        else:
            self.rename(tmp, dst)
        self.record(a, digest)


class _Unlocked:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


try:
    _syncfs = ctypes.CDLL(None, use_errno=True).syncfs
except (OSError, AttributeError):  # not Linux, or a libc without it
    _syncfs = None


class _FsFlush:
    """syncfs(2) shared by the users synced in parallel: a thread that needs its writes on disk waits for a
    flush that started after it asked, and at most one runs at a time, so four users finishing together
    cost one flush, not four (a flush costs what the whole filesystem has pending, not what we wrote)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.next_id = 1  # the id the next flush to start will have
        self.done = 0
        self.running = False
        self.ok = True

    def sync(self, fd: int, target: int | None = None) -> bool:
        """``target``: the id of a flush that is enough (one that had not started when it was taken)."""
        with self.cond:
            if target is None:
                target = self.next_id
            while self.done < target:
                if self.running:
                    self.cond.wait()
                    continue
                self.running = True
                mine = self.next_id
                self.next_id += 1
                self.cond.release()
                try:
                    ok = _syncfs(fd) == 0
                finally:
                    self.cond.acquire()
                    self.running = False
                    self.done, self.ok = mine, ok
                    self.cond.notify_all()
            return self.ok


_flushes: dict[int, _FsFlush] = {}
_flushes_lock = threading.Lock()


def _fs_flush(fd: int) -> _FsFlush:
    dev = os.fstat(fd).st_dev
    with _flushes_lock:
        return _flushes.setdefault(dev, _FsFlush())


def _sync_filesystem(root: bytes, target: int | None = None) -> bool:
    """syncfs(2) of the filesystem holding ``root``; False where there is none (then fsync one by one)."""
    if _syncfs is None:
        return False
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        return _fs_flush(fd).sync(fd, target)
    finally:
        os.close(fd)


class _Durable:
    """A flush owed for changes made in ``dirs`` (see :meth:`Executor.durable_later`)."""

    def __init__(self, root: bytes, dirs: set[bytes]):
        self.root, self.dirs, self.target = root, dirs, None
        if _syncfs is not None:
            try:
                fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                return
            try:
                f = _fs_flush(fd)
                with f.cond:
                    self.target = f.next_id
            finally:
                os.close(fd)

    def __call__(self) -> None:
        if _sync_filesystem(self.root, self.target):
            return
        for d in self.dirs:
            try:
                fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                pass  # the directory went away: nothing left in it to make durable


def _flush(root: bytes, paths: list[bytes]) -> None:
    """Make ``paths`` (all under ``root``) durable: one syncfs(2) of root's filesystem, or an fsync each."""
    if _sync_filesystem(root):
        return
    for p in paths:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_path(path: bytes) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    n = os.write(fd, data)
    if n == len(data):  # what a regular file does but for a full disk or a signal
        return
    view = memoryview(data)[n:]
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fd_chunks(fd: int):
    while b := os.read(fd, CHUNK):
        yield b


def _unlink_quiet(path: bytes) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def clean_tmp(root: bytes, folders) -> None:
    """Remove what an interrupted run of ours left behind: our files in tmp/ (deliveries in progress by
    the mail server are not ours to touch) and control files written beside their final name."""
    for folder in folders:
        d = maildir.folder_dir(root, folder)
        _remove_ours(d + b"/tmp", lambda n: n.startswith(TMP_PREFIX))
        _remove_ours(d, lambda n: n.endswith(NEW_SUFFIX))


def _remove_ours(d: bytes, ours) -> None:
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        if ours(n):
            _unlink_quiet(d + b"/" + n)

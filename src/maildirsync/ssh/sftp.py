"""Reading the source over SFTP only: what an account that may not run commands still allows.

SFTP v3 (OpenSSH 4.3 to 9.x) gives whole-second mtimes; they are reported as ``sec * 10**9``. A newer
server (asyncssh's) may negotiate v4+ and give nanoseconds, which are used as they are.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections import deque
from collections.abc import Iterator, Mapping, Sequence

import asyncssh

from ..transport import (
    CHUNK, DIR, FILE, LINK, OTHER, Fetched, RawEntry, RawScan, SourceError, blob_of, moved_dirs, named_entries,
)
from .bridge import Abandoned, Pipe
from .connection import LOST, Connection
from .stream import fetched_from

FIRST = 32 * 1024  # one read this size brings a typical message whole; larger ones split into
# several requests and cost more CPU than they save (measured)
WINDOW = 64  # files in flight: hides the 3 round trips (open, read, close) each one costs
LIST_CONCURRENCY = 16

_ERRNO = {
    asyncssh.SFTPNoSuchFile: errno.ENOENT,
    asyncssh.SFTPPermissionDenied: errno.EACCES,
    asyncssh.SFTPNotADirectory: errno.ENOTDIR,
    asyncssh.SFTPNoSuchPath: errno.ENOENT,
}


def as_oserror(e: asyncssh.SFTPError, path: bytes) -> OSError:
    code = next((n for cls, n in _ERRNO.items() if isinstance(e, cls)), errno.EIO)
    return OSError(code, os.strerror(code) if code != errno.EIO else (e.reason or "SFTP error"), path)


def _kind(attrs: asyncssh.SFTPAttrs) -> str:
    if attrs.permissions is not None:
        m = attrs.permissions
        return FILE if stat.S_ISREG(m) else DIR if stat.S_ISDIR(m) else LINK if stat.S_ISLNK(m) else OTHER
    t = attrs.type
    return {asyncssh.FILEXFER_TYPE_REGULAR: FILE, asyncssh.FILEXFER_TYPE_DIRECTORY: DIR,
            asyncssh.FILEXFER_TYPE_SYMLINK: LINK}.get(t, OTHER)


def _mtime_ns(attrs: asyncssh.SFTPAttrs) -> int:
    if attrs.mtime_ns is not None:
        return attrs.mtime_ns
    return (attrs.mtime or 0) * 1_000_000_000


async def ascan_plan(alistdir, root: bytes, known: Mapping[bytes, int], concurrency: int = LIST_CONCURRENCY) -> RawScan:
    """:func:`maildirsync.transport.scan_plan`, with the directories of one level listed concurrently
    (each listing is several round trips); the result is assembled in scan_plan's order."""
    out = RawScan()
    sem = asyncio.Semaphore(concurrency)

    async def visit(rel: bytes, messages: bool = False):
        path = root + b"/" + rel if rel else root
        async with sem:
            try:
                found = await alistdir(path)
            except OSError as e:
                return e
        return blob_of(rel, found, out.rejected) if messages else named_entries(rel, found, out.rejected)

    def take(rel: bytes, res) -> list[RawEntry] | None:
        if isinstance(res, OSError):
            out.errors.append(f"{rel.decode(errors='backslashreplace')}: {res.strerror or res}")
            return None
        if isinstance(res, bytes):
            out.dirs[rel] = res
            return None
        out.tops.extend(res)
        return res

    def maildirs(entries: list[RawEntry]) -> list[bytes]:
        return [e.rel for e in moved_dirs(entries, known, out.unchanged)]

    top = await visit(b"")
    if isinstance(top, OSError):
        raise SourceError(f"cannot read {root.decode(errors='backslashreplace')}: {top.strerror or top}")
    out.tops.extend(top)
    folders = [e.rel for e in top if e.kind == DIR and e.rel.startswith(b".") and e.rel not in (b".", b"..")]
    root_dirs = maildirs(top)
    listed = await asyncio.gather(*(visit(r, True) for r in root_dirs), *(visit(r) for r in folders))
    folder_res = listed[len(root_dirs):]
    # The folders' cur/new are known only once the folders are listed: a second round.
    sub_dirs = [maildirs(r) if not isinstance(r, OSError) else [] for r in folder_res]
    sub_listed = iter(await asyncio.gather(*(visit(d, True) for ds in sub_dirs for d in ds)))
    # Assemble in scan_plan's order: root, its cur/new, then each folder followed by its cur/new.
    for rel, res in zip(root_dirs, listed):
        take(rel, res)
    for rel, res, ds in zip(folders, folder_res, sub_dirs):
        take(rel, res)
        for d in ds:
            take(d, next(sub_listed))
    return out


class SftpSource:
    """A :class:`~maildirsync.transport.Source` over SFTP. Thread-safe; reads only."""

    transport = "sftp"

    def __init__(self, conn: Connection, *, owns_connection: bool = True) -> None:
        self.c = conn
        self._owns = owns_connection

    # -- listing
    async def _alistdir(self, path: bytes) -> list[RawEntry]:
        async def op(sftp: asyncssh.SFTPClient) -> list[RawEntry]:
            out = []
            async for n in sftp.scandir(path):
                name = n.filename
                if name in (b".", b".."):
                    continue
                a = n.attrs
                out.append(RawEntry(name, _kind(a), a.size or 0, _mtime_ns(a)))
            return out

        try:
            return await self.c.retrying_sftp(op)
        except asyncssh.SFTPError as e:
            if isinstance(e, LOST):
                raise
            raise as_oserror(e, path) from None

    def scan(self, root: bytes, known: Mapping[bytes, int]) -> RawScan:
        return self.c.run(ascan_plan(self._alistdir, root, known))

    # -- reading
    async def _first(self, path: bytes) -> tuple[str, object]:
        """("whole", data) for a file shorter than FIRST, ("big", first bytes), or ("err", message)."""

        async def op(sftp: asyncssh.SFTPClient):
            f = await sftp.open(path, "rb")
            try:
                data = await f.read(FIRST, 0)
            finally:
                await f.close()
            await self.c.paid(len(data))
            return data

        try:
            data = await self.c.retrying_sftp(op)
        except asyncssh.SFTPError as e:
            if isinstance(e, LOST):
                raise
            return "err", as_oserror(e, path).strerror
        return ("whole" if len(data) < FIRST else "big"), data

    async def _stream(self, path: bytes, offset: int, pipe: Pipe) -> None:
        """The rest of a big file from ``offset``; after a reconnect it resumes where it broke off."""
        f = None
        gen = -1
        try:
            while True:
                try:
                    if f is None:
                        sftp, gen = await self.c.sftp()
                        f = await sftp.open(path, "rb")
                    chunk = await f.read(CHUNK, offset)
                except LOST as e:
                    f = None
                    await self.c.lost(gen, e)
                    continue
                except asyncssh.SFTPError as e:
                    await pipe.put(("ferr", as_oserror(e, path)))
                    return
                if not chunk:
                    break
                await self.c.paid(len(chunk))
                offset += len(chunk)
                await pipe.put(("data", chunk), len(chunk))
            await pipe.put(("eof",))
        finally:
            if f is not None:
                try:
                    await f.close()
                except (asyncssh.Error, OSError):
                    pass

    async def _produce(self, root: bytes, rels: Sequence[bytes], pipe: Pipe) -> None:
        pending: deque = deque()
        it = iter(rels)

        def refill() -> None:
            while len(pending) < WINDOW:
                rel = next(it, None)
                if rel is None:
                    return
                pending.append((rel, asyncio.ensure_future(self._first(root + b"/" + rel))))

        try:
            refill()
            while pending:
                rel, task = pending.popleft()
                tag, data = await task
                refill()
                if tag == "err":
                    await pipe.put(("err", rel, data))
                elif tag == "whole":
                    await pipe.put(("whole", rel, data), len(data))  # type: ignore[arg-type]
                else:
                    await pipe.put(("open", rel))
                    await pipe.put(("data", data), len(data))  # type: ignore[arg-type]
                    await self._stream(root + b"/" + rel, len(data), pipe)  # type: ignore[arg-type]
            pipe.finish()
        except Abandoned:
            pass
        except Exception as e:
            pipe.finish(e if isinstance(e, SourceError) else SourceError(f"SFTP fetch failed: {e}"))
        finally:
            for _, t in pending:
                t.cancel()

    def fetch(self, root: bytes, rels: Sequence[bytes]) -> Iterator[Fetched]:
        pipe = Pipe(self.c.loop)
        fut = asyncio.run_coroutine_threadsafe(self._produce(root, list(rels), pipe), self.c.loop)
        return fetched_from(pipe, fut)

    def read(self, root: bytes, rel: bytes) -> bytes | None:
        path = root + b"/" + rel

        async def op(sftp: asyncssh.SFTPClient) -> bytes | None:
            try:
                a = await sftp.lstat(path)
            except asyncssh.SFTPNoSuchFile:
                return None
            if _kind(a) != FILE:
                # As LocalSource's O_NOFOLLOW: a control file that is a link or a directory is not read.
                raise OSError(errno.ELOOP if _kind(a) == LINK else errno.EISDIR, "not a regular file", path)
            try:
                async with sftp.open(path, "rb") as f:
                    data = await f.read()
                await self.c.paid(len(data))
                return data
            except asyncssh.SFTPNoSuchFile:
                return None

        try:
            return self.c.run(self.c.retrying_sftp(op))
        except asyncssh.SFTPError as e:
            if isinstance(e, LOST):
                raise SourceError(f"SFTP read failed: {e}") from None
            raise as_oserror(e, path) from None

    def exists(self, root: bytes) -> bool:
        async def op(sftp: asyncssh.SFTPClient) -> bool:
            try:
                return stat.S_ISDIR((await sftp.stat(root)).permissions or 0)
            except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPPermissionDenied, asyncssh.SFTPNoSuchPath):
                return False

        return self.c.run(self.c.retrying_sftp(op))

    def close(self) -> None:
        if self._owns:
            self.c.close()

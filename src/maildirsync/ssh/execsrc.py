"""Reading the source with its own tools over exec channels: ``find -printf`` to list, ``tar`` to send.

One channel lists a whole Maildir (about 6x faster than SFTP readdir) and one tar stream carries a whole
batch of messages (about 4x faster than a file at a time over SFTP); a user's batch is one request to a
shell kept open for the run (tarloop.py), not a session of its own. Only options that GNU find 4.2 and
GNU tar 1.15 (CentOS 5, SME 8) know are used. Every command only reads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import errno
import zlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import asyncssh
import xxhash

from ..maildir import SOURCE_UNLISTED
from ..transport import (
    CHUNK, DIR, FILE, LINK, OTHER, Fetched, RawEntry, RawScan, SourceError, encode, moved_dirs, parse_mtime,
)
from . import tarloop
from .bridge import Abandoned, Pipe
from .connection import LOST, Connection
from .errors import ProtocolError
from .stream import fetched_from
from .tarstream import REGULAR, BufferedReader, next_member, padded

WHOLE = 1 << 20  # files up to this size go through the pipe in one piece
# The receive window of a tar stream: what the source may send before we have read it, and what asyncssh
# holds for us meanwhile. With its default, 2 MiB, and the pipes behind them (bridge.Pipe), the tar streams
# of four workers held ~35 MB of the initial sync's peak memory on the medium bench (128 MiB, now 94 MiB);
# 512 KiB still covers 20 ms of round trip at 25 MB/s a stream. The listings keep the default: find's
# output is read as fast as it comes, and a smaller window only slowed it.
WINDOW = 512 * 1024
ROOT_MISSING = 97
TAR = b"tar -cf - --format=gnu --no-recursion"  # a loop's tar: its names are its arguments
TAR_STDIN = TAR.decode() + " --null -T -"  # a tar of its own: its names on stdin, NUL-terminated
_KIND = {b"f": FILE, b"d": DIR, b"l": LINK, b"o": OTHER}

# One -printf per type rather than %y, which GNU find 4.2 may lack. NUL-terminated: names may hold
# newlines. %T@ is seconds with an optional fraction, parsed exactly by parse_mtime.
# The root's and the folders' own entries print as "/<type> <size> <mtime> <path>": a '/' first, which no
# entry of a cur/new can start with. Those print as the records of transport.encode, straight into the
# bytes the engine compares with the last run's, and follow their directory's own line.
TOP = (r"\( -type f -printf '/f %s %T@ %p\0' -o -type d -printf '/d %s %T@ %p\0'"
       r" -o -type l -printf '/l %s %T@ %p\0' -o -printf '/o %s %T@ %p\0' \)")
MSGS = (r"\( -type d -printf '/d %s %T@ %p\0' -o -type f -printf '%f/%s/%T@\0'"
        r" -o -type l -printf '\001l%f/%s/%T@\0' -o -printf '\001o%f/%s/%T@\0' \)")
# Dovecot's index files are not printed (maildir.SOURCE_UNLISTED), nor looked into should one be a directory.
UNLISTED = r"\( \( " + " -o ".join(f"-name '{p.decode()}*'" for p in SOURCE_UNLISTED) + r" \) -prune \)"
# First pass: the root and the folders, not any cur/new yet.
# (Descending no further than depth 2 anyway, this only keeps find out of the root's cur/new/tmp.)
PRUNE_TOP = r"\( \( -type d ! -name '.*' -prune \) -o -true \)"
ARG_BYTES = 32 * 1024  # of paths per find: a quarter of the arguments a CentOS 5 kernel takes
PROLOGUE = "LC_ALL=C; export LC_ALL; cd {root} || exit %d; " % ROOT_MISSING


def shq(b: bytes) -> str:
    """A shell word for ``b``: single-quoted, or octal printf for bytes that are not UTF-8."""
    try:
        s = b.decode()
    except UnicodeDecodeError:
        return '"$(printf \'' + "".join(f"\\{c:03o}" for c in b) + "')\""
    return "'" + s.replace("'", "'\\''") + "'"


def parse_top(rec: bytes) -> tuple[bytes, RawEntry]:
    """``<type> <size> <mtime> <root>/./<rel>`` (the leading '/' already taken off) -> (root, entry)."""
    t, size, mtime, path = rec.split(b" ", 3)
    where = _split(path)
    if where is None:
        raise ProtocolError(f"find printed {path[:200]!r}, which is under no Maildir asked for")
    return where[0], RawEntry(where[1], _KIND[t], int(size), parse_mtime(mtime))


def parse_find_errors(stderr: bytes) -> list[tuple[bytes | None, str]]:
    """``find: './x': Permission denied`` (old finds: no quotes) -> (b"x", "Permission denied"). A find
    line that does not parse comes back as (None, line): still an error, so nothing will be deleted."""
    out: list[tuple[bytes | None, str]] = []
    for line in stderr.splitlines():
        if not line.strip():
            continue
        if not line.startswith(b"find: "):
            continue  # not find's: noise from the login shell's rc files, which a real source may have
        body = line[6:]
        if b": " not in body:
            out.append((None, line.decode(errors="backslashreplace")))
            continue
        path, _, msg = body.rpartition(b": ")
        if path[:1] in (b"'", b"`") and path.endswith(b"'"):
            path = path[1:-1]
        if path.startswith(b"./"):
            path = path[2:]
        out.append((path, msg.decode(errors="backslashreplace")))
    return out


@dataclass
class _Partial:
    """The file being streamed when the connection dropped: how much of it the engine already has."""

    rel: bytes
    sent: int


class ExecSource:
    """A :class:`~maildirsync.transport.Source` using ``find``/``tar`` on the source. Thread-safe."""

    transport = "exec"

    def __init__(self, conn: Connection, *, owns_connection: bool = True, tools: Tools | None = None,
                 gentle: bool = True, loops: int = 2) -> None:
        from .sftp import SftpSource

        self.c = conn
        self._owns = owns_connection
        self._sftp = SftpSource(conn, owns_connection=False)
        tools = tools or Tools()
        self.gzip = tools.gzip
        # The source is a production mail server while this runs: our find and tar run at the lowest CPU
        # and I/O priority it allows.
        self.nice = ("nice -n 19 " if tools.nice and gentle else "") + ("ionice -c 3 " if tools.ionice and gentle else "")
        # Shells that run one tar after another (tarloop.py): a shell's tars have its priority.
        self.loops = tarloop.Loops(conn, f"LC_ALL=C; export LC_ALL; exec {self.nice}sh -s", loops, WINDOW)

    # -- running a command
    async def _run(self, cmd: str, stdin: bytes = b"", on_stdout=None) -> tuple[int | None, bytes, bytes]:
        """Run ``cmd``; stdout goes to ``on_stdout(bytes)`` as it arrives (or is returned whole)."""

        async def op(conn: asyncssh.SSHClientConnection):
            async with self.c.channels:
                if on_stdout is not None:
                    on_stdout(None)  # a retried command starts over
                proc = await conn.create_process(cmd, encoding=None)
                async with proc:
                    if stdin:
                        proc.stdin.write(stdin)
                    proc.stdin.write_eof()
                    err = asyncio.ensure_future(proc.stderr.read())
                    parts = []
                    try:
                        while True:
                            data = await proc.stdout.read(1 << 18)
                            if not data:
                                break
                            await self.c.paid(len(data))
                            if on_stdout is None:
                                parts.append(data)
                            else:
                                on_stdout(data)
                        errs = await err
                    finally:
                        err.cancel()
                    await proc.wait_closed()
                    if proc.exit_status is None and proc.exit_signal is None and conn.is_closed():
                        raise asyncssh.ConnectionLost("connection closed during a command")
                    return proc.exit_status, b"".join(parts), errs

        return await self.c.retrying(op)

    # -- listing
    # Every command costs a process start on the source (a couple of milliseconds), so each pass lists
    # many mailboxes with one find over all their paths, in one script sent on stdin.
    def scan_many(self, requests: Sequence[tuple[bytes, Mapping[bytes, int]]]) -> list[RawScan | SourceError]:
        return self.c.run(self._ascan_many(list(requests)))

    def stamps_many(self, roots: Sequence[bytes]) -> concurrent.futures.Future:
        """The first pass of :meth:`scan_many` over ``roots`` (their own and their folders' entries),
        started now: a future of one RawScan or SourceError per root. The caller may work meanwhile, and
        decide from these stamps what :meth:`lists_many` is to read."""
        return asyncio.run_coroutine_threadsafe(self._astamps(list(roots)), self.c.loop)

    def lists_many(self, outs: list, requests: Sequence[tuple[bytes, Mapping[bytes, int] | None]]) -> list:
        """The second pass, into ``outs`` (what :meth:`stamps_many` gave for the same roots). A root asked
        with ``None`` for its known stamps is left as its first pass found it (``pending``)."""
        return self.c.run(self._alists(outs, list(requests)))

    async def _ascan_many(self, requests) -> list[RawScan | SourceError]:
        """Two passes over all the mailboxes asked: the roots' and folders' own entries (directory stamps,
        control files), then the cur/new whose mtime differs from the one known."""
        return await self._alists(await self._astamps([root for root, _ in requests]), requests)

    async def _astamps(self, roots: list) -> list[RawScan | SourceError]:
        outs: list[RawScan | SourceError] = [RawScan() for _ in roots]
        where = _where(roots)
        now = await self._finds([start(root) for root in where], f"-mindepth 1 -maxdepth 2 {UNLISTED} -o {TOP} {PRUNE_TOP}", outs,
                                where)  # fmt: skip
        for out in outs:
            if isinstance(out, RawScan):
                out.now_ns = now
        _copy_repeats(outs, where)
        return outs

    async def _alists(self, outs: list, requests) -> list[RawScan | SourceError]:
        where = _where([root for root, _ in requests])
        second = []
        for i, (root, known) in enumerate(requests):
            out = outs[i]
            if isinstance(out, SourceError) or where[root][0] != i or known is None:
                continue  # (known None: the caller wants this one's first pass alone, as it is)
            second += [start(root, e.rel) for e in moved_dirs(out.settle().tops, known, out.unchanged)]
        if second:
            await self._finds(second, f"-maxdepth 1 {MSGS}", outs, where, dirs=True)
        _copy_repeats(outs, where)
        return outs

    async def _finds(self, paths: list[bytes], expr: str, outs: list, roots: dict, dirs: bool = False) -> int | None:
        """``find <paths> <expr>`` in groups short enough for any kernel's argument limit, one script.
        What each finds lands in the ``outs`` of its root (every path is ``<root>/./<rel>``). Framing: every
        line of ours and every entry printed with a path starts with '/' after a NUL: ``/D <date>``, then per
        group ``/R <k>``, its find output, ``/S <status>`` and ``/E <stderr>``. Compressed with gzip where
        the source has it."""
        groups: list[list[bytes]] = [[]]
        size = 0
        for p in paths:
            if groups[-1] and size + len(p) > ARG_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(p)
            size += len(p) + 3
        lines = ["LC_ALL=C; export LC_ALL", "printf '/D %s\\000' \"$(date '+%s.%N')\""]
        for k, group in enumerate(groups):
            lines.append(
                f"printf '/R %d\\000' {k}; "
                f"{{ e=$(find {' '.join(shq(p) for p in group)} {expr} 2>&1 >&3); "
                f"printf '/S %d\\000/E %s\\000' \"$?\" \"$e\"; }} 3>&1"
            )
        body = "\n".join(lines)
        if self.gzip:
            body = "{\n" + body + "\n} | gzip -1 -c"
        status, data, err = await self._run(self.nice + "sh -s", stdin=(body + "\n").encode())
        if status != 0:
            raise ProtocolError(f"listing script failed with status {status}: {err.decode(errors='replace')[:200]}")
        if self.gzip:
            try:
                data = zlib.decompress(data, 31)
            except zlib.error as e:
                raise ProtocolError(f"the listing from the source is not what gzip writes: {e}") from None
        chunks = _chunks(data)
        del data  # the records are held once, in ``chunks``, each let go as it is parsed
        return _parse_chunks(chunks, outs, roots, groups, dirs)

    def scan(self, root: bytes, known: Mapping[bytes, int]) -> RawScan:
        (out,) = self.scan_many([(root, known)])
        if isinstance(out, SourceError):
            raise out
        return out

    # -- fetching
    def fetch(self, root: bytes, rels: Sequence[bytes]) -> Iterator[Fetched]:
        pipe = Pipe(self.c.loop)
        fut = asyncio.run_coroutine_threadsafe(self._produce(root, list(rels), pipe), self.c.loop)
        return fetched_from(pipe, fut)

    async def _produce(self, root: bytes, rels: list[bytes], pipe: Pipe) -> None:
        todo = deque(rels)
        partial: list[_Partial | None] = [None]
        looped = tarloop.fits(root, rels)
        try:
            while todo:
                conn, gen = await self.c.conn()
                try:
                    loop = await self.loops.take(conn, gen) if looped else None
                    if loop is not None:
                        try:
                            await self._tar(conn, root, todo, partial, pipe, loop=loop)
                        except LOST:
                            if conn.is_closed():
                                raise
                            looped = False  # the shell went away, the connection did not: the rest by exec
                        finally:
                            self.loops.give_back(loop)
                    else:
                        async with self.c.channels:
                            await self._tar(conn, root, todo, partial, pipe)
                except LOST as e:
                    if not conn.is_closed():
                        raise ProtocolError(f"the tar stream from the source broke off: {e}") from None
                    await self.c.lost(gen, e)  # raises if the source stays unreachable
            pipe.finish()
        except Abandoned:
            pass
        except Exception as e:
            pipe.finish(e if isinstance(e, SourceError) else SourceError(f"tar fetch failed: {e}"))

    async def _tar(self, conn, root: bytes, todo: deque, partial: list, pipe: Pipe, nested: bool = False,
                   loop: tarloop.Loop | None = None) -> None:
        """Stream ``todo`` (consumed as files are delivered) through one ``tar`` on the source: a tar of
        its own, or the next request of ``loop``."""
        if loop is not None:
            await loop.send(root, list(todo), ROOT_MISSING, TAR)
            await self._members(conn, root, loop.reader, loop.member, todo, partial, pipe, nested)
            status, status_err = await loop.end()
        else:
            cmd = PROLOGUE.format(root=shq(root)) + f"exec {self.nice}{TAR_STDIN}"
            proc = await conn.create_process(cmd, encoding=None, window=WINDOW)
            async with proc:
                errs = asyncio.ensure_future(proc.stderr.read())
                feeder = asyncio.ensure_future(self._feed(proc, list(todo)))
                try:
                    r = BufferedReader(proc.stdout, throttle=self.c.throttle)
                    await self._members(conn, root, r, lambda: next_member(r), todo, partial, pipe, nested)
                    await feeder
                    status_err = await errs
                    await proc.wait_closed()
                finally:
                    feeder.cancel()
                    errs.cancel()
            if conn.is_closed() and proc.exit_status is None:
                raise asyncssh.ConnectionLost("connection closed during tar")
            status = proc.exit_status
        if status == ROOT_MISSING:
            raise SourceError(f"cannot read {root.decode(errors='backslashreplace')}: "
                              f"{status_err.decode(errors='replace').strip()}")
        while todo:
            await self._missing(todo, partial, pipe)
        odd = [ln for ln in status_err.decode(errors="backslashreplace").splitlines()
               if ln.startswith("tar: ") and "Cannot stat" not in ln and "Cannot open" not in ln
               and "Exiting with failure status" not in ln]
        if odd:
            # e.g. "file changed as we read it": what was sent may not be what is on disk now.
            raise ProtocolError("tar on the source reported: " + "; ".join(odd[:5]))

    async def _members(self, conn, root: bytes, r: BufferedReader, member, todo: deque, partial: list, pipe: Pipe,
                       nested: bool) -> None:
        """Deliver the archive's members (``member()`` gives the next, None at the end) in ``todo``'s order."""
        while True:
            m = await member()
            if m is None:
                return
            name = m.name[2:] if m.name.startswith(b"./") else m.name
            if todo[0] != name:
                if name not in todo:
                    raise ProtocolError(f"tar sent {name!r}, which was not asked for")
                while todo[0] != name:  # tar skips what it could not stat or open
                    await self._missing(todo, partial, pipe)
            await self._member(conn, root, m, r, todo, partial, pipe, nested)

    @staticmethod
    async def _missing(todo: deque, partial: list, pipe: Pipe) -> None:
        rel = todo.popleft()
        p = partial[0]
        if p is not None and p.rel == rel:  # it went away while being resumed: the file breaks off
            partial[0] = None
            await pipe.put(("ferr", OSError(errno.ENOENT, "gone from the source in the middle of the copy", rel)))
        else:
            await pipe.put(("err", rel, "gone from the source since the listing, or unreadable"))

    async def _feed(self, proc, rels: list[bytes]) -> None:
        # "./" keeps a name from starting with "-", which tar would read as an option.
        for i in range(0, len(rels), 4096):
            proc.stdin.write(b"".join(b"./" + rel + b"\0" for rel in rels[i:i + 4096]))
            await proc.stdin.drain()
        proc.stdin.write_eof()

    async def _member(self, conn, root, m, r: BufferedReader, todo: deque, partial: list, pipe: Pipe, nested: bool) -> None:
        rel = todo[0]
        if m.type not in REGULAR:
            if not await r.fill(padded(m.size)):
                raise EOFError("tar stream ended inside a member")
            r.skip(padded(m.size))
            todo.popleft()
            if m.type == b"1" and not nested:
                # A hard link to a file earlier in this stream (Dovecot copies by linking): tar sends no
                # data for it, so it comes through a one-file tar of its own.
                async with self.c.extra_channels:
                    await self._tar(conn, root, deque([rel]), [None], pipe, nested=True)
            else:
                await pipe.put(("err", rel, "not a regular file on the source"))
            return
        p = partial[0]
        skip = p.sent if p is not None and p.rel == rel else 0
        if skip == 0 and m.size <= WHOLE:
            if not await r.fill(padded(m.size)):
                raise EOFError("tar stream ended inside a member")
            data = r.take(m.size)
            r.skip(padded(m.size) - m.size)
            todo.popleft()
            await pipe.put(("whole", rel, data), len(data))
            return
        if skip == 0:
            await pipe.put(("open", rel))
            partial[0] = p = _Partial(rel, 0)
        elif m.size < skip:
            todo.popleft()
            partial[0] = None
            await pipe.put(("ferr", OSError(errno.EIO, "the file shrank on the source while it was copied", rel)))
            if not await r.fill(padded(m.size)):
                raise EOFError("tar stream ended inside a member")
            r.skip(padded(m.size))
            return
        left = m.size
        while left:
            if not await r.fill(1):
                raise EOFError("tar stream ended inside a member")
            n = min(left, r.available, CHUNK)
            if skip:  # resumed after a reconnect: the engine already has these bytes
                k = min(n, skip)
                r.skip(k)
                skip -= k
                left -= k
                continue
            data = r.take(n)
            left -= n
            p.sent += n
            await pipe.put(("data", data), n)
        if not await r.fill(padded(m.size) - m.size):
            raise EOFError("tar stream ended inside a member")
        r.skip(padded(m.size) - m.size)
        todo.popleft()
        partial[0] = None
        await pipe.put(("eof",))

    # -- small things
    # Each exec channel costs a shell start on the source (a quarter of a second where root's shell rc is
    # heavy); a control file or a stat is one SFTP round trip on the channel the connection already has.
    def read(self, root: bytes, rel: bytes) -> bytes | None:
        return self._sftp.read(root, rel)

    def exists(self, root: bytes) -> bool:
        return self._sftp.exists(root)

    def read_many(self, items: Sequence[tuple[bytes, bytes]]) -> dict[tuple[bytes, bytes], bytes | None]:
        """Small files of many mailboxes (control files) in one tar stream: one round trip for them all.
        A file that is missing, or not a regular file, comes back None."""
        if not items:
            return {}
        paths = {(root + b"/" + rel).lstrip(b"/"): (root, rel) for root, rel in items}
        try:
            got = self.c.run(self._aread_many(list(paths)))
        except SourceError:
            raise
        except (asyncssh.Error, OSError, EOFError, ValueError) as e:
            # The stream broke off with the connection still up (tar killed, no channel to be had): the
            # user's run fails with the reason, never the whole run with a traceback.
            raise ProtocolError(f"reading control files from the source failed: {e}") from None
        return {key: got.get(path) for path, key in paths.items()}

    async def _aread_many(self, paths: list[bytes]) -> dict[bytes, bytes]:
        async def op(conn):
            async with self.c.channels:
                proc = await conn.create_process(
                    f"cd / && exec {self.nice}{TAR_STDIN}", encoding=None,
                    window=WINDOW)
                async with proc:
                    feeder = asyncio.ensure_future(self._feed_paths(proc, paths))
                    errs = asyncio.ensure_future(proc.stderr.read())
                    out: dict[bytes, bytes] = {}
                    try:
                        r = BufferedReader(proc.stdout, throttle=self.c.throttle)
                        while True:
                            m = await next_member(r)
                            if m is None:
                                break
                            if not await r.fill(padded(m.size)):
                                raise EOFError("tar stream ended inside a member")
                            data = r.take(m.size)
                            r.skip(padded(m.size) - m.size)
                            name = m.name[2:] if m.name.startswith(b"./") else m.name
                            if m.type in REGULAR:
                                out[name] = data
                            elif m.type == b"1" and m.linkname in out:  # a hard link to one sent before
                                out[name] = out[m.linkname]
                        await feeder
                        await errs
                    finally:
                        feeder.cancel()
                        errs.cancel()
                    await proc.wait_closed()
                    return out

        return await self.c.retrying(op)

    @staticmethod
    async def _feed_paths(proc, paths: list[bytes]) -> None:
        proc.stdin.write(b"".join(p + b"\0" for p in paths))
        await proc.stdin.drain()
        proc.stdin.write_eof()

    def close(self) -> None:
        if not self.c.loop.is_closed():
            try:
                self.c.run(self._close_loops(), 10)
            except Exception:
                pass
        if self._owns:
            self.c.close()

    async def _close_loops(self) -> None:
        self.loops.close()


# Each program started costs a few milliseconds on a busy source: the usual case (all three there) is one
# chain of them, and only where it fails is each asked alone. (Its exit status is its own: without the
# exit, a source lacking ionice ended with 127, taken for one that cannot run find and tar.)
PROBE = ("echo maildirsync-probe; find / -maxdepth 0 -printf 'find-ok\\n'; tar --version; "
         "{ nice -n 19 ionice -c 3 gzip -1 -c </dev/null >/dev/null 2>&1 && echo gzip-ok && echo nice-ok && "
         "echo ionice-ok; } || { echo x | gzip -1 -c >/dev/null 2>&1 && echo gzip-ok; "
         "nice -n 19 true 2>/dev/null && echo nice-ok; ionice -c 3 true 2>/dev/null && echo ionice-ok; }; exit 0")


@dataclass
class Tools:
    """What the source account can run: find and tar are needed, gzip and nice/ionice are used if there."""

    gzip: bool = False
    nice: bool = False
    ionice: bool = False


PROBE_TIMEOUT = 15.0


async def probe(conn: Connection, timeout: float = PROBE_TIMEOUT) -> Tools | None:
    """Can this account run GNU find and GNU tar (None if not)? An sftp-only account (ForceCommand
    internal-sftp) answers an exec request with an SFTP server, which sees EOF on stdin and says nothing."""
    src = ExecSource(conn, owns_connection=False)
    try:
        status, out, _ = await asyncio.wait_for(src._run(PROBE), timeout)
    except (asyncio.TimeoutError, asyncssh.Error, OSError):
        return None
    return parse_probe(status, out)


def parse_probe(status: int | None, out: bytes) -> Tools | None:
    """What PROBE printed -> the tools there (None: no find or no GNU tar)."""
    lines = out.splitlines()
    if not (status == 0 and lines[:2] == [b"maildirsync-probe", b"find-ok"] and b"GNU tar" in b"".join(lines[2:3])):
        return None
    return Tools(b"gzip-ok" in lines, b"nice-ok" in lines, b"ionice-ok" in lines)


def start(root: bytes, rel: bytes = b".") -> bytes:
    """A path for find to start from: through the root as ``cd`` would go (a root that is a symbolic
    link is followed; nothing below it is), and where the root ends in what find prints (the last
    ``/./``: no name holds a '/', and find never prints a '.' below its start)."""
    return root + b"/./" + rel if rel != b"." else root + b"/."


def _where(roots: list) -> dict:
    """root -> the indexes it is asked at (the listing lands at the first)."""
    out: dict = {}
    for i, root in enumerate(roots):
        out.setdefault(root, []).append(i)
    return out


def _copy_repeats(outs: list, where: dict) -> None:
    for ks in where.values():
        for i in ks[1:]:  # the same Maildir asked twice: the same listing
            outs[i] = outs[ks[0]] if isinstance(outs[ks[0]], SourceError) else copy.deepcopy(outs[ks[0]])


def _split(path: bytes) -> tuple[bytes, bytes] | None:
    """``<root>/./<rel>`` -> (root, rel); ``<root>/.`` -> (root, b"")."""
    if path.endswith(b"/."):
        return path[:-2], b""
    k = path.rfind(b"/./")
    return (path[:k], path[k + 3 :]) if k >= 0 else None


def _chunks(data: bytes) -> list:
    """The framed records of a listing script's output (see ``_finds``), split where a line of ours or
    an entry with a path begins; the first needs no NUL before it."""
    chunks = data.split(b"\0/")
    if chunks[0][:1] == b"/":
        chunks[0] = chunks[0][1:]
    return chunks


def _parse_finds(data: bytes, outs: list, roots: dict, groups: list, dirs: bool) -> int | None:
    return _parse_chunks(_chunks(data), outs, roots, groups, dirs)


def _parse_chunks(chunks: list, outs: list, roots: dict, groups: list, dirs: bool) -> int | None:
    """``chunks`` is emptied as it is read: a second pass over many mailboxes is megabytes, and what is
    parsed need not be held twice (the peak memory of a run is here)."""
    now = None
    status = 0
    out: RawScan | None = None
    root = prefix = None
    rel = None  # the cur/new whose records follow
    group: list = []
    for i in range(len(chunks)):
        chunk, chunks[i] = chunks[i], None
        if not chunk:
            continue
        head, _, rest = chunk.partition(b"\0")
        del chunk
        tag = head[:1]
        if tag == b"D":
            try:
                now = parse_mtime(head[2:].strip())
            except ValueError:
                now = None
        elif tag == b"R":
            group = groups[int(head[2:])]
            out = root = rel = prefix = None
        elif tag == b"S":
            status = int(head[2:])
        elif tag == b"E":
            _group_errors(head[2:], status, group, outs, roots)
            out = None
        elif not dirs:
            # The first pass is kept as printed, its records made objects only if needed (RawScan.pending):
            # here only which mailbox each is of, the same as the record before's for all but the first.
            path = head.split(b" ", 3)[-1]
            if root is None or not path.startswith(prefix) or path.rfind(b"/./") != len(prefix) - 3:
                root = _top_in(head, roots)[0]
                prefix = root + b"/./"
                out = outs[roots[root][0]]
            if isinstance(out, RawScan):
                out.pending.append(head)
        else:
            under, e = _top_in(head, roots)
            if under != root:
                root = under
                out = outs[roots[root][0]]
                rel = None
            if not isinstance(out, RawScan):
                continue
            elif rel is not None and e.rel.startswith(rel + b"/"):
                # A directory inside a cur/new: one of its entries, not messages of its own.
                out.dirs[rel] += encode(e.rel[len(rel) + 1 :], DIR, e.size, e.mtime_ns)
            else:
                rel = e.rel
                out.dirs[rel] = b""
            if rest and rel is not None:
                out.dirs[rel] += rest + b"\0"
    if not dirs:
        for out in outs:
            if isinstance(out, RawScan) and out.pending and out.digest is None:
                out.digest = xxhash.xxh3_128_hexdigest(b"\0".join(out.pending))
                out.parser = _entry
    return now


def _top_in(rec: bytes, roots: dict) -> tuple[bytes, RawEntry]:
    """parse_top, of an entry under one of the Maildirs asked for."""
    under, e = parse_top(rec)
    if under not in roots:
        raise ProtocolError(f"find printed {e.rel[:200]!r} under {under[:200]!r}, which is no Maildir asked for")
    return under, e


def _entry(rec: bytes) -> RawEntry:
    return parse_top(rec)[1]


def _group_errors(stderr: bytes, status: int, group: list, outs: list, roots: dict) -> None:
    """find's complaints, each to the mailbox of its path: an unreadable part goes to its errors (nothing
    of it is deleted), an unreadable root makes the mailbox a :class:`SourceError`. One that names no
    path, or a failure with no complaint, counts against every mailbox of the group."""
    errors = parse_find_errors(stderr)
    if status != 0 and not errors:
        errors = [(None, f"find exited with status {status}: {stderr.decode(errors='replace').strip()[:200]}")]
    for path, msg in errors:
        where = _split(path) if path is not None else None
        if where is None or where[0] not in roots:
            for root in {r[0] for r in (_split(p) for p in group) if r is not None}:
                _one_error(outs, roots, root, msg if path is None else f"{path.decode(errors='backslashreplace')}: {msg}")
            continue
        root, rel = where
        if rel == b"":
            i = roots[root][0]
            outs[i] = SourceError(f"cannot read {root.decode(errors='backslashreplace')}: {msg}")
        else:
            _one_error(outs, roots, root, f"{rel.decode(errors='backslashreplace')}: {msg}")


def _one_error(outs: list, roots: dict, root: bytes, text: str) -> None:
    out = outs[roots[root][0]]
    if isinstance(out, RawScan):
        out.errors.append(text)

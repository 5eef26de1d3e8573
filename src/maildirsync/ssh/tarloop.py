"""Shells kept open on the source that run one ``tar`` after another, so that a user's fetch does not pay
for a session of its own.

Each exec channel costs the source a session: sshd's, then root's login shell, then ``nice`` and
``ionice`` before ``tar`` itself. After a 1 % change that is one start per user for a couple of dozen
messages, and it was a third of the source's CPU on the bench (and, on a slow link, two round trips per
user before the first byte). A loop is started once per connection and worker; each request is one line
written to its shell: ``tar`` with the names as arguments, stdin closed, and behind it a trailer on each
stream that the client waits for. The trailer carries a random tag, so no file name can pass for one.

On stdout each request gives a tar archive, the zero blocks that end and pad it (tar writes whole
records, each a number of 512-byte blocks), then a 512-byte block ``<tag> <exit status>``. On stderr,
whatever tar printed, then ``\n<tag>\n`` (a line of its own even where tar's last one had no end). A
request whose stream is not read to its trailers (the consumer went away, the stream broke) leaves the
loop out of step: it is closed, never reused.
"""

from __future__ import annotations

import asyncio
import os

from .errors import ProtocolError
from .tarstream import BLOCK, ZERO, BufferedReader, Member, next_member

# Names go on tar's command line, and bash reads a script from a pipe a byte at a time: measured here, a
# request of 1 KB costs it 0.23 ms, of 8 KB 1.5 ms, of 64 KB 12 ms, where a session of its own costs the
# source about 5 ms of CPU. A larger request (an initial sync's) goes through a tar of its own, reading
# its names from stdin. A user's share of a 1 % change is 1-2 KB.
LOOP_MAX = 16 * 1024


def quote(b: bytes) -> bytes:
    """A shell word for any bytes but NUL (a file name): single quotes keep everything else as it is."""
    return b"'" + b.replace(b"'", b"'\\''") + b"'"


def request(tag: bytes, root: bytes, rels, status_missing: int, tar: bytes) -> bytes:
    """The line that runs one tar of ``rels`` below ``root`` and writes both trailers."""
    names = b" ".join(quote(b"./" + rel) for rel in rels)  # "./": a name never reads as an option
    return (b"(cd " + quote(root) + b" || exit %d; exec " % status_missing + tar + b" " + names
            + b") </dev/null; printf '%-511s\\n' \"" + tag + b" $?\"; printf '\\n%s\\n' " + tag + b" >&2\n")


def fits(root: bytes, rels) -> bool:
    """May ``rels`` go through a loop? Not if too many, nor where a name holds a backslash: GNU tar
    unquotes the names on its command line (``\\n``...), and 1.15 has no ``--no-unquote`` to stop it."""
    return len(root) + sum(len(r) + 8 for r in rels) < LOOP_MAX and not any(b"\\" in r for r in rels)


class Loop:
    """One shell on the source. Used by one request at a time."""

    def __init__(self, proc, gen: int, throttle=None) -> None:
        self.proc, self.gen = proc, gen
        self.tag = b"maildirsync-end-" + os.urandom(8).hex().encode()
        self.reader = BufferedReader(proc.stdout, throttle=throttle)
        self.in_step = True  # every request sent so far was read to its trailers
        self._err = bytearray()
        self._err_done = False
        self._err_news = asyncio.Event()
        self._errs = asyncio.ensure_future(self._read_errs())

    async def _read_errs(self) -> None:
        try:
            while True:
                data = await self.proc.stderr.read(65536)
                if not data:
                    break
                self._err += data
                self._err_news.set()
        finally:
            self._err_done = True
            self._err_news.set()

    async def send(self, root: bytes, rels, status_missing: int, tar: bytes) -> None:
        self.in_step = False
        self.proc.stdin.write(request(self.tag, root, rels, status_missing, tar))
        await self.proc.stdin.drain()

    async def member(self) -> Member | None:
        """The next member of this request's archive; None at its end (the trailer is left to :meth:`end`)."""
        r = self.reader
        if not await r.fill(BLOCK):
            raise EOFError("the source's tar loop ended")
        if r.peek(len(self.tag)) == self.tag:  # tar wrote nothing at all (the root is gone, say)
            return None
        return await next_member(r)

    async def end(self) -> tuple[int, bytes]:
        """After the archive: tar's exit status and what it printed on stderr."""
        r = self.reader
        while True:
            if not await r.fill(BLOCK):
                raise EOFError("the source's tar loop ended before its trailer")
            block = r.take(BLOCK)
            if block == ZERO:
                continue
            if not block.startswith(self.tag + b" "):
                raise ProtocolError("the source's tar loop sent something after the archive")
            try:
                status = int(block[len(self.tag) + 1:].split()[0])
            except (ValueError, IndexError):
                raise ProtocolError("the source's tar loop sent an unreadable trailer") from None
            break
        line = b"\n" + self.tag + b"\n"
        while True:
            at = self._err.find(line)
            if at >= 0:
                text = bytes(self._err[:at])
                del self._err[: at + len(line)]
                self.in_step = True
                return status, text
            if self._err_done:
                raise EOFError("the source's tar loop ended before its trailer")
            self._err_news.clear()
            await self._err_news.wait()

    def close(self) -> None:
        self._errs.cancel()
        self.proc.close()


class Loops:
    """The idle loops of a connection, at most ``limit`` in all. Each holds one of the connection's
    channel permits for as long as it lives (the source allows only so many sessions at once): one is
    started only where a permit is free at once, and a fetch that finds none goes through an exec of its
    own, as before."""

    def __init__(self, conn, command: str, limit: int, window: int) -> None:
        self.c, self.command, self.limit, self.window = conn, command, limit, window
        self.idle: list[Loop] = []
        self.count = 0

    async def take(self, ssh, gen: int) -> Loop | None:
        for old in [lp for lp in self.idle if lp.gen != gen]:  # of a connection that was lost
            self.idle.remove(old)
            self._drop(old)
        if self.idle:
            return self.idle.pop()
        if self.count >= self.limit or self.c.channels.locked():
            return None
        await self.c.channels.acquire()
        self.count += 1
        try:
            proc = await ssh.create_process(self.command, encoding=None, window=self.window)
        except BaseException:
            self.count -= 1
            self.c.channels.release()
            raise
        return Loop(proc, gen, throttle=self.c.throttle)

    def give_back(self, lp: Loop) -> None:
        if lp.in_step and not lp.proc.is_closing():
            self.idle.append(lp)
        else:
            self._drop(lp)

    def _drop(self, lp: Loop) -> None:
        lp.close()
        self.count -= 1
        self.c.channels.release()

    def close(self) -> None:
        while self.idle:
            self._drop(self.idle.pop())

"""Reading a tar stream (GNU tar 1.15 on CentOS 5 to 1.34 today) as it arrives.

Only what ``tar -cf - --format=gnu`` writes is needed: 512-byte headers, GNU long names (``L``/``K``),
pax headers (``x``) in case a tar defaults to posix, octal or base-256 sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ProtocolError

BLOCK = 512
ZERO = bytes(BLOCK)
REGULAR = (b"0", b"\0", b"7")


@dataclass
class Member:
    name: bytes
    size: int
    type: bytes
    linkname: bytes


class BufferedReader:
    """Big reads from an asyncssh stream, small slices out: one await per 256 KiB, not per header."""

    def __init__(self, stream, read_size: int = 256 * 1024, throttle=None) -> None:
        self._s = stream
        self._throttle = throttle
        self._n = read_size
        self._buf = bytearray()
        self._pos = 0

    @property
    def available(self) -> int:
        return len(self._buf) - self._pos

    async def fill(self, n: int) -> bool:
        """Make ``n`` bytes available; False if the stream ends first."""
        while len(self._buf) - self._pos < n:
            data = await self._s.read(self._n)
            if not data:
                return False
            if self._throttle is not None:
                await self._throttle.take(len(data))
            if self._pos > (1 << 20) or (self._pos and self._pos * 2 > len(self._buf)):
                del self._buf[: self._pos]
                self._pos = 0
            self._buf += data
        return True

    def peek(self, n: int) -> bytes:
        return bytes(self._buf[self._pos:self._pos + n])

    def take(self, n: int) -> bytes:
        b = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n
        return b

    def skip(self, n: int) -> None:
        self._pos += n


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    s = field.split(b"\0", 1)[0].strip()
    return int(s, 8) if s else 0


def parse_header(h: bytes) -> Member | None:
    """The member a header block describes, or None for a zero block (end of archive)."""
    if h == ZERO:
        return None
    try:
        stored = _octal(h[148:156])
    except ValueError:
        raise ProtocolError("tar stream: unreadable header checksum") from None
    if stored != sum(h[:148]) + 8 * 32 + sum(h[156:]):
        raise ProtocolError("tar stream: header checksum mismatch (the stream is not what tar sent)")
    name = h[:100].split(b"\0", 1)[0]
    if h[257:263] == b"ustar\0":  # POSIX ustar: a prefix field (GNU format uses that area otherwise)
        prefix = h[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return Member(name, _octal(h[124:136]), h[156:157], h[157:257].split(b"\0", 1)[0])


def padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def parse_pax(data: bytes) -> dict[bytes, bytes]:
    out = {}
    pos = 0
    while pos < len(data):
        sp = data.index(b" ", pos)
        length = int(data[pos:sp])
        rec = data[sp + 1:pos + length - 1]  # without the trailing newline
        k, _, v = rec.partition(b"=")
        out[k] = v
        pos += length
    return out


async def next_member(r: BufferedReader) -> Member | None:
    """Read headers up to the next real member (folding long-name and pax headers into it). None at
    the end of the archive; ProtocolError if the stream stops before it."""
    long_name = long_link = None
    pax: dict[bytes, bytes] = {}
    while True:
        if not await r.fill(BLOCK):
            raise EOFError("tar stream ended before the end-of-archive marker")
        m = parse_header(r.take(BLOCK))
        if m is None:
            return None
        if m.type in (b"L", b"K", b"x", b"g"):
            if not await r.fill(padded(m.size)):
                raise EOFError("tar stream ended inside a header")
            data = r.take(padded(m.size))[: m.size]
            if m.type == b"L":
                long_name = data.split(b"\0", 1)[0]
            elif m.type == b"K":
                long_link = data.split(b"\0", 1)[0]
            elif m.type == b"x":
                pax = parse_pax(data)
            continue
        if long_name is not None:
            m.name = long_name
        if long_link is not None:
            m.linkname = long_link
        if b"path" in pax:
            m.name = pax[b"path"]
        if b"size" in pax:
            m.size = int(pax[b"size"])
        return m

"""How the engine reads a source: one small protocol, implemented for a local directory and for SSH.

The engine is synchronous; a transport that is asynchronous inside (asyncssh) hides that behind this
interface. A transport only ever reads: no method here writes, renames or deletes on the source.

Paths are bytes. ``root`` is an absolute path of a Maildir on the source; ``rel`` is relative to it,
``/``-separated (``b".Sent/cur/123.host:2,S"``).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .compat import SLOTS
from .maildir import MAX_NAME, SOURCE_UNLISTED, SUBDIRS, show

CHUNK = 256 * 1024

# Entry kinds, as find(1)'s %y prints them.
FILE, DIR, LINK, OTHER = "f", "d", "l", "o"


class SourceError(Exception):
    """The source could not be read at all (connection lost, root missing, permission denied)."""


@dataclass(frozen=True, **SLOTS)
class RawEntry:
    rel: bytes
    kind: str
    size: int
    mtime_ns: int


@dataclass(**SLOTS)
class RawScan:
    """What a transport saw under a Maildir root, down to ``<folder>/cur/<file>`` (never into tmp/).

    ``tops`` are the entries of the root and of each folder directory (folders, ``cur``/``new``, control
    files), named from the root. Each ``cur``/``new`` read is one value of ``dirs``: its records, as bytes
    (:func:`encode`), so that a repeated sync compares what it saw with what the last run saw at C speed
    and builds objects only for the names that differ. ``unchanged`` holds the ``cur``/``new`` directories
    not read because their mtime equals the one the caller passed in ``known``.
    ``errors`` are directories that could not be read: a run with errors must not delete anything.
    """

    tops: list[RawEntry] = field(default_factory=list)
    dirs: dict[bytes, bytes] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # names no directory can hold ('/', NUL, dot names)
    unchanged: set[bytes] = field(default_factory=set)
    now_ns: int | None = None  # the source's clock when the scan began, if the transport knows it
    files: dict[bytes, bytes | None] = field(default_factory=dict)  # small files read whole with the listing
    # A first pass not yet made into ``tops`` (records as the transport printed them, and its parser): a
    # mailbox its stamps show as the last run left it (quiet.py) needs none of them as objects. ``digest``
    # is of those records as printed.
    pending: list[bytes] = field(default_factory=list)
    parser: Callable[[bytes], RawEntry] | None = None
    digest: str | None = None

    def settle(self) -> RawScan:
        """``tops`` made from what is pending; then this listing is whole as its first pass."""
        if self.pending:
            assert self.parser is not None
            self.tops.extend(map(self.parser, self.pending))
            self.pending = []
        return self

    @property
    def entries(self) -> list[RawEntry]:
        """Every entry as an object (for tests and small listings; the engine reads ``dirs`` as bytes)."""
        out = list(self.tops)
        for rel, blob in self.dirs.items():
            for rec in records(blob):
                try:
                    name, kind, size, mtime = decode(rec)
                except ValueError:
                    continue
                out.append(RawEntry(rel + b"/" + name, kind, size, mtime))
        return out


def moved_dirs(entries: Iterable[RawEntry], known: Mapping[bytes, int], unchanged: set | None = None) -> list[RawEntry]:
    """The ``cur``/``new`` among a first pass's entries (the root's and the folders') whose mtime is not
    the one ``known``: the ones a second pass reads. The others are added to ``unchanged`` when given:
    taken as the last run left them. Every transport and the engine's chunking decide this one way."""
    out = []
    for e in entries:
        if e.kind == DIR and e.rel.rpartition(b"/")[2] in SUBDIRS and (
                b"/" not in e.rel or e.rel.startswith(b".")):  # fmt: skip
            if known.get(e.rel) != e.mtime_ns:
                out.append(e)
            elif unchanged is not None:
                unchanged.add(e.rel)
    return out


# --- the records of a cur/new directory ----------------------------------------------------------------
# One record per entry, NUL-terminated: ``<name>/<size>/<mtime>`` for a regular file (a name cannot hold
# '/'), ``\x01<kind><name>/<size>/<mtime>`` for anything else. The mtime is seconds with an optional
# fraction (find's %T@), parsed exactly by parse_mtime. Exec sources print exactly this with find -printf.


def encode(name: bytes, kind: str, size: int, mtime_ns: int) -> bytes:
    head = name if kind == FILE else b"\x01" + kind.encode() + name
    return b"%s/%d/%d.%09d\0" % (head, size, *divmod(mtime_ns, 1_000_000_000))


def records(blob: bytes) -> list[bytes]:
    parts = blob.split(b"\0")
    if parts[-1] == b"":
        parts.pop()  # blobs end with their separator; an empty field elsewhere is rare, sifted out only then
    return [r for r in parts if r] if b"" in parts else parts


def decode(rec: bytes) -> tuple[bytes, str, int, int]:
    """(name, kind, size, mtime_ns); ValueError for a record no transport would write."""
    head, size, mtime = rec.rsplit(b"/", 2)
    kind = FILE
    if head[:1] == b"\x01" and len(head) > 2:
        kind, head = chr(head[1]), head[2:]
    return head, kind, int(size), parse_mtime(mtime)


def parse_mtime(s: bytes) -> int:
    """``1700000000.1234567890`` -> ns, exactly (a float would round the last digits)."""
    neg = s.startswith(b"-")
    sec, _, frac = s.lstrip(b"-").partition(b".")
    ns = int(sec) * 1_000_000_000 + int((frac + b"000000000")[:9])
    return -ns if neg else ns


@dataclass(**SLOTS)
class Fetched:
    """One file coming from :meth:`Source.fetch`. ``chunks`` must be consumed before the next file is
    asked for. When the file cannot be read (vanished since the listing), either ``error`` says so up
    front, or iterating ``chunks`` raises OSError."""

    rel: bytes
    chunks: Iterable[bytes]
    error: str | None = None


class Source(Protocol):
    def scan(self, root: bytes, known: Mapping[bytes, int]) -> RawScan: ...

    def fetch(self, root: bytes, rels: Sequence[bytes]) -> Iterator[Fetched]:
        """Yield the files in the order asked; a missing one yields an error, not an exception."""
        ...

    def read(self, root: bytes, rel: bytes) -> bytes | None:
        """A small file whole (control files); None if it does not exist."""
        ...

    def exists(self, root: bytes) -> bool: ...

    def close(self) -> None: ...


def blob_of(rel: bytes, found: Iterable[RawEntry], rejected: list[str]) -> bytes:
    """The records of directory ``rel`` from entries named by basename (a name a directory cannot hold
    is refused, as in :func:`named_entries`)."""
    out = []
    for e in found:
        if b"/" in e.rel or b"\0" in e.rel or e.rel in (b"", b".", b".."):
            rejected.append(f"{show(rel + b'/' + e.rel)}: a name no directory can hold ('/', NUL or a dot name)")
            continue
        if len(e.rel) > MAX_NAME:
            rejected.append(f"{show(rel + b'/' + e.rel)}: name longer than {MAX_NAME} bytes")
            continue
        out.append(encode(e.rel, e.kind, e.size, e.mtime_ns))
    return b"".join(out)


def named_entries(rel: bytes, found: Iterable[RawEntry], rejected: list[str]) -> list[RawEntry]:
    """Entries of the source's directory ``rel`` (named by basename) renamed relative to the root. A
    basename with '/' or NUL, or a dot name, is refused: a server that lists one is lying, and joining it
    into a path could point anywhere. Dovecot's index files are left out (maildir.SOURCE_UNLISTED)."""
    prefix = rel + b"/" if rel else b""
    out = []
    for e in found:
        if b"/" in e.rel or b"\0" in e.rel or e.rel in (b"", b".", b".."):
            rejected.append(f"{show(prefix + e.rel)}: a name no directory can hold ('/', NUL or a dot name)")
            continue
        if e.rel.startswith(SOURCE_UNLISTED):
            continue
        out.append(RawEntry(prefix + e.rel, e.kind, e.size, e.mtime_ns))
    return out


def scan_plan(listdir, root: bytes, known: Mapping[bytes, int], listblob=None) -> RawScan:
    """Walk a Maildir with ``listdir(path) -> [RawEntry named by basename]``, the shape every transport
    shares: the root, each ``.folder``, and each folder's ``cur``/``new``. ``listdir`` raises OSError.
    ``listblob(path) -> bytes`` reads a cur/new straight into records (default: through ``listdir``)."""
    out = RawScan()

    def visit(rel: bytes) -> list[RawEntry] | None:
        path = root + b"/" + rel if rel else root
        try:
            found = listdir(path)
        except OSError as e:
            if rel == b"":
                raise SourceError(f"cannot read {path.decode(errors='backslashreplace')}: {e.strerror or e}") from e
            out.errors.append(f"{rel.decode(errors='backslashreplace')}: {e.strerror or e}")
            return None
        named = named_entries(rel, found, out.rejected)
        out.tops.extend(named)
        return named

    def visit_dir(rel: bytes) -> None:
        path = root + b"/" + rel
        try:
            if listblob is not None:
                out.dirs[rel] = listblob(path)
                return
            found = listdir(path)
        except OSError as e:
            out.errors.append(f"{rel.decode(errors='backslashreplace')}: {e.strerror or e}")
            return
        out.dirs[rel] = blob_of(rel, found, out.rejected)

    def visit_folder(rel: bytes, entries: list[RawEntry]) -> None:
        for e in moved_dirs(entries, known, out.unchanged):
            visit_dir(e.rel)

    top = visit(b"")
    assert top is not None
    visit_folder(b"", top)
    for e in top:
        if e.kind == DIR and e.rel.startswith(b".") and e.rel not in (b".", b".."):
            sub = visit(e.rel)
            if sub is not None:
                visit_folder(e.rel, sub)
    return out


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return LINK
    return OTHER


def local_listdir(path: bytes) -> list[RawEntry]:
    out = []
    with os.scandir(path) as it:
        for d in it:
            try:
                st = d.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished between readdir and stat: a concurrent rename
            out.append(RawEntry(d.name, _kind(st.st_mode), st.st_size, st.st_mtime_ns))
    return out


def local_listblob(path: bytes) -> bytes:
    """A local cur/new as records (a stat each: a source's sizes and mtimes are what we compare)."""
    out = []
    with os.scandir(path) as it:
        for d in it:
            try:
                st = d.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            out.append(encode(d.name, _kind(st.st_mode), st.st_size, st.st_mtime_ns))
    return b"".join(out)


def read_local(path: bytes) -> tuple[bytes, os.stat_result]:
    """A small local file whole (a control file), with the stat of what was read. Raw reads: a buffered
    file object would also ask whether the file is a terminal and seek, for each of a run's thousands
    of dovecot-uidlist files."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        parts = [os.read(fd, st.st_size + 1)]
        # A short read of a regular file is its end; one that fills the buffer: it grew, read on.
        while len(parts[-1]) > (st.st_size if len(parts) == 1 else 0):
            parts.append(os.read(fd, 1 << 16))
        return b"".join(parts), st
    finally:
        os.close(fd)


def read_many(source, items: Sequence[tuple[bytes, bytes]]) -> dict[tuple[bytes, bytes], bytes | None]:
    """(root, rel) -> the file whole, or None: in one go where the transport can (``read_many``)."""
    many = getattr(source, "read_many", None)
    if many is not None:
        return many(items)
    return {(root, rel): source.read(root, rel) for root, rel in items}


class LocalSource:
    """A source that is a directory on this host (a mounted disk, an exploded backup, tests)."""

    def scan(self, root: bytes, known: Mapping[bytes, int]) -> RawScan:
        now = time.time_ns()
        out = scan_plan(local_listdir, root, known, local_listblob)
        out.now_ns = now
        return out

    def fetch(self, root: bytes, rels: Sequence[bytes]) -> Iterator[Fetched]:
        for rel in rels:
            yield Fetched(rel, _file_chunks(root + b"/" + rel))

    def read(self, root: bytes, rel: bytes) -> bytes | None:
        try:
            fd = os.open(root + b"/" + rel, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        try:
            return b"".join(_chunks(fd, close=False))
        finally:
            os.close(fd)

    def exists(self, root: bytes) -> bool:
        return os.path.isdir(root)

    def close(self) -> None:
        pass


def _file_chunks(path: bytes) -> Iterator[bytes]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    yield from _chunks(fd)


def _chunks(fd: int, close: bool = True) -> Iterator[bytes]:
    try:
        while True:
            b = os.read(fd, CHUNK)
            if not b:
                return
            yield b
    finally:
        if close:
            os.close(fd)

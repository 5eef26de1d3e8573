"""``dovecot-uidlist``: read versions 1 and 3, write either, and merge the source's numbering into the
destination's so that every IMAP client keeps its UIDs (DESIGN.md §3, "The UID invariant").

Version 1 (Dovecot 1.0, SME 8; Courier-compatible): ``1 <uidvalidity> <nextuid>``, then ``<uid> <filename>``.
Version 3 (Dovecot 1.1 and later): ``3 V<uidvalidity> N<nextuid> [G<guid> ...]``, then
``<uid> [<ext fields>] :<filename>``. Dovecot 2.x reads both and rewrites version 1 as version 3.

Pure: bytes in, bytes out; the executor does the I/O under Dovecot's lock (:mod:`.dotlock`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional

from .compat import SLOTS
from .maildir import folder_display

NAME = b"dovecot-uidlist"


class UidlistError(ValueError):
    """A file Dovecot itself would call corrupted (it would rebuild it, renumbering every message)."""


@dataclass(**SLOTS)
class Entry:
    uid: int
    base: bytes
    name: bytes  # the file name as written (version 1 may carry the flags; version 3 is the base)
    ext: bytes = b""  # version 3 extension fields, as written (``W1234 P...``)
    raw: Optional[bytes] = None  # the line as read, so an unchanged entry is written back byte for byte


@dataclass(**SLOTS)
class Uidlist:
    version: int
    uidvalidity: int
    next_uid: int
    extra: List[bytes] = field(default_factory=list)  # version 3 header fields other than V and N (G<guid>, ...)
    entries: List[Entry] = field(default_factory=list)  # ascending UIDs

    def by_base(self) -> Dict[bytes, Entry]:
        return {e.base: e for e in self.entries}

    def uids(self) -> Dict[int, bytes]:
        return {e.uid: e.base for e in self.entries}


def base_of(name: bytes, sep: bytes) -> bytes:
    i = name.find(sep)
    return name if i < 0 else name[:i]


def parse(data: bytes, sep: bytes = b":") -> Uidlist:
    """Raises :class:`UidlistError` for what Dovecot 2.x would refuse."""
    lines = data.split(b"\n")
    head = lines[0]
    if len(head) < 3 or not head[:1].isdigit() or head[1:2] != b" ":
        raise UidlistError("unreadable header")
    version = head[0] - 48
    extra: List[bytes] = []
    uidvalidity = next_uid = 0
    if version == 1:
        parts = head[2:].split()
        if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
            raise UidlistError("unreadable version 1 header")
        uidvalidity, next_uid = int(parts[0]), int(parts[1])
    elif version == 3:
        for f in head[2:].split():
            key, value = f[:1], f[1:]
            if key == b"V" and value.isdigit():
                uidvalidity = int(value)
            elif key == b"N" and value.isdigit():
                next_uid = int(value)
            elif key in (b"V", b"N"):
                raise UidlistError(f"unreadable header field {f!r}")
            else:
                extra.append(f)
    else:
        raise UidlistError(f"version {version}: Dovecot 2 reads only versions 1 and 3")
    if not uidvalidity or not next_uid:
        raise UidlistError("header without UIDVALIDITY or next UID")
    out = Uidlist(version, uidvalidity, next_uid, extra)
    prev = 0
    for n, line in enumerate(lines[1:], 2):
        if not line:
            continue
        uid_s, _, rest = line.partition(b" ")
        if not uid_s.isdigit() or int(uid_s) <= prev:
            raise UidlistError(f"line {n}: UIDs out of order or unreadable")
        uid = prev = int(uid_s)
        rest = rest.lstrip(b" ")
        ext = b""
        if version == 3:
            i = rest.find(b":")
            if i < 0:
                raise UidlistError(f"line {n}: no ':' before the file name")
            ext, rest = rest[:i].strip(), rest[i + 1 :]
        if not rest or b"/" in rest:
            raise UidlistError(f"line {n}: bad file name")
        out.entries.append(Entry(uid, base_of(rest, sep), rest, ext, line))
    if version == 1 and out.entries and out.entries[-1].uid >= next_uid:
        raise UidlistError("a UID at or above the next UID (version 1)")
    out.next_uid = max(next_uid, prev + 1)
    return out


def render(u: Uidlist) -> bytes:
    if u.version == 1:
        head = b"1 %d %d\n" % (u.uidvalidity, u.next_uid)
    else:
        head = b" ".join([b"3", b"V%d" % u.uidvalidity, b"N%d" % u.next_uid, *u.extra]) + b"\n"
    out = [head]
    for e in u.entries:
        if e.raw is not None:
            out.append(e.raw + b"\n")
        elif u.version == 1:
            out.append(b"%d %s\n" % (e.uid, e.name))
        else:
            out.append(b"%d %s:%s\n" % (e.uid, e.ext + b" " if e.ext else b"", e.base))
    return b"".join(out)


def _as(e: Entry, version: int, name: bytes, keep_raw: bool) -> Entry:
    """``e`` to be written into a file of ``version`` for the destination file ``name``."""
    if version == 1:
        raw = e.raw if keep_raw and e.name == name else None
        return Entry(e.uid, e.base, name, b"", raw)
    return Entry(e.uid, e.base, e.base, e.ext, e.raw if keep_raw else None)


@dataclass(**SLOTS)
class Merged:
    """What a folder's ``dovecot-uidlist`` becomes, and what that means."""

    uidlist: Optional[Uidlist]  # None: leave the destination's file as it is
    reindex: bool = False  # remove the folder's dovecot.index* so Dovecot rebuilds it from the file
    renumbered: int = 0  # messages placed under another UID than the source's (clients fetch them again)
    own: bool = False  # the destination numbers this folder itself (it holds mail of its own): sticky
    uidvalidity: Optional[int] = None  # the destination's UIDVALIDITY when it is the source's or one we wrote
    notes: List[str] = field(default_factory=list)
    raw: Optional[bytes] = None  # what to write for ``uidlist``: the source's file as read, which says the same

    def data(self) -> bytes:
        return self.raw if self.raw is not None else render(self.uidlist)


def merge(
    src: Optional[Uidlist],
    dst: Optional[Uidlist],
    present: Dict[bytes, bytes],
    ours: Iterable[bytes],
    *,
    own_before: bool = False,
    uidvalidity_ours: Optional[int] = None,
    has_index: bool = False,
    folder: bytes = b"",
    dst_raw: Optional[bytes] = None,
    on_source: Optional[Callable[[bytes], bool]] = None,
    src_raw: Optional[bytes] = None,
) -> Merged:
    """The destination's ``dovecot-uidlist`` after a run.

    ``present``: the destination folder's messages after the run, base -> file name. ``ours``: the bases
    among them that this tool placed (or adopted); any other is mail of the destination's own, and from it
    on the destination's numbering is the one clients know (``own``). ``dst_raw``: the destination's file
    as it is; ``uidlist`` comes back None when writing would not change a byte of it. ``on_source``: does
    the source hold this base now, numbered or not (default: those its file numbers)? ``src_raw``: the
    source's file as read; where it says what the merge says, it is what is written (``raw``).

    Before that (every message ours) the destination says exactly what the source says: UIDVALIDITY, next
    UID, each message's UID; if the destination's Dovecot numbered messages otherwise, ``reindex`` asks for
    its index files to go (no client uses the destination yet). After it, the destination's numbering is
    only extended: a new message keeps the source's UID when that is above every UID the destination gave,
    else it takes the destination's next UID (``renumbered``). A UIDVALIDITY that is neither the source's
    nor one we wrote was made by the destination server: reported, never silently changed.
    """
    ours = set(ours)
    own = own_before or any(b not in ours for b in present)

    def changed(out: Uidlist) -> Optional[Uidlist]:
        if dst_raw is not None:
            return None if render(out) == dst_raw else out
        return _changed(out, dst)

    def mirrored(out: Uidlist, **kw) -> Merged:
        if src_raw is not None and _says_the_same(src, out, present, on_source):
            if dst_raw is not None and src_raw == dst_raw:
                return Merged(None, **kw)
            return Merged(out, raw=src_raw, **kw)
        return Merged(changed(out) if dst is not None else out, **kw)

    if src is None:
        # The source's server never numbered this folder: nothing to follow; the destination numbers it.
        return Merged(None, own=own)
    if dst is None:
        if own and has_index:
            # Numbered on the destination and the file since removed: Dovecot rebuilds it from its index,
            # whose numbering clients may know.
            return Merged(None, own=True)
        return mirrored(_mirror(src, None, present, src.version), reindex=has_index, own=own, uidvalidity=src.uidvalidity)
    if dst.uidvalidity != src.uidvalidity and dst.uidvalidity != uidvalidity_ours:
        name = folder_display(folder)
        out, n = _extend(src, dst, present, keep_src_uids=False)
        note = (
            f"{name}: the destination's UIDVALIDITY {dst.uidvalidity} is not the source's {src.uidvalidity} (the "
            f"destination server created this folder before the first sync): its numbering is kept, so mail "
            f"clients will download {name} again after the switch. If no client has used this folder on the "
            f"destination yet, remove its dovecot-uidlist and dovecot.index* files there and run again to keep "
            f"the source's UIDs"
        )
        # Not "ours" (uidvalidity stays None): were it recorded as ours, a later run would follow the source's.
        return Merged(changed(out), renumbered=n, own=own, notes=[note])
    if not own:
        out = _mirror(src, dst, present, dst.version, on_source)
        return mirrored(out, reindex=has_index and _renumbers(dst, out, present), own=False, uidvalidity=src.uidvalidity)
    out, n = _extend(src, dst, present, keep_src_uids=dst.uidvalidity == src.uidvalidity)
    return Merged(changed(out), renumbered=n, own=True, uidvalidity=dst.uidvalidity)


def _says_the_same(src: Uidlist, out: Uidlist, present: Dict[bytes, bytes],
                   on_source: Optional[Callable[[bytes], bool]]) -> bool:
    """Would Dovecot read from the source's file as it is what ``out`` says? Then that file is written
    byte for byte, and later runs can keep it so without reading either list line by line. It may hold
    lines ``out`` left out, of messages the source has expunged but not yet compacted away: Dovecot drops
    a line whose file is gone, and its next UID stays above it. A message still on the source that the
    destination lacks (not fetched yet) is not such a line: numbered now, it could be taken for expunged."""
    if out.version != src.version or out.uidvalidity != src.uidvalidity or out.next_uid != src.next_uid:
        return False
    if out.extra != src.extra:
        return False
    lines = [e.raw for e in src.entries if e.base in present]
    if [e.raw for e in out.entries] != lines:
        return False
    if len(lines) == len(src.entries):
        return True
    return on_source is not None and not any(on_source(e.base) for e in src.entries if e.base not in present)


def _changed(out: Uidlist, dst: Uidlist) -> Optional[Uidlist]:
    """None when writing ``out`` would say nothing the destination's file does not already say."""
    same = (
        out.version == dst.version
        and (out.uidvalidity, out.next_uid, out.extra) == (dst.uidvalidity, dst.next_uid, dst.extra)
        and [(e.uid, e.base, e.ext) for e in out.entries] == [(e.uid, e.base, e.ext) for e in dst.entries]
    )
    return None if same else out


def _mirror(src: Uidlist, dst: Optional[Uidlist], present: Dict[bytes, bytes], version: int,
            on_source: Optional[Callable[[bytes], bool]] = None) -> Uidlist:
    """The source's numbering for the messages the destination holds, in ``version``."""
    keep_raw = version == src.version
    theirs = dst.by_base() if dst is not None and not keep_raw else {}
    entries = []
    for e in src.entries:
        if e.base not in present:
            continue
        d = theirs.get(e.base)
        if d is not None and d.uid == e.uid:
            entries.append(d)  # the destination's line for it (its extension fields), as it wrote it
        else:
            entries.append(_as(e, version, present[e.base], keep_raw))
    next_uid = src.next_uid
    extra = list(src.extra) if version == 3 else []
    if dst is not None:
        if version == 3 and src.version == 1:
            extra = list(dst.extra)  # the folder's GUID, which a version 1 file has no room for
        # Ours, kept on the destination though the source no longer has them (--no-delete, a held delete,
        # touched there, a conflict copy): they keep the UID the destination gave them, unless the source
        # gave it to another message since. One the source has but has not numbered yet gets the UID the
        # source will give it, not the destination's.
        numbered = {e.base for e in src.entries}
        taken = {e.uid for e in src.entries}
        kept = [e for e in dst.entries if e.base in present and e.base not in numbered and e.uid not in taken
                and not (on_source is not None and on_source(e.base))]  # fmt: skip
        if kept:
            keep = version == dst.version
            entries = sorted(entries + [_as(e, version, present[e.base], keep) for e in kept], key=lambda e: e.uid)
    if entries:
        next_uid = max(next_uid, entries[-1].uid + 1)
    return Uidlist(version, src.uidvalidity, next_uid, extra, entries)


def _renumbers(dst: Uidlist, out: Uidlist, present: Dict[bytes, bytes]) -> bool:
    """Would ``out`` give a message the destination still holds another UID than the destination's file
    does, or lower the next UID? Then the destination's index disagrees with it and must be rebuilt."""
    if out.uidvalidity != dst.uidvalidity or out.next_uid < dst.next_uid:
        return True
    now = out.by_base()
    return any(e.base in present and (e.base not in now or now[e.base].uid != e.uid) for e in dst.entries)


def _extend(src: Uidlist, dst: Uidlist, present: Dict[bytes, bytes], keep_src_uids: bool = True):
    """The destination's numbering, extended to the messages it does not number yet. Returns the list
    and how many of those the source numbered and that took another UID here.

    A message keeps the source's UID when that is above every UID the destination gave. One that cannot
    gets a UID above the source's too: given one the source uses for another message, a client that knew
    that message by it would be shown this one."""
    numbered = dst.by_base()
    entries = [_as(e, dst.version, present[e.base], True) for e in dst.entries if e.base in present]
    src_by_base = src.by_base()
    last = 1 << 62
    newcomers = sorted(
        (b for b in present if b not in numbered),
        key=lambda b: (src_by_base[b].uid if b in src_by_base else last, b),
    )
    next_uid = dst.next_uid
    later = []
    for b in newcomers:
        se = src_by_base.get(b)
        if se is not None and keep_src_uids and se.uid >= next_uid:
            entries.append(Entry(se.uid, b, present[b] if dst.version == 1 else b, se.ext))
            next_uid = se.uid + 1
        else:
            later.append(b)
    if keep_src_uids:
        next_uid = max(next_uid, src.next_uid)
    renumbered = 0
    for b in later:
        se = src_by_base.get(b)
        renumbered += se is not None  # one the source never numbered has no UID a client could know
        entries.append(Entry(next_uid, b, present[b] if dst.version == 1 else b, se.ext if se is not None else b""))
        next_uid += 1
    return Uidlist(dst.version, dst.uidvalidity, next_uid, list(dst.extra), entries), renumbered

"""Turn what a transport saw (:class:`~maildirsync.transport.RawScan`) into a Maildir view: folders,
their messages keyed by base, and their control files. Entries that cannot be synced safely (symlinks,
devices, hostile names, duplicates) are set aside with a reason, never followed.

A folder's ``cur``/``new`` arrive as bytes (one record per entry). :func:`build` makes message objects of
all of them (a first sync); :func:`parse_records` does it for the few records a repeated sync finds
changed; :func:`problems` says, on every run and at C speed where all is well, which entries of a
directory are not messages or cannot be synced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import maildir
from .compat import SLOTS
from .maildir import INBOX, FileKind, MessageName
from .transport import DIR, FILE, LINK, RawScan, decode, records

SUBDIRS = (b"cur", b"new")


@dataclass(**SLOTS)
class Msg:
    subdir: bytes
    name: bytes
    size: int
    mtime_ns: int
    parsed: MessageName

    @property
    def base(self) -> bytes:
        return self.parsed.base


@dataclass(**SLOTS)
class Folder:
    msgs: dict[bytes, Msg] = field(default_factory=dict)
    controls: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # name -> (size, mtime_ns)
    dir_mtimes: dict[bytes, int] = field(default_factory=dict)  # b"cur"/b"new" -> mtime_ns
    unchanged: set[bytes] = field(default_factory=set)  # subdirs not re-read (mtime as last time)
    has_index: bool = False  # Dovecot's dovecot.index* files are there (they hold its numbering)


@dataclass(**SLOTS)
class Mailbox:
    sep: bytes = b":"
    folders: dict[bytes, Folder] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # unreadable parts: forbid deletes
    rejected: list[str] = field(default_factory=list)  # messages that cannot be synced, with the reason
    # Entries that are not messages (symbolic links, devices, fifos): skipped with a warning, and no
    # failure: a Maildir holding one stray link must not fail its user at every run (issue 12).
    skipped: list[str] = field(default_factory=list)
    now_ns: int | None = None
    dirs: dict[bytes, bytes] = field(default_factory=dict)  # the records of each cur/new read (transport's)


def split_rel(rel: bytes) -> tuple[bytes, bytes]:
    """``b".Sent/cur"`` -> (b".Sent", b"cur"); ``b"cur"`` -> (INBOX, b"cur")."""
    folder, _, sub = rel.rpartition(b"/")
    return folder, sub


def build(raw: RawScan, messages: bool = True) -> Mailbox:
    """The view of a listing; with ``messages``, every record of every cur/new becomes a :class:`Msg`."""
    if raw.pending:  # its cur/new would look empty, their messages deleted
        raise RuntimeError("internal: a listing's first pass alone taken for the whole listing")
    box = Mailbox(errors=list(raw.errors), rejected=list(raw.rejected), now_ns=raw.now_ns, dirs=raw.dirs)
    box.sep = detect_separator(raw.dirs)
    top_dirs = {e.rel for e in raw.tops if e.kind == DIR and b"/" not in e.rel}
    folders: dict[bytes, Folder] = {}
    if b"cur" in top_dirs or b"new" in top_dirs or any(r in SUBDIRS for r in raw.unchanged):
        folders[INBOX] = Folder()
    for rel in top_dirs:
        if maildir.is_folder_name(rel):
            folders[rel] = Folder()
    for rel in raw.unchanged:
        folder, sub = split_rel(rel)
        if folder in folders:
            folders[folder].unchanged.add(sub)
    for e in raw.tops:
        parts = e.rel.split(b"/")
        if len(parts) == 1 and e.rel.startswith(b".") and e.kind in (DIR, LINK) and e.rel not in folders:
            # Looks like a folder but cannot be synced as one: say so, its mail would silently be missing.
            if e.kind == LINK:
                box.skipped.append(f"{maildir.show(e.rel)}: symbolic link, not followed")
            else:
                why = maildir.bad_name(e.rel)
                if why:
                    box.rejected.append(f"{maildir.show(e.rel)}: {why}")
            continue
        if len(parts) == 1:
            folder, name = INBOX, parts[0]
        elif len(parts) == 2 and parts[0] in folders and parts[0] != INBOX:
            folder, name = parts
        else:
            continue  # inside a directory we do not sync (tmp/, a non-folder directory)
        f = folders.get(folder)
        if f is not None:
            _top_file(box, f, folder, e, name)
    box.folders = folders
    for rel, blob in raw.dirs.items():
        folder, sub = split_rel(rel)
        f = folders.get(folder)
        if f is None or sub not in SUBDIRS:
            continue
        if messages:
            parse_records(box, f, rel, sub, records(blob))
        else:
            problems(box, rel, blob)
    return box


# What no plain message record holds: a control byte (in a name, or the \x01 of an entry that is not a regular
# file). Names over 255 bytes no filesystem makes; a listing that claims one was refused before encoding.
# Kept as the bytes a translate() deletes: what remains is the suspect bytes, found about 18x faster than by
# a regex character class (a folder's listing is ~100 KB, and a run after 10 % flags reads every cur/).
_PLAIN = bytes(b for b in range(256) if not (0x01 <= b <= 0x1F or b == 0x7F))


def problems(box: Mailbox, rel: bytes, blob: bytes) -> None:
    """Report what of a cur/new cannot be synced, or is no message, as :func:`parse_records` would; at C
    speed when nothing is wrong (no control byte, no overlong name: the records parse as messages)."""
    if not blob.translate(None, _PLAIN):
        return
    scratch = Folder()
    parse_records(box, scratch, rel, split_rel(rel)[1], records(blob))


def detect_separator(dirs: dict[bytes, bytes]) -> bytes:
    """The Maildir's separator, judged from its cur/ records: the first one followed by ``2,``."""
    for rel, blob in dirs.items():
        if not rel.endswith(b"cur"):
            continue
        for sep in maildir.SEPARATORS:
            if sep + b"2," in blob:
                return sep
    return b":"


def _top_file(box: Mailbox, f: Folder, folder: bytes, e, name: bytes) -> None:
    if e.kind == DIR:
        if name in SUBDIRS:
            f.dir_mtimes[name] = e.mtime_ns
        return
    kind = maildir.classify(name)
    if kind is not FileKind.CONTROL:
        if kind is FileKind.CACHE and name.startswith(b"dovecot.index"):
            f.has_index = True
        return
    if e.kind != FILE:
        box.skipped.append(f"{maildir.show(e.rel)}: not a regular file")
        return
    if name == b"subscriptions" and folder != INBOX:
        return
    f.controls[name] = (e.size, e.mtime_ns)


def parse_records(box: Mailbox, f: Folder, rel: bytes, subdir: bytes, recs, said: bool = False) -> dict[bytes, Msg]:
    """Messages of ``recs`` (records of ``rel``) into ``f.msgs``; what is not a message is set aside with
    the reason (``said``: :func:`problems` told already). Returns the messages made, by base."""
    made: dict[bytes, Msg] = {}
    report = Mailbox() if said else box
    for rec in recs:
        try:
            name, kind, size, mtime = decode(rec)
        except ValueError:
            report.rejected.append(f"{maildir.show(rel + b'/' + rec[:80])}: an entry the source described wrongly")
            continue
        if said and (kind != FILE or maildir.bad_name(name)):
            continue
        m = _message(box, f, rel, kind, size, mtime, subdir, name, checked=said)
        if m is not None:
            made[m.base] = m
    return made


def _message(box: Mailbox, f: Folder, rel: bytes, kind: str, size: int, mtime: int, subdir: bytes,
             name: bytes, checked: bool = False) -> Msg | None:
    """``checked``: the name is known to be a safe regular file's (the caller asked bad_name)."""
    if not maildir.is_message_name(name):
        return None
    why = None if checked else maildir.bad_name(name)
    if why:
        box.rejected.append(f"{maildir.show(rel + b'/' + name)}: {why}")
        return None
    if kind != FILE:
        box.skipped.append(f"{maildir.show(rel + b'/' + name)}: " + ("symbolic link, not followed" if kind == LINK else "not a regular file"))
        return None
    parsed = maildir.parse_name(name, box.sep)
    old = f.msgs.get(parsed.base)
    # The same base twice in one folder: a rename raced the listing (new/x then cur/x:2,S), or two
    # files really share a base. cur/ is the later state of a message, so it wins.
    if old is not None and (old.subdir == b"cur" or subdir == b"new"):
        if old.subdir == subdir:
            box.rejected.append(f"{maildir.show(rel + b'/' + name)}: another file in this folder has the same base")
        return None
    m = f.msgs[parsed.base] = Msg(subdir, name, size, mtime, parsed)
    return m

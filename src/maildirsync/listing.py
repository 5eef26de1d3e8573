"""Turn what a transport saw (:class:`~maildirsync.transport.RawScan`) into a Maildir view: folders,
their messages keyed by base, and their control files. Entries that cannot be synced safely (symlinks,
devices, hostile names, duplicates) are set aside with a reason, never followed."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import maildir
from .compat import SLOTS
from .maildir import INBOX, FileKind, MessageName
from .transport import DIR, FILE, LINK, RawScan


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


def build(raw: RawScan) -> Mailbox:
    box = Mailbox(errors=list(raw.errors), rejected=list(raw.rejected), now_ns=raw.now_ns)
    sep = maildir.detect_separator(e.rel for e in raw.entries if e.kind == FILE and b"/cur/" in b"/" + e.rel)
    box.sep = sep
    top_dirs = {e.rel for e in raw.entries if e.kind == DIR and b"/" not in e.rel}
    folders: dict[bytes, Folder] = {}
    if b"cur" in top_dirs or b"new" in top_dirs or any(r.startswith(b"cur") or r.startswith(b"new") for r in raw.unchanged):
        folders[INBOX] = Folder()
    for rel in top_dirs:
        if maildir.is_folder_name(rel):
            folders[rel] = Folder()
    for rel in raw.unchanged:
        folder, _, sub = rel.rpartition(b"/")
        if folder in folders:
            folders[folder].unchanged.add(sub)

    for e in raw.entries:
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
            folder, rest = INBOX, parts
        elif parts[0] in folders and parts[0] != INBOX:
            folder, rest = parts[0], parts[1:]
        elif parts[0] in (b"cur", b"new"):
            folder, rest = INBOX, parts
        else:
            continue  # inside a directory we do not sync (tmp/, a non-folder directory)
        f = folders.get(folder)
        if f is None:
            continue
        if len(rest) == 1:
            _top_file(box, f, folder, e, rest[0])
        elif len(rest) == 2 and rest[0] in (b"cur", b"new"):
            _message(box, f, e, rest[0], rest[1], sep)
    box.folders = folders
    return box


def _top_file(box: Mailbox, f: Folder, folder: bytes, e, name: bytes) -> None:
    if e.kind == DIR:
        if name in (b"cur", b"new"):
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


def _message(box: Mailbox, f: Folder, e, subdir: bytes, name: bytes, sep: bytes) -> None:
    if not maildir.is_message_name(name):
        return
    why = maildir.bad_name(name)
    if why:
        box.rejected.append(f"{maildir.show(e.rel)}: {why}")
        return
    if e.kind != FILE:
        box.skipped.append(f"{maildir.show(e.rel)}: " + ("symbolic link, not followed" if e.kind == LINK else "not a regular file"))
        return
    parsed = maildir.parse_name(name, sep)
    old = f.msgs.get(parsed.base)
    # The same base twice in one folder: a rename raced the listing (new/x then cur/x:2,S), or two
    # files really share a base. cur/ is the later state of a message, so it wins.
    if old is not None and (old.subdir == b"cur" or subdir == b"new"):
        if old.subdir == subdir:
            box.rejected.append(f"{maildir.show(e.rel)}: another file in this folder has the same base")
        return
    f.msgs[parsed.base] = Msg(subdir, name, e.size, e.mtime_ns, parsed)

"""What each side holds now, against what the last run left: the diff stage between listing and plan.

The last run left, per folder, the records of the source's ``cur``/``new`` as it saw them and the names of
the destination's as it left them (``Index`` lists, tags ``sc sn dc dn``). Today's listings are compared
with those at C speed (bytes equal, else two sets); only the names that differ become objects, and the
plan looks at those alone, with the index records of their bases. A folder the last run left no lists for
(a first sync, a failure there, an older index) is looked at whole.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

from . import maildir
from .compat import SLOTS
from .index import Rec
from .listing import SUBDIRS, Mailbox, Msg, parse_records
from .maildir import FileKind

UIDLIST = b"dovecot-uidlist"
from .transport import DIR, FILE, LINK, RawEntry, RawScan, local_listblob, records

SRC, DST = b"s", b"d"


def tag(side: bytes, sub: bytes) -> bytes:
    return side + sub[:1]  # sc sn dc dn


# --- the destination's listing -------------------------------------------------------------------------


def dest_tops(root: bytes, light: Optional[Dict[bytes, Set[bytes]]] = None) -> RawScan:
    """The destination Maildir's own entries and its folders' (directories, control files), statted only
    where a stamp is needed: cur/new (mtimes) and control files. Messages are not looked at here. Of a
    folder in ``light``, only its cur/new and the names given are statted: no directory listing."""
    out = RawScan()
    light = light or {}

    def glance(rel: bytes, names) -> None:
        for name in (b"cur", b"new", *sorted(names)):
            kind = DIR if name in SUBDIRS else FILE
            try:
                st = os.lstat(root + b"/" + rel + b"/" + name)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                out.tops.append(RawEntry(rel + b"/" + name, LINK, 0, 0))
            elif stat.S_ISDIR(st.st_mode) if kind == DIR else stat.S_ISREG(st.st_mode):
                out.tops.append(RawEntry(rel + b"/" + name, kind, st.st_size if kind == FILE else 0, st.st_mtime_ns))

    def visit(rel: bytes) -> List[bytes]:
        path = root + b"/" + rel if rel else root
        prefix = rel + b"/" if rel else b""
        folders = []
        with os.scandir(path) as it:
            for d in it:
                name = d.name
                try:
                    if d.is_symlink():
                        out.tops.append(RawEntry(prefix + name, LINK, 0, 0))
                    elif d.is_dir():
                        if name in SUBDIRS:
                            out.tops.append(RawEntry(prefix + name, DIR, 0, d.stat(follow_symlinks=False).st_mtime_ns))
                        elif not rel and maildir.is_folder_name(name):
                            out.tops.append(RawEntry(name, DIR, 0, 0))
                            folders.append(name)
                    else:
                        kind = maildir.classify(name)
                        if kind is FileKind.CONTROL:
                            st = d.stat(follow_symlinks=False)
                            out.tops.append(RawEntry(prefix + name, FILE, st.st_size, st.st_mtime_ns))
                        elif kind is FileKind.CACHE:
                            out.tops.append(RawEntry(prefix + name, FILE, 0, 0))
                except FileNotFoundError:
                    continue
        return folders

    try:
        folders = visit(b"")
    except OSError as e:
        from .transport import SourceError

        raise SourceError(f"cannot read {maildir.show(root)}: {e.strerror}") from e
    for f in folders:
        if f in light:
            glance(f, light[f])
            continue
        try:
            visit(f)
        except OSError as e:
            out.errors.append(f"{maildir.show(f)}: {e.strerror}")
    return out


def names_blob(path: bytes) -> bytes:
    """The names in a directory as one value (no stat: a destination message's size is in the index)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return b""
    return b"\0".join(names) + b"\0" if names else b""


# --- per folder: whole, or the difference --------------------------------------------------------------


@dataclass(**SLOTS)
class FolderWork:
    """One folder to plan: either whole (``whole``), or its changed bases (``touched``)."""

    whole: bool
    touched: Set[bytes] = field(default_factory=set)
    src_now: Dict[bytes, bytes] = field(default_factory=dict)  # sub -> records, as listed or as left
    dst_now: Dict[bytes, bytes] = field(default_factory=dict)  # sub -> names
    dst_added: Dict[bytes, List[tuple]] = field(default_factory=dict)  # base -> [(sub, name)] new there today
    count: int = 0  # messages the destination folder holds: the delete guards' reference
    then: Optional[Dict[bytes, bytes]] = None  # what the last run left of this folder's listings (by tag)


def base_of_record(rec: bytes, sep: bytes) -> bytes:
    name = rec.rsplit(b"/", 2)[0]
    if name[:1] == b"\x01":
        name = name[2:]
    return maildir.base_of(name, sep)


def _changed(then: bytes, now: bytes):
    if then == now:
        return (), ()
    a, b = set(records(then)), set(records(now))
    return b - a, a - b


def diff_folder(folder: bytes, src: Mailbox, dst: Mailbox, lists: Dict[bytes, bytes],
                src_dirs: Dict[bytes, bytes], dst_dirs: Dict[bytes, bytes], sep: bytes) -> FolderWork:
    """Compare a folder's listings today with what the last run left (``lists``, by tag). The source's
    added records become messages in ``src.folders[folder].msgs``; the bases that differ on either side
    are ``touched``. ``src_dirs``/``dst_dirs``: rel -> what was read today (absent: not read, unchanged)."""
    sf = src.folders.get(folder)
    w = FolderWork(whole=False, then=lists)
    for sub in SUBDIRS:
        rel = maildir.in_folder(folder, sub)
        then_s, then_d = lists.get(tag(SRC, sub), b""), lists.get(tag(DST, sub), b"")
        now_s = src_dirs.get(rel, then_s if sf is not None and sub in sf.unchanged else b"")
        now_d = dst_dirs.get(rel, then_d)
        w.src_now[sub], w.dst_now[sub] = now_s, now_d
        added, removed = _changed(then_s, now_s)
        if added and sf is not None:
            w.touched.update(parse_records(src, sf, rel, sub, added, said=True))
        w.touched.update(base_of_record(r, src.sep) for r in removed)
        added, removed = _changed(then_d, now_d)
        for n in added:
            b = maildir.base_of(n, sep)
            w.touched.add(b)
            w.dst_added.setdefault(b, []).append((sub, n))
        w.touched.update(maildir.base_of(n, sep) for n in removed)
        w.count += now_d.count(b"\0")
    return w


def complete(w: FolderWork, folder: bytes, src: Mailbox, dst: Mailbox, recs: Dict[bytes, Rec], root: bytes,
             sep: bytes) -> None:
    """Give the plan both sides of every touched base. A base unchanged on a side is as its record says
    (the last run left it so); a name new on the destination today is statted (the few that differ)."""
    sf, df = src.folders.get(folder), dst.folders.get(folder)
    fdir = maildir.folder_dir(root, folder)
    now_sets: Optional[Dict[bytes, Set[bytes]]] = None
    for base in w.touched:
        rec = recs.get(base)
        if sf is not None and base not in sf.msgs and rec is not None and rec.src_name:
            if (b"\0" + rec.src_name + b"/") in (b"\0" + w.src_now.get(rec.src_subdir, b"")):
                sf.msgs[base] = Msg(rec.src_subdir, rec.src_name, rec.size, rec.mtime_ns,
                                    maildir.parse_name(rec.src_name, src.sep))  # fmt: skip
        if df is None:
            continue
        found = w.dst_added.get(base)
        if found is None:
            if now_sets is None:
                now_sets = {sub: set(records(w.dst_now[sub])) for sub in SUBDIRS}
            if rec is not None and rec.dst_name and rec.dst_name in now_sets.get(rec.dst_subdir, ()):
                # Under the base of its name, as a whole listing has it: a conflict copy's is not the record's.
                p = maildir.parse_name(rec.dst_name, sep)
                df.msgs[p.base] = Msg(rec.dst_subdir, rec.dst_name, rec.size, rec.mtime_ns, p)
                continue
            if rec is not None:
                continue  # what the record names is gone from the destination
            found = names_with_base(w.dst_now, base, sep)  # a base the index has no record of: any name of it there?
        for sub, n in sorted(found):  # cur before new: cur is the later state of a message
            try:
                st = os.stat(fdir + b"/" + sub + b"/" + n, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and base not in df.msgs:
                df.msgs[base] = Msg(sub, n, st.st_size, st.st_mtime_ns, maildir.parse_name(n, sep))


def bases_of(names: bytes, sep: bytes) -> Set[bytes]:
    """The bases of the names in a names blob, as :func:`maildir.parse_name` splits them (on the last
    separator), at the cost of one split per name: a folder is asked this once for all the bases new in
    its user's mailbox, where a search per base in the blob cost a tenth of a run after 1 % new."""
    out = set()
    for n in names.split(b"\0"):
        head, s, _ = n.rpartition(sep)
        out.add(head if s else n)
    out.discard(b"")
    return out


def names_with_base(blobs: Dict[bytes, bytes], base: bytes, sep: bytes) -> List[tuple]:
    """(sub, name) of each name of ``base`` in these names blobs (by subdir). Searched for in the blob, not
    parsed name by name: a message moved in makes its folder ask this for one or two bases, and parsing
    the folder's every name for them was most of what a 1 % move cost per folder."""
    out = []
    for sub, names in blobs.items():
        blob = b"\0" + names
        for head in (b"\0" + base + sep, b"\0" + base + b"\0"):  # a name is its base, or base + sep + info
            i = blob.find(head)
            while i >= 0:
                end = blob.find(b"\0", i + 1)
                n = blob[i + 1 : end if end >= 0 else len(blob)]
                if n and maildir.base_of(n, sep) == base:  # base + sep + info holding a sep: another base
                    out.append((sub, n))
                i = blob.find(head, i + 1)
    return out


def whole_folder(folder: bytes, src: Mailbox, dst: Mailbox, src_dirs: Dict[bytes, bytes], root: bytes) -> FolderWork:
    """A folder the last run left no lists for: every source record becomes a message, and the destination
    is listed with a stat per message (its sizes are not in the index yet)."""
    sf, df = src.folders.get(folder), dst.folders.get(folder)
    w = FolderWork(whole=True)
    for sub in SUBDIRS:
        rel = maildir.in_folder(folder, sub)
        blob = src_dirs.get(rel, b"")
        w.src_now[sub] = blob
        if sf is not None and blob:
            parse_records(src, sf, rel, sub, records(blob), said=True)
        w.dst_now[sub] = b""
        if df is not None:
            try:
                listed = local_listblob(root + b"/" + rel)
            except (FileNotFoundError, NotADirectoryError):
                listed = b""
            parse_records(dst, df, rel, sub, records(listed))
    w.count = len(df.msgs) if df is not None else 0
    return w


def left_lists(root: bytes, folder: bytes, w: FolderWork, relist: Set[bytes]) -> Dict[bytes, bytes]:
    """What a run leaves for the next one to compare with: the source's records as it saw them, the
    destination's names as they are now: read again (after the run's own changes) for the subdirs in
    ``relist``, as read before planning for the others."""
    out = {}
    fdir = maildir.folder_dir(root, folder)
    for sub in SUBDIRS:
        out[tag(SRC, sub)] = w.src_now.get(sub, b"")
        out[tag(DST, sub)] = names_blob(fdir + b"/" + sub) if sub in relist or w.whole else w.dst_now.get(sub, b"")
    return out

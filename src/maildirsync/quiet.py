"""Is a folder, or a whole mailbox, as the last run left it on both sides? Then it has nothing to do.

A quiet folder costs a few stamps: its cur/new mtimes and control files, on both sides, against the
folder state the last run recorded. A quiet mailbox costs less: the run that left it records one
signature of everything those stamps are (the source's first-pass listing as the source printed it, the
destination's cur, new and dovecot-uidlist of each folder), and a later run that finds both the same says
"ok" for the user without decoding a folder state, building a listing or planning: a run with nothing
changed is the first pass, three lstat(2) per folder and two hashes per user. The signature is written
only where every folder would be found quiet from these very stamps, so it can never say "nothing to do"
where the per-folder path would find something.
"""

from __future__ import annotations

import os
import stat

import xxhash

from . import listing, maildir
from .index import FolderState
from .plan import same_mtime
from .transport import RawScan
from .uidlist import NAME as UIDLIST

ABSENT = -2  # a Ctl size meaning "there was no such file"


def uidlist_as_left(st: FolderState, now, source_side: bool) -> bool:
    """Is the folder's dovecot-uidlist, on one side, as the last run left it? ``now``: (size, mtime) or None."""
    ctl = st.controls.get(UIDLIST)
    if ctl is None:
        return now is None
    size, mtime = (ctl.src_size, ctl.src_mtime_ns) if source_side else (ctl.dst_size, ctl.dst_mtime_ns)
    if now is None:
        return size == ABSENT
    return now[0] == size and (same_mtime(now[1], mtime) if source_side else now[1] == mtime)


def source_quiet(st: FolderState, sf: listing.Folder, unchanged: set | None = None) -> bool:
    """Source side: cur/new not read again (``unchanged``, default what the listing skipped) and every
    control file as the last run saw it."""
    unchanged = sf.unchanged if unchanged is None else unchanged
    if not set(sf.dir_mtimes) <= unchanged or set(sf.dir_mtimes) != set(st.dir_mtimes):
        return False
    for name, stamp in sf.controls.items():
        ctl = st.controls.get(name)
        if ctl is None or ctl.src_size != stamp[0] or not same_mtime(ctl.src_mtime_ns, stamp[1]):
            return False
    return uidlist_as_left(st, sf.controls.get(UIDLIST), source_side=True)


def folder_quiet(st: FolderState, sf, df, dst_files: dict, folder: bytes) -> bool:
    """Both sides, given that the destination's cur/new mtimes are the ones recorded."""
    return (
        source_quiet(st, sf)
        and set(df.dir_mtimes) == set(st.dst_mtimes)
        and uidlist_as_left(st, dst_files.get(maildir.in_folder(folder, UIDLIST)), source_side=False)
    )  # fmt: skip


def dst_files(dst: listing.Mailbox) -> dict:
    return {maildir.in_folder(f, n): v for f, df in dst.folders.items() for n, v in df.controls.items()}


# --- a whole mailbox ----------------------------------------------------------------------------------


def source_sig(raw: RawScan, ident: bytes) -> str | None:
    """The source side of a mailbox's signature: its first-pass listing (the root's and its folders' own
    entries) with ``ident`` (the pair of roots and the options that change a plan). None where the listing
    had trouble: that is said again by the per-folder path."""
    if raw.errors or raw.rejected:
        return None
    if raw.digest is not None:  # the records as the source printed them, hashed as they came
        return xxhash.xxh3_128_hexdigest(ident + b"\0" + raw.digest.encode())
    return _tops_hash(raw.settle().tops, ident)


GLANCED = (b"cur", b"new", UIDLIST)  # of each folder: all that makes it quiet on the destination side


def dest_stamps(root: bytes, folders) -> dict:
    """folder -> what the destination holds at its cur, new and dovecot-uidlist: (type, size, mtime) or
    None each. Nothing else there decides whether a folder is quiet (engine._folder_work): Dovecot's own
    index files, or a control file it rewrote, change nothing a quiet folder's run does."""
    out = {}
    for folder in folders:
        d = maildir.folder_dir(root, folder) + b"/"
        got = []
        for name in GLANCED:
            try:
                st = os.lstat(d + name)
            except OSError:
                got.append(None)
                continue
            got.append((stat.S_IFMT(st.st_mode), st.st_size if stat.S_ISREG(st.st_mode) else 0, st.st_mtime_ns))
        out[folder] = tuple(got)
    return out


def dest_sig(stamps: dict) -> str:
    h = xxhash.xxh3_128()
    for folder in sorted(stamps):
        h.update(b"%s\0%r\0" % (folder, stamps[folder]))
    return h.hexdigest()


def _dest_quiet(st: FolderState, got) -> bool:
    cur, new, lst = got
    dirs = {sub: g[2] for sub, g in ((b"cur", cur), (b"new", new)) if g is not None and g[0] == stat.S_IFDIR}
    if not dirs or dirs != st.dst_mtimes:
        return False
    now = (lst[1], lst[2]) if lst is not None and lst[0] == stat.S_IFREG else None
    return uidlist_as_left(st, now, source_side=False)


def _tops_hash(tops, ident: bytes) -> str:
    h = xxhash.xxh3_128(ident)
    for e in sorted(tops, key=lambda e: e.rel):
        h.update(b"%s\0%s\0%d\0%d\0" % (e.rel, e.kind.encode(), e.size, e.mtime_ns))
    return h.hexdigest()


def left_quiet(root: bytes, ident: bytes, src_raw: RawScan, src: listing.Mailbox, news: dict) -> list | None:
    """After a run: the mailbox's signature if the next run would find every folder quiet, given that
    neither side changes meanwhile (``news``: folder -> the state this run leaves, of every folder the
    index keeps for the user). Looks at the destination afresh, as this run left it, and decides on what
    that look saw, which is what the signature holds."""
    if src.errors or src.rejected or src.skipped or set(news) != set(src.folders):
        return None
    ssig = source_sig(src_raw, ident)
    if ssig is None:
        return None
    stamps = dest_stamps(root, src.folders)
    for folder, sf in src.folders.items():
        st = news[folder]
        if not st.snap or st.problems or st.dir_mtimes != sf.dir_mtimes:
            return None
        if not source_quiet(st, sf, set(sf.dir_mtimes)) or not _dest_quiet(st, stamps[folder]):
            return None
    return [ssig, dest_sig(stamps), sorted(f.decode("latin-1") for f in src.folders)]

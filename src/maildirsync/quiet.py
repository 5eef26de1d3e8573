"""Is a folder, or a whole mailbox, as the last run left it on both sides? Then it has nothing to do.

A quiet folder costs a few stamps: its cur/new mtimes and control files, on both sides, against the
folder state the last run recorded. A quiet mailbox costs less: the run that left it records one
signature of everything those stamps are (the source's first-pass listing, the destination's glance),
and a later run that finds both the same says "ok" for the user without decoding a folder state, building
a listing or planning. A run with nothing changed is then the two listings and two hashes per user. The
signature is written only where every folder would be found quiet from these very stamps, so it can
never say "nothing to do" where the per-folder path would find something.
"""

from __future__ import annotations

import xxhash

from . import listing, maildir, views
from .index import FolderState
from .maildir import FileKind
from .plan import same_mtime
from .transport import RawScan, SourceError
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


def folder_quiet(st: FolderState, sf, df, dst_files: dict, folder: bytes, unchanged: set | None = None) -> bool:
    """Both sides, given that the destination's cur/new mtimes are the ones recorded."""
    return (
        source_quiet(st, sf, unchanged)
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
    return _tops_hash(raw.tops, ident, cache_stamps=True)


def dest_glance(root: bytes, src: listing.Mailbox) -> RawScan:
    """What of the destination mailbox its signature covers: the root's entries, and of each folder the
    source has, its cur/new and the control files the source has, dovecot-uidlist and dovecot.index."""
    names = {UIDLIST, b"dovecot.index"}
    return views.dest_tops(root, {f: set(sf.controls) | names for f, sf in src.folders.items() if f})


def dest_sig(raw: RawScan) -> str | None:
    if raw.errors or raw.rejected:
        return None
    # Dovecot's own index files change whenever the destination's Dovecot opens the folder; only whether
    # they are there counts (listing.Folder.has_index), not their stamps.
    return _tops_hash(raw.tops, b"", cache_stamps=False)


def _tops_hash(tops, ident: bytes, cache_stamps: bool) -> str:
    h = xxhash.xxh3_128(ident)
    for e in sorted(tops, key=lambda e: e.rel):
        size, mtime = e.size, e.mtime_ns
        if not cache_stamps and maildir.classify(e.rel.rpartition(b"/")[2]) is FileKind.CACHE:
            size = mtime = 0
        h.update(b"%s\0%s\0%d\0%d\0" % (e.rel, e.kind.encode(), size, mtime))
    return h.hexdigest()


def left_quiet(root: bytes, ident: bytes, src_raw: RawScan, src: listing.Mailbox, news: dict) -> list | None:
    """After a run: the mailbox's signature if the next run would find every folder quiet, given that
    neither side changes meanwhile (``news``: folder -> the state this run leaves, of every folder the
    index keeps for the user). Takes a fresh glance at the destination, as this run left it."""
    if src.errors or src.rejected or src.skipped or set(news) != set(src.folders):
        return None
    ssig = source_sig(src_raw, ident)
    try:
        got = dest_glance(root, src)
    except SourceError:
        return None
    dsig = dest_sig(got)
    if ssig is None or dsig is None:
        return None
    dst = listing.build(got, messages=False)
    files = dst_files(dst)
    for folder, sf in src.folders.items():
        st, df = news[folder], dst.folders.get(folder)
        if not st.snap or st.problems or df is None or st.dir_mtimes != sf.dir_mtimes:
            return None
        if df.dir_mtimes != st.dst_mtimes or not folder_quiet(st, sf, df, files, folder, set(sf.dir_mtimes)):
            return None
    return [ssig, dsig]

"""``maildirsync verify``: re-hash destination messages against what the index says we wrote, and compare
each folder's UID -> message map with the source's (DESIGN.md §3, the UID invariant)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import uidlist
from .executor import hash_file
from .errors import UsageError
from .index import StateDir
from .maildir import folder_dir, folder_display, in_folder, is_folder_name, show
from .transport import Source, SourceError


@dataclass
class UserCheck:
    user: str
    checked: int = 0
    changed_there: int = 0  # renamed or deleted on the destination since: normal after the switch
    corrupt: int = 0  # same name, other content: the destination copy is damaged
    problems: list[str] = field(default_factory=list)
    uid_folders: int = 0  # folders whose UID lists were compared
    uid_differ: int = 0  # folders where a client would be shown other mail, or none, under a source UID
    uid_notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.corrupt or self.uid_differ)

    def line(self) -> str:
        verdict = "DIFFERENT CONTENT" if self.corrupt else ("UIDS DIFFER" if self.uid_differ else "ok")
        return (
            f"{self.user}: {verdict}: {self.checked} checked, {self.corrupt} with other content, "
            f"{self.changed_there} renamed or deleted on the destination since the last sync; UIDs of "
            f"{self.uid_folders} folder(s) compared with the source's, {self.uid_differ} differ"
        )

    def as_dict(self) -> dict:
        return {
            "user": self.user,
            "checked": self.checked,
            "corrupt": self.corrupt,
            "changed_on_destination": self.changed_there,
            "problems": self.problems,
            "uid_folders": self.uid_folders,
            "uid_folders_differing": self.uid_differ,
            "uid_notes": self.uid_notes,
        }


def run(state: StateDir, dest: dict[str, Path], only: list[str], source: Source | None = None,
        sources: dict[str, bytes] | None = None) -> list[UserCheck]:
    """``source``/``sources`` (user -> source Maildir): compare UID lists too."""
    if not (state.index_path / "data.mdb").exists():
        raise UsageError(f"no index at {state.index_path}: nothing was synced from that source yet")
    state.acquire("maildirsync verify")  # files must not move under us
    try:
        index, _note = state.open_index(readonly=True)
        try:
            users = sorted(u.decode("utf-8", "surrogateescape") for u in index.all_status())
            out = []
            for user in users:
                if (only and user not in only) or user not in dest:
                    continue
                c = _check(user, os.fsencode(dest[user]), index.user_records(user.encode()))
                if source is not None and sources and user in sources:
                    own = {f for f, st in index.user_folders(user.encode()).items() if st.uids_own}
                    _check_uids(c, source, sources[user], os.fsencode(dest[user]), own)
                out.append(c)
            return out
        finally:
            index.close()
    finally:
        state.release()


def _check(user: str, root: bytes, recs) -> UserCheck:
    c = UserCheck(user)
    for folder, byb in sorted(recs.items()):
        fdir = folder_dir(root, folder)
        for _base, rec in sorted(byb.items()):
            c.checked += 1
            if not rec.dst_name:  # deleted on the destination, as a sync noted
                c.changed_there += 1
                continue
            p = fdir + b"/" + rec.dst_subdir + b"/" + rec.dst_name
            try:
                h, n = hash_file(p)
            except FileNotFoundError:
                c.changed_there += 1
                continue
            if h != rec.hash or n != rec.size:
                c.corrupt += 1
                c.problems.append(f"{folder_display(folder)}/{rec.dst_subdir.decode()}/{show(rec.dst_name)}: content differs")
    return c


def _check_uids(c: UserCheck, source: Source, src_root: bytes, dst_root: bytes, own: set) -> None:
    """Per folder, the source's and the destination's UID -> message (base) maps. Before the switch they
    must be equal. After it (the destination numbers the folder itself) a message the destination took
    under a new UID is expected, and said; two servers naming different mail by one UID is not."""
    try:
        folders = [b""] + sorted(n for n in os.listdir(dst_root) if is_folder_name(n))
    except OSError as e:
        c.uid_notes.append(f"cannot list {show(dst_root)}: {e.strerror}")
        c.uid_differ += 1
        return
    for folder in folders:
        try:
            with open(folder_dir(dst_root, folder) + b"/" + uidlist.NAME, "rb") as f:
                mine = f.read()
        except OSError:
            continue
        try:
            theirs = source.read(src_root, in_folder(folder, uidlist.NAME))
        except (OSError, SourceError) as e:
            c.uid_notes.append(f"{folder_display(folder)}: cannot read the source's dovecot-uidlist: {e}")
            c.uid_differ += 1
            continue
        if theirs is None:
            continue
        name = folder_display(folder)
        try:
            s, d = uidlist.parse(theirs), uidlist.parse(mine)
        except uidlist.UidlistError as e:
            c.uid_notes.append(f"{name}: unreadable dovecot-uidlist ({e})")
            c.uid_differ += 1
            continue
        c.uid_folders += 1
        su, du = s.uids(), d.uids()
        sb, db = s.by_base(), d.by_base()
        other = sum(1 for u, b in du.items() if u in su and su[u] != b)  # one UID, two messages
        moved = sum(1 for b, e in db.items() if b in sb and sb[b].uid != e.uid)  # one message, two UIDs
        extra = sum(1 for u, b in du.items() if u not in su and b not in sb)  # a UID the source lacks
        uv = s.uidvalidity != d.uidvalidity
        if folder in own:
            if other or moved or uv:
                c.uid_notes.append(
                    f"{name}: after the switch: {moved} message(s) under a new UID, {other} UID(s) naming mail "
                    "of the destination's own, as reported by the syncs (the destination numbers this folder)"
                )
            continue
        if other or moved or extra or uv:
            c.uid_differ += 1
            what = [f"{n} {w}" for n, w in ((other, "UID(s) naming another message"), (moved, "message(s) under "
                    "another UID"), (extra, "UID(s) the source lacks")) if n]  # fmt: skip
            if uv:
                what.insert(0, f"UIDVALIDITY {d.uidvalidity} instead of {s.uidvalidity}")
            c.uid_notes.append(f"{name}: differs from the source: " + ", ".join(what))

"""The second, pure step of a plan: each changed folder's ``dovecot-uidlist`` (DESIGN.md §3, the UID
invariant). It runs after the message plan, on what the destination folder will hold once that plan is
applied, so that a dry run shows the same UID merge the real run makes.

The executor makes the same merge again under Dovecot's lock with what it finds there then (a live
Dovecot may have delivered meanwhile); :class:`UidsCtx` carries what it needs for that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set, Tuple

from . import maildir, uidlist
from .compat import SLOTS
from .index import FolderState
from .listing import Folder
from .plan import ADOPT, CONFLICT, CONTROL, COPY, DELETE, FETCH, MOVE, REFETCH, RENAME, Action, Inputs, Plan, order
from .uidlist import Merged, Uidlist, UidlistError

UIDS = "uids"
PLACING = (ADOPT, FETCH, REFETCH, CONFLICT, COPY, MOVE, RENAME)


@dataclass(**SLOTS)
class UidsCtx:
    """What a folder's UID merge starts from, for the executor to merge again under the lock."""

    src: Optional[Uidlist]
    src_stamp: Tuple[int, int]  # size, mtime of the source file as read
    ours: Optional[Set[bytes]]  # destination bases this tool placed or adopted, the plan's included
    on_source: Callable[[bytes], bool] = bool  # does the source's folder hold this base (numbered or not)?
    own_before: bool = False
    uidvalidity_ours: Optional[int] = None
    merged: Optional[Merged] = None  # the planned merge; the executor replaces it with the one it made
    notes: list = field(default_factory=list)
    src_data: Optional[bytes] = None  # the source's file as read
    # The source's file is to be written as it is (see _verbatim): ``dst_stamp`` is the destination's
    # file as the plan saw it, which the executor checks is still so before doing it.
    verbatim: bool = False
    dst_stamp: Optional[Tuple[int, int]] = None
    ours_of: Optional[Callable[[], Set[bytes]]] = None  # works ``ours`` out, when the quick way will not do
    same: Optional[bool] = None  # is the destination's list the source's byte for byte (once written)?
    left: Optional[Tuple[int, int, int]] = None  # (inode, size, mtime) of the list ``same`` was judged on

    def src_list(self) -> Optional[Uidlist]:
        if self.src is None and self.src_data is not None:
            try:
                self.src = uidlist.parse(self.src_data)
            except UidlistError:
                self.src_data = None
        return self.src

    def ours_set(self) -> Set[bytes]:
        if self.ours is None and self.ours_of is not None:
            self.ours = self.ours_of()
        return self.ours or set()


def parse_or_note(data: Optional[bytes], what: str, folder: bytes, sep: bytes, notes: list) -> Optional[Uidlist]:
    if data is None:
        return None
    try:
        return uidlist.parse(data, sep)
    except UidlistError as e:
        notes.append(f"{maildir.folder_display(folder)}: the {what}'s dovecot-uidlist is unreadable ({e})")
        return None


def final_names(actions: List[Action], folder: bytes, names: Dict[bytes, bytes], sep: bytes) -> Dict[bytes, bytes]:
    """base -> file name of the destination folder's messages once a plan's ``actions`` are applied
    (``names``: as they are now, all of them)."""
    names = dict(names)

    def base(w) -> bytes:
        return maildir.base_of(w[1], sep)

    for a in actions:
        if a.kind == MOVE and a.from_folder == folder:
            names.pop(base(a.old), None)
        if a.folder != folder:
            continue
        if a.kind in (RENAME, ADOPT, REFETCH):
            names.pop(base(a.old), None)
            names[base(a.dst)] = a.dst[1]
        elif a.kind in (FETCH, CONFLICT, COPY, MOVE):
            names[base(a.dst)] = a.dst[1]
        elif a.kind == DELETE:
            names.pop(base(a.old), None)
    return names


def plan_uids(plan: Plan, inp: Inputs, lists: Dict[bytes, Tuple[Optional[bytes], Optional[bytes], Tuple[int, int]]],
              names_of: Optional[Callable[[bytes], Dict[bytes, bytes]]] = None,
              fresh_of: Optional[Callable[[bytes], Optional[Set[bytes]]]] = None,
              on_source_of: Optional[Callable[[bytes], Callable[[bytes], bool]]] = None) -> None:
    """Add each folder's UID merge to ``plan``. ``lists``: folder -> (source file, destination file,
    source stamp), for the folders whose UID list needs a look (changed on either side). ``names_of``:
    folder -> base -> name of all the destination holds there (default: its listing in the inputs);
    ``fresh_of``: folder -> the bases new on the destination since the last run (None: any may be);
    ``on_source_of``: folder -> is this base on the source? (default: in its listing in the inputs)."""
    sep = plan.sep
    placed: Dict[bytes, Set[bytes]] = {}  # what this plan puts (or adopts) in each folder
    for a in plan.actions:
        if a.kind in PLACING and a.dst is not None:
            placed.setdefault(a.folder, set()).add(maildir.base_of(a.dst[1], sep))
    for folder in sorted(lists):
        src_data, dst_data, stamp = lists[folder]
        notes: list = []
        state = inp.states.get(folder) or FolderState()
        df = inp.dst.folders.get(folder)
        fresh = fresh_of(folder) if fresh_of is not None else None
        recs = inp.recs.get(folder, {})
        # (Read with the size the listing gave it: no message numbered in it arrived after the listing.)
        if fresh is not None and stamp[0] == len(src_data or b"") and _verbatim(state, src_data, dst_data, df, inp, folder):
            mine = {maildir.base_of(r.dst_name, sep) for r in recs.values() if r.dst_name}
            if all(b in mine or b in placed.get(folder, ()) for b in fresh):
                ctx = _verbatim_ctx(plan, inp, folder, state, src_data, stamp, df, fresh, mine, placed, names_of,
                                    on_source_of, sep)  # fmt: skip
                plan.uids[folder] = ctx
                ctx.same = src_data == dst_data
                if not ctx.same:
                    plan.actions.append(Action(CONTROL, folder, base=uidlist.NAME, note=UIDS))
                continue
        src = parse_or_note(src_data, "source", folder, inp.src.sep, notes)
        dst = parse_or_note(dst_data, "destination", folder, sep, notes)
        now = names_of(folder) if names_of is not None else ({b: m.name for b, m in df.msgs.items()} if df else {})
        present = final_names(plan.actions, folder, now, sep)
        # Mail of the destination's own: what it holds that we neither placed nor adopted. Of a folder
        # planned by its changes alone, only a name new there since the last run can be.
        mine = {maildir.base_of(r.dst_name, sep) for r in recs.values() if r.dst_name} | placed.get(folder, set())
        theirs = {b for b in (present if fresh is None else fresh) if b in present and b not in mine}
        # Ours: what the destination holds now or will hold once the plan is applied, but theirs. (The
        # executor merges at every landing, while messages the plan deletes are still there.)
        ours = (set(now) | set(present)) - theirs
        if src is not None and dst is not None and dst.version == 1:
            _backup_leftovers(plan, inp, folder, src, dst, present, ours, df)
            theirs -= ours
        sf = inp.src.folders.get(folder)
        on_source = on_source_of(folder) if on_source_of is not None else set(sf.msgs if sf is not None else ()).__contains__
        ctx = UidsCtx(src, stamp, ours, on_source, state.uids_own, state.uidvalidity, notes=notes, src_data=src_data,
                      dst_stamp=df.controls.get(uidlist.NAME) if df is not None else None)  # fmt: skip
        ctx.merged = uidlist.merge(
            src, dst, present, ours, own_before=state.uids_own, uidvalidity_ours=state.uidvalidity,
            has_index=df is not None and df.has_index, folder=folder, dst_raw=dst_data if dst is not None else None,
            on_source=on_source, src_raw=src_data if src is not None else None,
        )  # fmt: skip
        plan.uids[folder] = ctx
        ctx.same = src_data is not None and src_data == dst_data
        if theirs and not state.uids_own:
            notes.append(
                f"{maildir.folder_display(folder)}: {len(theirs)} message(s) on the destination were not placed by "
                "maildirsync (mail delivered there, or copies from a backup of mail deleted on the source since): "
                "kept; from now on the destination numbers this folder and its numbering is only extended"
            )
        plan.warnings.extend(notes + ctx.merged.notes)
        if ctx.merged.uidlist is not None or ctx.merged.reindex:
            plan.actions.append(Action(CONTROL, folder, base=uidlist.NAME, note=UIDS))
    plan.actions.sort(key=order)


def _header(data: Optional[bytes]) -> Optional[Uidlist]:
    if not data:
        return None
    try:
        return uidlist.parse(data.split(b"\n", 1)[0] + b"\n")
    except UidlistError:
        return None


def _verbatim(state: FolderState, src_data, dst_data, df, inp: Inputs, folder: bytes) -> bool:
    """The common case of a sync before the switch, decided without reading either list line by line:
    the destination's list is the source's as we wrote it last time, untouched since (its stamp as we left
    it), the folder holds no mail of the destination's own, and the source still numbers it under the
    UIDVALIDITY we wrote. Then the destination's list becomes the source's as it is, byte for byte."""
    ctl = state.controls.get(uidlist.NAME)
    if state.uids_own or not state.verbatim or ctl is None or df is None or src_data is None or dst_data is None:
        return False
    if df.controls.get(uidlist.NAME) != (ctl.dst_size, ctl.dst_mtime_ns):
        return False  # the destination's Dovecot has been at it since
    s, d = _header(src_data), _header(dst_data)
    if s is None or d is None or s.version != d.version or s.uidvalidity != state.uidvalidity:
        return False
    if not inp.src.rejected:
        return True
    head = maildir.show(maildir.in_folder(folder, b""))
    return not any(t.startswith(head) for t in inp.src.rejected)  # a message the source has that we never place


def _verbatim_ctx(plan, inp, folder, state, src_data, stamp, df, fresh, mine, placed, names_of, on_source_of, sep):
    sf = inp.src.folders.get(folder)
    actions = plan.actions  # not the plan, which holds this context: a cycle would keep the user's whole
    # run (listings, records, plan) in memory until the interpreter's cycle collector came by

    def ours_of() -> Set[bytes]:  # as the slow way has it: all the destination holds, or will, is ours
        now = names_of(folder) if names_of is not None else ({b: m.name for b, m in df.msgs.items()} if df else {})
        return set(now) | set(final_names(actions, folder, now, sep))

    on_source = on_source_of(folder) if on_source_of is not None else set(sf.msgs if sf is not None else ()).__contains__
    ctx = UidsCtx(None, stamp, None, on_source, False, state.uidvalidity, src_data=src_data, verbatim=True,
                  dst_stamp=df.controls.get(uidlist.NAME), ours_of=ours_of)  # fmt: skip
    ctx.merged = Merged(None, own=False, uidvalidity=state.uidvalidity)
    return ctx


def _backup_leftovers(plan: Plan, inp: Inputs, folder: bytes, src: Uidlist, dst: Uidlist, present, ours, df) -> None:
    """Messages of the backup that the source has expunged since: NethServer's migration-import moves a
    Maildir with its version 1 ``dovecot-uidlist``, and a version 1 file means no Dovecot 2 has opened
    the folder here (it would have rewritten it as version 3), so nothing in it is the destination's own.
    A message it lists under the source's UIDVALIDITY and a UID the source has given and no longer lists
    is the source's, deleted there: it goes as the source's deletes do. They count as ours either way."""
    if df is None or dst.uidvalidity != src.uidvalidity:
        return
    src_uids = src.uids()
    by_base = dst.by_base()
    gone = [b for b in present if b not in ours and b in by_base
            and by_base[b].uid < src.next_uid and by_base[b].uid not in src_uids]  # fmt: skip
    if not gone:
        return
    ours.update(gone)
    opts = inp.options
    if not opts.delete or inp.src.errors:
        return
    if len(gone) * 100 > opts.max_delete * max(len(present), 1):
        plan.held.add(folder)
        plan.warnings.append(
            f"{maildir.folder_display(folder)}: {len(gone)} of {len(present)} messages from the backup were deleted "
            f"on the source since (more than {opts.max_delete:g}%); deleted none. If that is right, run again "
            "with --max-delete 100"
        )
        return
    for b in sorted(gone):
        m = df.msgs[b]
        plan.actions.append(Action(DELETE, folder, base=b, old=(m.subdir, m.name), size=m.size, note="backup"))
        del present[b]

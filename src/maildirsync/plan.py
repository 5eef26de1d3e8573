"""The three-way plan (DESIGN.md §3): source now, destination now, and the index as their common
ancestor, in; a list of actions out. Pure: no I/O, so a dry run prints exactly what a real run does.

Identity is ``(user, folder, base)``. The destination wins every disagreement the source did not cause:
a message changed or deleted there is never reverted, resurrected or deleted by us.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Tuple

from .compat import SLOTS
from . import maildir
from .index import Ctl, FolderState, Rec
from .keywords import Translation
from .listing import Folder, Mailbox, Msg

# Kinds, in the order the executor applies them: folders first so moves and fetches have somewhere
# to land, local moves before deletes so a moved message is never deleted first, control files last
# so dovecot-uidlist never names a message that is not there yet (but dovecot-keywords first of all, so
# that Dovecot knows every keyword letter of a message when it first sees the message).
MKDIR, MOVE, COPY, RENAME, ADOPT, FETCH, REFETCH, CONFLICT, DELETE, RECORD, FORGET, CONTROL = (
    "mkdir", "move", "copy", "rename", "adopt", "fetch", "refetch", "conflict", "delete", "record", "forget", "control",
)  # fmt: skip
ORDER = {k: i for i, k in enumerate((MKDIR, MOVE, COPY, RENAME, ADOPT, FETCH, REFETCH, CONFLICT, DELETE, RECORD, FORGET, CONTROL))}
KEYWORDS_FILE = b"dovecot-keywords"


def order(a: Action) -> float:
    if a.kind == CONTROL and a.base == KEYWORDS_FILE:
        return 0.5  # right after the folders are made
    return ORDER[a.kind]
SIGIL = {
    MKDIR: "d", MOVE: ">", COPY: "c", RENAME: "~", ADOPT: "=", FETCH: "+", REFETCH: "*",
    CONFLICT: "!", DELETE: "-", RECORD: ".", FORGET: ".", CONTROL: "C",
}  # fmt: skip
# Kinds that change nothing on the destination, only what the index remembers.
INDEX_ONLY = frozenset({RECORD, FORGET})

Where = Tuple[bytes, bytes]  # (subdir, name)


@dataclass(**SLOTS)
class Action:
    kind: str
    folder: bytes
    base: bytes = b""
    src: Where | None = None  # the source file (fetches), or its current name (renames, records)
    dst: Where | None = None  # where the destination file ends up
    old: Where | None = None  # the destination file acted on: renamed, replaced, deleted, adopted
    from_folder: bytes | None = None  # moves and copies
    size: int = 0
    mtime_ns: int = 0
    rec: Rec | None = None  # the index record this action starts from, if any
    note: str = ""  # control: carry | merge | check | keywords | uids; rename: merged; delete: backup; record: gone

    @property
    def sigil(self) -> str:
        return SIGIL[self.kind]

    @property
    def writes(self) -> bool:
        """Does it change the destination (rather than only what the index remembers)?"""
        return self.kind not in INDEX_ONLY and not (self.kind == CONTROL and self.note == "check")

    def key(self) -> tuple:
        """What identifies an action across a dry run and the real run that follows it."""
        return (self.kind, self.folder, self.base, self.src, self.dst, self.old, self.from_folder, self.note)


@dataclass(**SLOTS)
class Options:
    delete: bool = True
    max_delete: float = 50.0  # percent of a folder's synced messages


@dataclass(**SLOTS)
class Inputs:
    src: Mailbox
    dst: Mailbox
    recs: dict[bytes, dict[bytes, Rec]]
    states: dict[bytes, FolderState]
    dst_ctl_hash: dict[tuple[bytes, bytes], str] = field(default_factory=dict)  # current hashes of dst control files
    keywords: dict[bytes, Translation] = field(default_factory=dict)  # folders whose dst keywords are not ours
    options: Options = field(default_factory=Options)
    # A repeated sync plans only the bases that changed (views.py): then ``recs`` and the listings hold
    # those alone, and these say the rest. Default: everything is in the inputs.
    sep: bytes | None = None  # the destination's separator, when its listing does not hold enough names
    counts: dict[bytes, int] = field(default_factory=dict)  # folder -> messages synced there (delete guard)
    others: Callable[[bytes, bytes], list] | None = None  # (folder, base) -> [(other, Rec, dst Msg|None)]
    taken: Callable[[bytes, bytes], bool] | None = None  # (folder, base): has the destination that base?
    quiet: set[bytes] = field(default_factory=set)  # folders as the last run left them, on both sides: nothing to do


@dataclass(**SLOTS)
class Plan:
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Folders whose state must not be stamped as synced (something was held back): relist next time.
    held: set[bytes] = field(default_factory=set)
    uids: dict = field(default_factory=dict)  # folder -> uidplan.UidsCtx: the folder's UID merge
    sep: bytes = b":"  # the separator of the names this plan gives the destination

    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.writes]


def same_mtime(a: int, b: int) -> bool:
    """SFTP v3 reports whole seconds, find(1) nanoseconds: a source read both ways must not look changed."""
    if a == b:
        return True
    sa, sb = divmod(a, 1_000_000_000), divmod(b, 1_000_000_000)
    return sa[0] == sb[0] and (sa[1] == 0 or sb[1] == 0)


def make_plan(inp: Inputs) -> Plan:
    return _Planner(inp).run()


class _Planner:
    def __init__(self, inp: Inputs):
        self.inp = inp
        self.plan = Plan()
        self.src, self.dst = inp.src, inp.dst
        # Messages land with the destination's separator; an empty destination mirrors the source's.
        if inp.sep is not None:
            self.sep = inp.sep
        else:
            dst_has_info = any(m.parsed.sep for f in self.dst.folders.values() for m in f.msgs.values())
            self.sep = self.dst.sep if dst_has_info else self.src.sep
        self.plan.sep = self.sep
        self.may_delete = inp.options.delete and not self.src.errors
        if self.src.errors:
            self.plan.warnings.append("the source could not be read completely: nothing is deleted this run")
        self.gone: dict[bytes, tuple[bytes, Rec]] = {}
        self.moved: set[tuple[bytes, bytes]] = set()
        self.deletes: dict[bytes, list[Action]] = {}

    def add(self, kind: str, folder: bytes, **kw) -> Action:
        a = Action(kind, folder, **kw)
        self.plan.actions.append(a)
        return a

    def run(self) -> Plan:
        for folder in sorted(self.src.folders):
            if folder not in self.dst.folders:
                self.add(MKDIR, folder)
        if not self.src.errors:
            for folder, recs in self.inp.recs.items():
                sf = self.src.folders.get(folder)
                for base, rec in recs.items():
                    if sf is None or base not in sf.msgs:
                        self.gone.setdefault(base, (folder, rec))
        for folder in sorted(self.src.folders):
            sf = self.src.folders[folder]
            recs = self.inp.recs.get(folder, {})
            for base in sorted(sf.msgs):
                m = sf.msgs[base]
                rec = recs.get(base)
                if rec is None:
                    self.new_message(folder, m)
                else:
                    self.known_message(folder, m, rec)
        if not self.src.errors:
            for folder, recs in sorted(self.inp.recs.items()):
                sf = self.src.folders.get(folder)
                for base, rec in sorted(recs.items()):
                    if (sf is None or base not in sf.msgs) and (folder, base) not in self.moved:
                        self.gone_message(folder, base, rec)
        self.guard_deletes()
        for folder in sorted(self.src.folders):
            if folder not in self.inp.quiet:
                self.controls(folder, self.src.folders[folder])
        self.plan.actions.sort(key=order)
        return self.plan

    # --- helpers ---------------------------------------------------------------------------------------
    def dst_folder(self, folder: bytes) -> Folder | None:
        return self.dst.folders.get(folder)

    def dst_msg(self, folder: bytes, rec: Rec | None, base: bytes) -> Msg | None:
        f = self.dst_folder(folder)
        if f is None:
            return None
        if rec is not None:
            base = maildir.base_of(rec.dst_name, self.dst.sep)
        return f.msgs.get(base)

    @staticmethod
    def unchanged_dst(d: Msg | None, rec: Rec) -> bool:
        return d is not None and d.subdir == rec.dst_subdir and d.name == rec.dst_name and d.size == rec.size

    def tr(self, folder: bytes) -> Callable[[bytes], bytes]:
        t = self.inp.keywords.get(folder)
        return t.apply if t is not None else (lambda f: f)

    def target(self, folder: bytes, m: Msg, base: bytes | None = None) -> Where:
        """Where the source message ``m`` goes on the destination: its name, in the destination's
        separator, with keyword letters translated."""
        p = m.parsed
        base = p.base if base is None else base
        if not p.sep:
            return m.subdir, base
        flags = p.flags
        if flags is None:
            return m.subdir, base + self.sep + p.info
        return m.subdir, base + self.sep + b"2," + maildir.sort_flags(self.tr(folder)(flags))

    def merged(self, folder: bytes, m: Msg, rec: Rec, d: Msg) -> Where:
        """Both sides changed the flags: destination flags + added on source - removed on source."""
        tr = self.tr(folder)
        old_src = tr(maildir.parse_name(rec.src_name, self.src.sep).flags or b"")
        new_src = tr(m.parsed.flags or b"")
        flags = maildir.merge_flags(d.parsed.flags or b"", old_src, new_src)
        subdir = b"cur" if b"cur" in (m.subdir, d.subdir) else b"new"
        if subdir == b"new" and not flags and not d.parsed.sep:
            return subdir, d.base
        return subdir, d.base + (d.parsed.sep or self.sep) + b"2," + flags

    def conflict_base(self, folder: bytes, base: bytes) -> bytes:
        """A new base for the source's version when the destination holds another message under the
        same base: keep both, never overwrite. The suffix goes before the ``,S=`` fields."""
        f = self.dst_folder(folder)
        taken = f.msgs if f is not None else {}
        head, comma, tail = base.partition(b",")
        n = 1
        while True:
            cand = head + b"-conflict%d" % n + comma + tail
            if cand not in taken and cand not in self.src.folders.get(folder, Folder()).msgs and not (
                self.inp.taken is not None and self.inp.taken(folder, cand)
            ):
                return cand
            n += 1

    def conflict(self, folder: bytes, m: Msg, rec: Rec | None = None) -> None:
        """Fetch the source's ``m`` under a new base, beside what the destination holds under its own."""
        nb = self.conflict_base(folder, m.base)
        self.add(CONFLICT, folder, base=m.base, src=(m.subdir, m.name), dst=self.target(folder, m, nb),
                 size=m.size, mtime_ns=m.mtime_ns, rec=rec)  # fmt: skip

    # --- the rules -------------------------------------------------------------------------------------
    def new_message(self, folder: bytes, m: Msg) -> None:
        base = m.base
        d = self.dst_msg(folder, None, base)
        if d is not None:
            if d.size == m.size:
                self.add(ADOPT, folder, base=base, src=(m.subdir, m.name), old=(d.subdir, d.name),
                         dst=self.target(folder, m), size=m.size, mtime_ns=m.mtime_ns)  # fmt: skip
            else:
                self.conflict(folder, m)
            return
        moved = self.gone.get(base)
        if moved is not None and moved[0] != folder and moved[1].size == m.size:
            from_folder, rec = moved
            d_old = self.dst_msg(from_folder, rec, base)
            if self.unchanged_dst(d_old, rec) and self.may_delete:
                del self.gone[base]
                self.moved.add((from_folder, base))
                self.add(MOVE, folder, base=base, src=(m.subdir, m.name), old=(d_old.subdir, d_old.name),
                         dst=self.target(folder, m), from_folder=from_folder, size=m.size, mtime_ns=m.mtime_ns,
                         rec=rec)  # fmt: skip
                return
        copy = self.copy_source(folder, base, m.size)
        if copy is not None:
            from_folder, rec, d_old = copy
            self.add(COPY, folder, base=base, src=(m.subdir, m.name), old=(d_old.subdir, d_old.name),
                     dst=self.target(folder, m), from_folder=from_folder, size=m.size, mtime_ns=m.mtime_ns,
                     rec=rec)  # fmt: skip
            return
        self.add(FETCH, folder, base=base, src=(m.subdir, m.name), dst=self.target(folder, m),
                 size=m.size, mtime_ns=m.mtime_ns)  # fmt: skip

    def copy_source(self, folder: bytes, base: bytes, size: int) -> tuple[bytes, Rec, Msg] | None:
        """The same message (same base, same size) already on the destination in another folder,
        as we wrote it: a local copy is verified against its recorded hash, so it needs no download."""
        if self.inp.others is not None:
            found = self.inp.others(folder, base)
        else:
            found = [(other, recs[base], self.dst_msg(other, recs[base], base))
                     for other, recs in sorted(self.inp.recs.items()) if base in recs]  # fmt: skip
        for other, rec, d in found:
            if other != folder and rec.size == size and d is not None and d.size == rec.size:
                return other, rec, d
        return None

    def known_message(self, folder: bytes, m: Msg, rec: Rec) -> None:
        d = self.dst_msg(folder, rec, m.base)
        if m.size != rec.size or not same_mtime(m.mtime_ns, rec.mtime_ns):
            if d is None:
                return self.gone_there(folder, m, rec)  # deleted on the destination: not brought back
            if d.size == m.size and same_mtime(d.mtime_ns, m.mtime_ns):
                # Already the new content: a re-fetch whose run was killed before the index learnt of it.
                self.add(ADOPT, folder, base=m.base, src=(m.subdir, m.name), old=(d.subdir, d.name),
                         dst=self.target(folder, m) if self.unchanged_dst(d, rec) else (d.subdir, d.name),
                         size=m.size, mtime_ns=m.mtime_ns)  # fmt: skip
                return
            if d.size == rec.size:
                where = self.target(folder, m) if self.unchanged_dst(d, rec) else self.merged(folder, m, rec, d)
                self.add(REFETCH, folder, base=m.base, src=(m.subdir, m.name), old=(d.subdir, d.name), dst=where,
                         size=m.size, mtime_ns=m.mtime_ns, rec=rec)  # fmt: skip
            else:
                self.conflict(folder, m, rec)
            return
        if d is None:
            return self.gone_there(folder, m, rec)  # deleted on the destination: stays deleted
        if (m.subdir, m.name) == (rec.src_subdir, rec.src_name):
            return  # unchanged on the source: whatever the destination did stands
        if d.size != rec.size:
            # Another message under our base there (by hand: Dovecot never changes a message's size).
            # Renaming or recording it would make it ours, with our size, and a later delete on the
            # source would delete it: keep it untouched and place the source's version beside it.
            return self.conflict(folder, m, rec)
        if self.unchanged_dst(d, rec):
            where, note = self.target(folder, m), ""
        else:
            where, note = self.merged(folder, m, rec, d), "merged"
        if where == (d.subdir, d.name):
            self.add(RECORD, folder, base=m.base, src=(m.subdir, m.name), dst=where, rec=rec)
        else:
            self.add(RENAME, folder, base=m.base, src=(m.subdir, m.name), old=(d.subdir, d.name), dst=where,
                     rec=rec, note=note)  # fmt: skip

    def gone_there(self, folder: bytes, m: Msg, rec: Rec) -> None:
        """Remember that the destination deleted it (an empty destination name): it is never brought
        back, and no longer counts among what the destination still holds of ours."""
        if rec.dst_name:
            self.add(RECORD, folder, base=m.base, src=(m.subdir, m.name), rec=rec, note="gone")

    def gone_message(self, folder: bytes, base: bytes, rec: Rec) -> None:
        d = self.dst_msg(folder, rec, base)
        if not self.unchanged_dst(d, rec):
            # Deleted on the destination too, or touched there: either way it is the destination's now.
            self.add(FORGET, folder, base=base, rec=rec)
        elif self.may_delete:
            a = self.add(DELETE, folder, base=base, old=(d.subdir, d.name), rec=rec, size=d.size)
            self.deletes.setdefault(folder, []).append(a)
        else:
            self.plan.held.add(folder)

    def guard_deletes(self) -> None:
        limit = self.inp.options.max_delete
        for folder, dels in sorted(self.deletes.items()):
            synced = self.inp.counts.get(folder, len(self.inp.recs.get(folder, {})))
            if synced and len(dels) * 100 > limit * synced:
                ids = {id(a) for a in dels}
                self.plan.actions = [a for a in self.plan.actions if id(a) not in ids]
                self.plan.held.add(folder)
                self.plan.warnings.append(
                    f"{maildir.folder_display(folder)}: {len(dels)} of {synced} synced messages would be deleted "
                    f"(more than {limit:g}%); deleted none. If that is right, run again with --max-delete 100"
                )

    def controls(self, folder: bytes, sf: Folder) -> None:
        state = self.inp.states.get(folder) or FolderState()
        df = self.dst_folder(folder)
        for name, (size, mtime) in sorted(sf.controls.items()):
            if name == b"dovecot-uidlist":
                continue  # merged, never carried: see uidplan
            st: Ctl | None = state.controls.get(name)
            have = df.controls.get(name) if df is not None else None
            ours = st is not None and have is not None and self.inp.dst_ctl_hash.get((folder, name)) == st.dst_hash
            src_changed = st is None or (st.src_size, st.src_mtime_ns) != (size, mtime)
            if have is None or ours:
                if have is None or src_changed:
                    self.add(CONTROL, folder, base=name, size=size, mtime_ns=mtime, note="carry")
            elif name == b"subscriptions" and src_changed:
                self.add(CONTROL, folder, base=name, size=size, mtime_ns=mtime, note="merge")
            elif st is None:
                # No record (a new or rebuilt index): if the destination holds exactly the source's
                # file it is ours after all, and will be carried from now on; otherwise it is left.
                self.add(CONTROL, folder, base=name, size=size, mtime_ns=mtime, note="check")
        t = self.inp.keywords.get(folder)
        if t is not None and t.added:
            self.add(CONTROL, folder, base=b"dovecot-keywords", note="keywords")

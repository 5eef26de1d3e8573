"""One sync run: for each user, list both sides, plan against the index, apply, record.

The CLI and the importer call :func:`run`; everything a person sees comes back in :class:`RunResult`.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from .compat import SLOTS
from . import keywords, listing, maildir, quiet, stamps, views
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PENDING, IndexError_, disk_full_reason
from .executor import Executor, Outcome, clean_tmp
from .index import Ctl, FolderState, Index, StateDir
from .plan import ADOPT, CONFLICT, CONTROL, COPY, DELETE, FETCH, MOVE, REFETCH, RENAME, Inputs, Options, Plan, make_plan
from .quiet import ABSENT, uidlist_as_left
from .transport import FILE, RawScan, Source, SourceError, moved_dirs, read_local, read_many, records
from .uidlist import NAME as UIDLIST
from .uidplan import plan_uids

# A directory stamp is trusted only if the directory had not changed for this long when we listed it:
# a change within the same clock tick as the listing would otherwise leave the mtime as we saw it.
STAMP_MARGIN_NS = 2_000_000_000  # the source may be ext3 (whole seconds) on a clock not ours
# A source filesystem keeping nanoseconds stamps with its kernel's tick, 10 ms apart at most (HZ=100).
# (The destination's stamps are judged by our own kernel's clock: stamps.settled.)
FINE_STAMP_MARGIN_NS = 20_000_000

COUNTED = {
    "new": (FETCH,),
    "renamed": (RENAME,),
    "moved": (MOVE, COPY),
    "deleted": (DELETE,),
    "conflicts": (CONFLICT,),
    "adopted": (ADOPT,),
    "refetched": (REFETCH,),
    "control": (CONTROL,),
}


@dataclass(**SLOTS)
class UserJob:
    user: str
    src_root: bytes
    dst_root: bytes
    create: bool = False  # create the destination Maildir if it does not exist


@dataclass(**SLOTS)
class UserResult:
    user: str
    status: str  # ok | changed | pending (dry run) | failed
    reason: str = ""
    plan: Plan | None = None
    outcome: Outcome | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    summary: dict[str, int] | None = None  # counts kept when the actions themselves are dropped
    skipped: int = 0  # source entries that are not messages (links, devices): warned about, not failed
    renumbered: int = 0  # messages placed under another UID than the source's (after the switch)

    def counts(self) -> dict[str, int]:
        if self.summary is not None:
            return self.summary
        acts = self.outcome.done if self.outcome is not None else (self.plan.actions if self.plan else [])
        out = {k: sum(1 for a in acts if a.kind in kinds) for k, kinds in COUNTED.items()}
        out["failed"] = len(self.outcome.failed) if self.outcome is not None else 0
        out["skipped"] = self.skipped
        out["renumbered"] = self.renumbered
        out["bytes"] = (
            self.outcome.bytes
            if self.outcome is not None
            else sum(a.size for a in acts if a.kind in (FETCH, REFETCH, CONFLICT))
        )
        return out


@dataclass(**SLOTS)
class RunResult:
    users: list[UserResult]
    dry_run: bool
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if any(u.status == "failed" for u in self.users):
            return EXIT_FAILED
        if self.dry_run and any(u.status == "pending" for u in self.users):
            return EXIT_PENDING
        return EXIT_OK


@dataclass(**SLOTS)
class RunOptions:
    dry_run: bool = False
    plan: Options = field(default_factory=Options)
    owner: tuple[int, int] | None = None
    jobs: int = 1
    # Record source cur/new mtimes so unchanged directories are not re-listed. Off when the source is a
    # stand-in for another (a backup seeding the live source's index): its mtimes say nothing of the live one.
    stamp_dirs: bool = True
    command: str = "maildirsync"
    # Keep every user's actions for the report (-v, tests). Off, a run over a million messages keeps
    # only counts and failures, and memory stays bounded by the largest mailbox, not by the whole run.
    keep_actions: bool = True
    forget: frozenset = frozenset()  # users whose records to set aside: their destination lost what we placed
    pair: tuple | None = None  # (source, destination) as a person names them, kept in the index for `status`


def default_owner() -> tuple[int, int] | None:
    """vmail:vmail when that user exists (NethServer), else leave ownership as it falls."""
    import grp
    import pwd

    try:
        return pwd.getpwnam("vmail").pw_uid, grp.getgrnam("vmail").gr_gid
    except KeyError:
        return None


def run(
    jobs: Sequence[UserJob],
    source: Source,
    state: StateDir,
    opts: RunOptions,
    *,
    command: str = "maildirsync",
    stop: threading.Event | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    on_user: Callable[[UserResult], None] | None = None,
) -> RunResult:
    """Sync every job. Takes the index lock for the whole run (raises IndexBusy if held)."""
    stop = stop or threading.Event()
    opts.command = command
    try:
        state.acquire(command)
    except BaseException:
        state.release()  # an early page walk (StateDir.check_ahead) is not left running
        raise
    scans = _Prefetch(jobs, source, opts)
    try:
        scans.begin()  # the source lists while the index opens
        index, note = state.open_index(readonly=opts.dry_run)
        scans.index = index
        result = RunResult([], opts.dry_run, notes=[note] if note else [])
        try:
            if opts.pair is not None and not opts.dry_run:
                b = index.batch()
                b.put_meta(b"source", opts.pair[0].encode("utf-8", "surrogateescape"))
                b.put_meta(b"destination", opts.pair[1].encode("utf-8", "surrogateescape"))
                b.commit()

            def one(job: UserJob) -> UserResult:
                if stop.is_set():
                    return UserResult(job.user, "failed", "not started: interrupted")
                r = sync_user(job, source, index, opts, stop, progress, scans.get, scans.take_states, scans.identity,
                              scans.status)  # fmt: skip
                if on_user is not None:
                    on_user(r)
                return r

            try:
                if opts.jobs > 1 and len(jobs) > 1:
                    with ThreadPoolExecutor(max_workers=opts.jobs) as pool:
                        result.users = list(pool.map(one, jobs))
                else:
                    result.users = [one(j) for j in jobs]
            finally:
                scans.close()
        finally:
            try:
                index.close()
            except IndexError_ as e:  # the last statuses could not be written: the next run works them out
                result.notes.append(str(e))
        result.interrupted = stop.is_set()
        return result
    finally:
        scans.close()
        state.release()


def sync_user(
    job: UserJob,
    source: Source,
    index: Index,
    opts: RunOptions,
    stop: threading.Event,
    progress: Callable[[str, int, int], None] | None = None,
    scan: Callable[[UserJob, dict], RawScan] | None = None,
    states_of: Callable[[UserJob], dict] | None = None,
    identity_of: Callable[[UserJob], tuple] | None = None,
    status_of: Callable[[UserJob], dict | None] | None = None,
) -> UserResult:
    t0 = time.monotonic()
    scan = scan or (lambda j, known: source.scan(j.src_root, known()))
    r = _sync_user(job, source, index, opts, stop, progress, scan, states_of, identity_of, status_of)
    r.seconds = time.monotonic() - t0
    if not opts.keep_actions:
        # Only counts and failures are reported: the plan (and all it refers to, the listings included)
        # goes now, so that memory is bounded by the users in flight, not by all the users of the run.
        r.summary = r.counts()
        r.plan = None
        if r.outcome is not None:
            r.outcome.done = []
            r.outcome.controls = {}
    return r


def _sync_user(job, source, index, opts, stop, progress, scan, states_of=None, identity_of=None,
               status_of=None) -> UserResult:  # fmt: skip
    user = job.user.encode()
    prev = status_of(job) if status_of is not None else index.user_status(user)
    aside, dest_id, seen_id = (identity_of(job) if identity_of is not None
                               else destination_identity(job, index, opts, prev))  # fmt: skip
    held: list = []

    def states_now() -> dict:
        if not held:
            held.append({} if aside else (states_of(job) if states_of is not None else index.user_folders(user)))
        return held[0]

    ident = _sig_ident(job, opts)
    try:
        src_raw = scan(job, lambda: _known(states_now()))
        expect = None if aside else (prev or {}).get("quiet")
        if expect is not None:
            same = _as_left(job, index, opts, src_raw, expect, ident, dest_id, seen_id)
            if same is not None:
                return same
        states = states_now()
        if src_raw.pending:  # listed as if unchanged (its stamps said so), and it is not: list it whole
            src_raw = source.scan(job.src_root, _known(states))
        src = listing.build(src_raw, messages=False)
    except SourceError as e:
        # Asked only now: a round trip per user is a second on a slow link, for the rare missing mailbox.
        try:
            missing = not source.exists(job.src_root)
        except SourceError:
            missing = False
        if missing:
            return UserResult(job.user, "failed", f"source Maildir {maildir.show(job.src_root)} not found")
        return UserResult(job.user, "failed", f"cannot read the source: {e}")

    dst_exists = os.path.isdir(job.dst_root)
    if not dst_exists and not job.create:
        return UserResult(
            job.user,
            "failed",
            f"destination Maildir {maildir.show(job.dst_root)} does not exist: create the user on the destination "
            "first (or pass --create)",
        )
    try:
        dst = listing.build(views.dest_tops(job.dst_root, _glances(src, states)) if dst_exists else RawScan(),
                            messages=False)  # fmt: skip
    except SourceError as e:
        return UserResult(job.user, "failed", f"cannot read the destination: {e}")
    work, recs, still = _folder_work(job, index, user, src, dst, states)
    sep = _dest_separator(work, dst, src)
    vanished = _vanished(recs, dst, {f: w.count for f, w in work.items()}, opts.plan.max_delete, sep)
    if vanished:
        return UserResult(job.user, "failed", vanished.format(user=job.user))

    ctl_hash = _dst_control_hashes(job.dst_root, dst, states)
    kw = _keyword_translations(source, job, src, dst, states, ctl_hash, src_raw.files)
    inputs = Inputs(src, dst, recs, states, ctl_hash, kw, opts.plan, sep=sep,
                    counts={f: w.count for f, w in work.items() if not w.whole},
                    others=_lookup_others(index, user, job.dst_root, work, recs, dst, sep, src, states) if states else None,
                    taken=lambda f, b: _has_base(work.get(f), b, sep), quiet=still)  # fmt: skip
    plan = make_plan(inputs)
    try:
        plan_uids(plan, inputs, _uid_lists(source, job, src, dst, states, still, src_raw.files),
                  lambda f: _names_of(work.get(f), dst, f, sep),
                  lambda f: set(work[f].dst_added) if f in work and not work[f].whole else None,
                  lambda f: _on_source(work.get(f), src, f))  # fmt: skip
    except SourceError as e:
        return UserResult(job.user, "failed", f"cannot read the source: {e}")
    warnings = ([aside] if aside else []) + list(plan.warnings) + [f"skipped {w}" for w in src.rejected + src.skipped]
    if src.errors:
        warnings += [f"unreadable on the source: {e}" for e in src.errors]

    if opts.dry_run:
        changes = plan.changes()
        status = "failed" if (src.errors or src.rejected) else ("pending" if changes else "ok")
        renumbered = {f: c.merged.renumbered for f, c in plan.uids.items() if c.merged is not None}
        warnings += _renumber_notes(renumbered, "would get")
        return UserResult(job.user, status, _problems(src), plan, None, warnings, skipped=len(src.skipped),
                          renumbered=sum(renumbered.values()))  # fmt: skip

    if not dst_exists:
        parent = os.path.dirname(job.dst_root)
        try:
            if not os.path.isdir(parent):
                os.makedirs(parent, mode=0o700, exist_ok=True)
                if opts.owner is not None:
                    os.chown(parent, *opts.owner)  # the mail server must be able to enter the mailbox
        except OSError as e:
            why = disk_full_reason(e) or f"cannot create {maildir.show(os.fsencode(parent))}: {e.strerror}"
            return UserResult(job.user, "failed", why, plan, None, warnings)
    first = index.user_status(user) is None
    was = first or index.in_flight(user)
    if was:
        clean_tmp(job.dst_root, dst.folders)  # what a run of ours killed mid-way left behind
    marked = was or bool(plan.actions)  # a run with nothing to do can leave nothing behind in tmp/
    if marked:
        index.set_in_flight(user, True)
    batch = index.batch()
    if aside:
        batch.forget_user(user)  # first of all: the records describe another tree
    ex = Executor(
        user,
        source,
        job.src_root,
        job.dst_root,
        batch,
        owner=opts.owner,
        keywords=kw,
        stop=stop,
        progress=(lambda n, b: progress(job.user, n, b)) if progress else None,
    )
    ex.files = src_raw.files
    out = ex.run(plan)
    _write_identity(job.dst_root, dest_id, opts.owner, seen_id)
    news = _record_folders(ex.batch, user, src, states, plan, out, opts.stamp_dirs, job.dst_root, work, dst)
    status = "changed" if any(a.writes for a in out.done) else "ok"
    reason = ""
    if out.fatal:
        status, reason = "failed", out.fatal
    elif out.failed or src.errors or src.rejected:
        status = "failed"
        reason = "; ".join(x for x in (_problems(src), f"{len(out.failed)} action(s) failed" if out.failed else "") if x)
    elif out.interrupted:
        status, reason = "failed", "interrupted"
    warnings += _renumber_notes(out.renumbered, "got")
    res = UserResult(job.user, status, reason, plan, out, warnings, skipped=len(src.skipped),
                     renumbered=sum(out.renumbered.values()))  # fmt: skip
    sig = None
    if status in ("ok", "changed") and not warnings and not aside and opts.stamp_dirs:  # renumbered: warned
        sig = quiet.left_quiet(job.dst_root, ident, src_raw, src, news)
    ex.batch.put_user(user, _status(res, opts, dest_id, job, sig))
    try:
        ex.batch.commit()
    except IndexError_ as e:
        res.status, res.reason = "failed", str(e)
    if marked and out.fatal is None and not out.interrupted:
        index.set_in_flight(user, False)
    return res


def _status(res: UserResult, opts: RunOptions, dest_id: str, job: UserJob, sig: list | None) -> dict:
    """The user's record in the index: what `status` shows, and what the next run starts from."""
    out = {"time": time.time(), "status": res.status, "reason": res.reason, "counts": res.counts(),
           "command": opts.command, "dest_id": dest_id, "destination": os.fsdecode(job.dst_root)}  # fmt: skip
    if sig is not None:
        out["quiet"] = sig  # see quiet.py: both sides as this run left them means nothing to do
    return out


def _sig_ident(job: UserJob, opts: RunOptions) -> bytes:
    """What else a mailbox's signature holds: the two roots, and the options a plan depends on."""
    return b"\0".join((job.src_root, job.dst_root, repr((opts.plan, opts.owner, opts.stamp_dirs)).encode()))


def _as_left(job: UserJob, index: Index, opts: RunOptions, src_raw: RawScan, expect, ident: bytes,
             dest_id: str, seen_id: str | None) -> UserResult | None:  # fmt: skip
    """The user's result if the mailbox is, on both sides, as the last run left it (quiet.py), else None."""
    user = job.user.encode()
    if not isinstance(expect, list) or len(expect) != 3 or quiet.source_sig(src_raw, ident) != expect[0]:
        return None
    if index.in_flight(user):
        return None  # a run of ours was cut short there: its tmp/ is to be cleaned, its records checked
    try:
        folders = [f.encode("latin-1") for f in expect[2]]
    except (TypeError, AttributeError, UnicodeError):  # a record no run of ours wrote
        return None
    if quiet.dest_sig(quiet.dest_stamps(job.dst_root, folders)) != expect[1]:
        return None
    res = UserResult(job.user, "ok", plan=Plan())
    if not opts.dry_run:
        _write_identity(job.dst_root, dest_id, opts.owner, seen_id)  # (an index older than identities)
        batch = index.batch()
        batch.put_user(user, _status(res, opts, dest_id, job, expect))
        try:
            batch.commit()
        except IndexError_ as e:
            res.status, res.reason = "failed", str(e)
    return res


# --- which destination the index describes -------------------------------------------------------------

IDENTITY = b"maildirsync-id"  # in the destination Maildir: which tree this is (never copied, see maildir.py)
# Vanished: a folder (or a user) in which more than --max-delete percent of what we placed is gone from the
# destination, and at least this many messages, is not a user deleting mail but a destination that lost it.
VANISHED_MIN = 10


def _read_identity(root: bytes) -> str | None:
    try:
        with open(root + b"/" + IDENTITY, "rb") as f:
            text = f.read(200).decode("ascii", "replace").strip()
    except OSError:
        return None
    return text or None


def destination_identity(job: UserJob, index: Index, opts: RunOptions,
                         prev=False) -> tuple[str | None, str, str | None]:  # fmt: skip
    """Is the destination mailbox the tree the index's records describe? Returns why they must be set
    aside (None if they hold), the mailbox's identity and the one its file holds now. Each Maildir
    maildirsync writes into carries a random identity; the index remembers it per user. A mailbox without
    it, or with another, was made since (a second destination, a changed --dest-root, a recreated mailbox,
    a reinstalled host): the records would make every message it lacks look deleted there, and nothing
    would ever be fetched."""
    if prev is False:  # not read by the caller
        prev = index.user_status(job.user.encode())
    known = (prev or {}).get("dest_id")
    mine = _read_identity(job.dst_root)
    ident = mine or known or uuid.uuid4().hex
    where = maildir.show(job.dst_root)
    if job.user in opts.forget:
        return f"--forget {job.user}: the index's records of {where} are set aside", mine or uuid.uuid4().hex, mine
    if known is not None and mine != known:
        why = "it has no " + IDENTITY.decode() if mine is None else "it carries another " + IDENTITY.decode()
        return (
            f"the destination mailbox {where} is not the one the index knows ({why}: another destination, or "
            "recreated since); its records are set aside: what it holds is adopted, the rest fetched",
            mine or uuid.uuid4().hex,
            mine,
        )
    return None, ident, mine


def _write_identity(root: bytes, ident: str, owner, seen: str | None = None) -> None:
    """``seen``: what the file held when the user's run began (nothing to write if that is ``ident``)."""
    path = root + b"/" + IDENTITY
    if seen == ident or _read_identity(root) == ident or not os.path.isdir(root):
        return
    tmp = path + b".maildirsync-new"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, ident.encode() + b"\n")
            os.fsync(fd)
            if owner is not None:
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        pass  # the next run writes it; meanwhile the records simply hold, as for an older index


def _vanished(recs, dst: listing.Mailbox, counts: dict, max_delete: float, sep: bytes) -> str | None:
    """Most of what the index says we placed is gone from the destination (the opposite of --max-delete):
    not a user who deleted their mail. Refuse, with what to do, rather than take it all for deletions.
    ``recs``: per folder, the records the plan looks at (all, or those of the bases that changed);
    ``counts``: what each folder holds now on the destination."""
    total = gone = 0
    worst = []
    for folder, frecs in recs.items():
        df = dst.folders.get(folder)
        have = df.msgs if df is not None else {}
        placed = [r for r in frecs.values() if r.dst_name]  # an empty name: deleted there, known since
        n = sum(1 for r in placed if maildir.base_of(r.dst_name, sep) not in have)
        size = max(counts.get(folder, 0) + n, len(placed))  # what was there before these went
        total, gone = total + size, gone + n
        if n >= VANISHED_MIN and n * 100 > max_delete * size:
            worst.append(f"{maildir.folder_display(folder)} ({n} of {size})")
    if not worst and not (gone >= VANISHED_MIN and gone * 100 > max_delete * total):
        return None
    where = ", ".join(worst[:5]) + (", ..." if len(worst) > 5 else "") if worst else f"{gone} of {total} in all"
    return (
        f"most of what maildirsync placed is gone from the destination: {where}, more than {max_delete:g}%. "
        "Not a user deleting mail: a wiped, restored or other destination? Nothing was done for {user}. If the "
        "destination lost that mail, run again with --forget {user} to fetch it again; if it was deleted there "
        "on purpose, run again with --max-delete 100"
    )


def _known(states: dict[bytes, FolderState]) -> dict[bytes, int]:
    """The cur/new mtimes last stamped, as the transport wants them: ``b".Sent/cur" -> mtime``. Only of
    folders whose listings the last run left: a directory not read again is taken as it was left."""
    return {maildir.in_folder(f, sub): m for f, st in states.items() if st.snap for sub, m in st.dir_mtimes.items()}


class _Prefetch:
    """Listings for several users at once, where the transport can (``stamps_many``, ``lists_many``):
    over SSH each command costs a shell start on the source, so hundreds of mailboxes are listed in a few
    commands. The first pass (the stamps) is taken for a group of users in one command, up to STAMPS; a
    group is then cut into chunks, each listed in one command, one chunk listed ahead while the one
    before is synced, so that what is held is two chunks. A chunk is cut where the cur/new it has to read
    (their directory sizes, and the control files beside them) pass HELD: with a user count alone, the
    held listings would grow with the mailboxes, and a run of large mailboxes would need more memory than
    one of small ones. The first chunks are small, so that the workers start soon; they grow to CHUNK,
    so that a run with little to do is not a string of round trips. A mailbox whose first pass is the
    one its signature holds (quiet.py) is not read further, and its folder states are not decoded here."""

    FIRST, CHUNK, STAMPS, AHEAD = 4, 16, 64, 2
    HELD = 8 << 20  # about 40 000 messages' entries and dovecot-uidlist lines (16 of bench's medium mailboxes)

    def __init__(self, jobs: Sequence[UserJob], source: Source, opts: RunOptions, index: Index | None = None):
        self.stamps = getattr(source, "stamps_many", None)
        self.source, self.index, self.opts = source, index, opts
        self.groups: list[list[UserJob]] = [list(jobs[: self.FIRST])] if jobs else []
        for i in range(self.FIRST, len(jobs), self.STAMPS):
            self.groups.append(list(jobs[i : i + self.STAMPS]))
        self.where = {j.src_root: g for g, group in enumerate(self.groups) for j in group}
        self.futures: dict = {}
        self.firsts: dict = {}
        self.splits: dict = {}  # group -> (its first passes, its chunks as (offset, jobs), chunk of each root)
        self.lock = threading.Lock()
        self.split_lock = threading.Lock()
        self.pool: ThreadPoolExecutor | None = None
        self._states: dict[bytes, dict] = {}
        self._identities: dict[bytes, tuple] = {}
        self._status: dict[bytes, dict | None] = {}
        self._left: dict[bytes, bool] = {}
        self.taken: set = set()  # chunks whose listings were all handed out

    def begin(self) -> None:
        """Start the first passes of the first groups (they need nothing of the index)."""
        if self.stamps is not None and self.groups:
            self._ahead(0)

    def _ahead(self, g: int) -> None:
        """Have the first passes of group g and of the AHEAD groups after it started. Each runs a find on
        the source for its time (a millisecond per mailbox): started together, these take what the
        longest takes, not the sum (the users whose stamps are held stay bounded: STAMPS per command)."""
        for k in range(g, min(g + self.AHEAD + 1, len(self.groups))):
            self._first(k)

    def close(self) -> None:
        with self.lock:
            for fut in self.firsts.values():
                fut.cancel()  # the first pass of a group no one reached (an interrupted run)
            self.firsts.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.splits.clear()

    def states(self, job: UserJob) -> dict:
        """The user's folder states, read once per run (each is a record to decode)."""
        got = self._states.get(job.src_root)
        if got is None:
            if self.identity(job)[0]:
                got = {}  # its records are set aside: list everything
            else:
                got = self.index.user_folders(job.user.encode())
            self._states[job.src_root] = got
        return got

    def status(self, job: UserJob) -> dict | None:
        """The user's record, read once per run."""
        if job.src_root not in self._status:
            self._status[job.src_root] = self.index.user_status(job.user.encode())
        return self._status[job.src_root]

    def identity(self, job: UserJob) -> tuple:
        """:func:`destination_identity`, asked once per user and run (the list thread asks it first)."""
        got = self._identities.get(job.src_root)
        if got is None:
            got = self._identities[job.src_root] = destination_identity(job, self.index, self.opts, self.status(job))
        return got

    def take_states(self, job: UserJob) -> dict:
        got = self._states.pop(job.src_root, None)
        return got if got is not None else self.states(job)

    def _as_left(self, job: UserJob, raw) -> bool:
        """Is the source side of this mailbox as its signature holds? (The destination side is the worker's.)"""
        got = self._left.get(job.src_root)
        if got is None:
            prev = self.status(job)
            expect = (prev or {}).get("quiet")
            got = self._left[job.src_root] = (
                isinstance(raw, RawScan) and isinstance(expect, list) and len(expect) == 3
                and not self.identity(job)[0] and quiet.source_sig(raw, _sig_ident(job, self.opts)) == expect[0]
            )  # fmt: skip
        return got

    def _first(self, g: int):
        """The future of group g's first pass, started if it was not (None once the group is cut)."""
        with self.lock:
            fut = self.firsts.get(g)
            if fut is None and g not in self.splits:
                fut = self.firsts[g] = self.stamps([j.src_root for j in self.groups[g]])
            return fut

    def _weight(self, job: UserJob, raw) -> int:
        """What listing this mailbox holds, in bytes of the directories its second pass reads (and of the
        control files beside them, which are read too): a directory's size follows its entries."""
        if not isinstance(raw, RawScan) or self._as_left(job, raw):
            return 0
        dirs = moved_dirs(raw.settle().tops, _known(self.states(job)))
        moved = {e.rel.rpartition(b"/")[0] for e in dirs}
        beside = sum(e.size for e in raw.tops if e.kind == FILE and e.rel.rpartition(b"/")[0] in moved)
        return sum(e.size for e in dirs) + beside

    def _split(self, g: int):
        """Group g cut into chunks, once its first pass is in."""
        got = self.splits.get(g)
        if got is not None:
            return got
        with self.split_lock:
            got = self.splits.get(g)
            if got is not None:
                return got
            every = self._first(g).result()
            with self.lock:
                self.firsts.pop(g, None)
            cap = self.FIRST if g == 0 else 2 * self.FIRST if g == 1 else self.CHUNK
            chunks, of, start, held = [], {}, 0, 0
            for i, (j, raw) in enumerate(zip(self.groups[g], every)):
                w = self._weight(j, raw)
                if i > start and (i - start >= cap or held + w > self.HELD):
                    chunks.append((start, self.groups[g][start:i]))
                    start, held, cap = i, 0, min(cap * 2, self.CHUNK)
                held += w
                of[j.src_root] = len(chunks)
            if start < len(every):
                chunks.append((start, self.groups[g][start:]))
            got = self.splits[g] = (every, chunks, of)
            return got

    def _next(self, key: tuple) -> tuple | None:
        g, c = key
        if c + 1 < len(self.splits[g][1]):
            return g, c + 1
        return (g + 1, 0) if g + 1 < len(self.groups) else None

    def _list(self, key: tuple) -> dict:
        g, c = key
        every, chunks, _ = self._split(g)
        off, chunk = chunks[c]
        self._ahead(g)  # the stamps after these are taken while these are worked on
        outs = every[off : off + len(chunk)]
        every[off : off + len(chunk)] = [None] * len(chunk)  # held from here on by this chunk alone
        once = {r for r, n in collections.Counter(j.src_root for j in chunk).items() if n == 1}
        requests, left = [], set()
        for j, raw in zip(chunk, outs):
            if j.src_root in once and self._as_left(j, raw):
                left.add(j.src_root)  # its first pass is all that is read of it, and left as printed
                requests.append((j.src_root, None))
            else:
                requests.append((j.src_root, _known(self.states(j))))
        results = self.source.lists_many(outs, requests)
        out, want = {}, []
        for j, res in zip(chunk, results):
            out[j.src_root] = res
            if isinstance(res, RawScan) and j.src_root not in left:
                want += [(j.src_root, rel) for rel in wanted_files(res, self.states(j))]
        # The control files the plans will read, all the chunk's in one go (one round trip, not one each).
        for (root, rel), data in (read_many(self.source, want) if want else {}).items():
            if isinstance(out.get(root), RawScan):
                out[root].files[rel] = data
        return out

    def _ensure(self, key: tuple | None):
        if key is None:
            return None
        with self.lock:
            fut = self.futures.get(key)
            if fut is None:
                if self.pool is None:
                    self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maildirsync-list")
                fut = self.futures[key] = self.pool.submit(self._list, key)
            return fut

    def get(self, job: UserJob, known: Callable[[], dict]) -> RawScan:
        """The job's listing. ``known``: the cur/new mtimes the listing may skip, asked only if needed."""
        if self.stamps is None:
            return self.source.scan(job.src_root, known())
        g = self.where.get(job.src_root)
        if g is None:
            (res,) = self.source.scan_many([(job.src_root, known())])
        else:
            key = (g, self._split(g)[2][job.src_root])
            with self.lock:
                taken = key in self.taken
            if taken:  # a root asked twice, in chunks already taken: listed on its own
                (res,) = self.source.scan_many([(job.src_root, known())])
            else:
                fut = self._ensure(key)
                self._ensure(self._next(key))  # the next chunk is listed while this one is synced
                results = fut.result()
                res = results.pop(job.src_root)
                if not results:
                    with self.lock:
                        self.futures.pop(key, None)
                        self.taken.add(key)
        if isinstance(res, SourceError):
            raise res
        return res


def _renumber_notes(counts: dict, verb: str) -> list:
    return [
        f"{maildir.folder_display(f)}: {n} message(s) {verb} a new UID on the destination (it holds mail of "
        "its own, and the source's UID was taken there): mail clients download them again"
        for f, n in sorted(counts.items())
        if n
    ]


def wanted_files(raw: RawScan, states: dict) -> list:
    """The control files a plan of this listing will read from the source: those whose stamps differ from
    what the last run recorded, and the dovecot-uidlist of every folder whose cur/new changed."""
    out = []
    for e in raw.tops:
        folder, _, name = e.rel.rpartition(b"/")
        if e.kind != FILE or maildir.classify(name) is not maildir.FileKind.CONTROL:
            continue
        st = states.get(folder)
        ctl = st.controls.get(name) if st is not None else None
        moved = ctl is None or (ctl.src_size, ctl.src_mtime_ns) != (e.size, e.mtime_ns)
        if name == UIDLIST and not moved and not (st.verbatim and not st.uids_own):
            # Its messages changed: the merge reads it (unless the destination holds it byte for byte).
            moved = any(maildir.in_folder(folder, sub) in raw.dirs for sub in listing.SUBDIRS)
        if moved:
            out.append(e.rel)
    return out


def _problems(src: listing.Mailbox) -> str:
    parts = []
    if src.errors:
        parts.append(f"{len(src.errors)} source director{'y' if len(src.errors) == 1 else 'ies'} unreadable")
    if src.rejected:
        parts.append(f"{len(src.rejected)} source entr{'y' if len(src.rejected) == 1 else 'ies'} skipped")
    return "; ".join(parts)


def _dst_control_hashes(root: bytes, dst: listing.Mailbox, states: dict[bytes, FolderState]):
    """Current hashes of the destination control files we have a record of. A file whose size and mtime
    are as we left them is taken as unchanged; any other is read."""
    out = {}
    for folder, st in states.items():
        df = dst.folders.get(folder)
        if df is None:
            continue
        for name, ctl in st.controls.items():
            have = df.controls.get(name)
            if have is None:
                continue
            if have == (ctl.dst_size, ctl.dst_mtime_ns):
                out[(folder, name)] = ctl.dst_hash
                continue
            p = maildir.folder_dir(root, folder) + b"/" + name
            try:
                with open(p, "rb") as fh:
                    out[(folder, name)] = xxhash.xxh3_128_hexdigest(fh.read())
            except OSError:
                pass
    return out


def _keyword_translations(source, job, src, dst, states, ctl_hash, src_files) -> dict[bytes, keywords.Translation]:
    """Folders whose destination ``dovecot-keywords`` is the destination server's own (not what we
    carried): source letters must be translated by name."""
    out = {}
    for folder, sf in src.folders.items():
        df = dst.folders.get(folder)
        if df is None or b"dovecot-keywords" not in df.controls or b"dovecot-keywords" not in sf.controls:
            continue
        st = states.get(folder)
        ctl = st.controls.get(b"dovecot-keywords") if st else None
        if ctl is not None and ctl_hash.get((folder, b"dovecot-keywords")) == ctl.dst_hash:
            continue  # still ours: it is carried, letters mean the same on both sides
        srel = maildir.in_folder(folder, b"dovecot-keywords")
        p = maildir.folder_dir(job.dst_root, folder) + b"/dovecot-keywords"
        try:
            with open(p, "rb") as fh:
                mine = fh.read()
        except OSError:
            continue
        theirs = src_files[srel] if srel in src_files else source.read(job.src_root, srel)
        t = keywords.translate(theirs, mine)
        if t.table or t.added:
            out[folder] = t
    return out


def _folder_work(job: UserJob, index: Index, user: bytes, src: listing.Mailbox, dst: listing.Mailbox, states):
    """For each folder: nothing (quiet), its changed bases against what the last run left, or all of it.
    Returns the work by folder, the index records the plan needs (of the changed bases, or all), and the
    quiet folders. A quiet folder (cur/, new/ and dovecot-uidlist as the last run left them, on both
    sides) costs a few stamps: no listing, no record read."""
    work: dict = {}
    recs: dict = {}
    still: set = set()
    dst_files = quiet.dst_files(dst)
    for folder in sorted(set(src.folders) | set(states)):
        st = states.get(folder)
        sf, df = src.folders.get(folder), dst.folders.get(folder)
        snap = st is not None and st.snap
        dst_dirs = {}
        if df is not None and snap:
            for sub in listing.SUBDIRS:
                m = df.dir_mtimes.get(sub)
                if m is not None and st.dst_mtimes.get(sub) != m:
                    dst_dirs[maildir.in_folder(folder, sub)] = views.names_blob(
                        maildir.folder_dir(job.dst_root, folder) + b"/" + sub)
        calm = snap and sf is not None and df is not None and not dst_dirs
        if calm and quiet.folder_quiet(st, sf, df, dst_files, folder):
            still.add(folder)
            src.skipped.extend(t for k, t in st.problems if k == "skipped")
            src.rejected.extend(t for k, t in st.problems if k == "rejected")
            continue

        if snap:
            w = views.diff_folder(folder, src, dst, index.folder_lists(user, folder), src.dirs, dst_dirs, dst_sep(dst, src))
            recs[folder] = index.get_recs(user, folder, w.touched)
            views.complete(w, folder, src, dst, recs[folder], job.dst_root, dst_sep(dst, src))
            for k, t in st.problems:  # said again: the subdir was not read again, or read unchanged
                sub = t.split("/", 2)[1 if folder else 0][:3] if t else ""
                if maildir.in_folder(folder, sub.encode()) not in src.dirs:
                    (src.skipped if k == "skipped" else src.rejected).append(t)
        else:
            w = views.whole_folder(folder, src, dst, src.dirs, job.dst_root)
            recs[folder] = index.folder_records(user, folder) if st is not None else {}
        work[folder] = w
    return work, recs, still


def _glances(src: listing.Mailbox, states) -> dict:
    """Folders of the destination known from the last run: of each, the few entries the plan can look at
    (its cur/new, dovecot-uidlist and the control files either side has) are statted, instead of all its
    entries listed and statted."""
    return {
        f: set(st.controls) | set(src.folders[f].controls) | {UIDLIST, b"dovecot.index"}
        for f, st in states.items() if st.snap and f and f in src.folders
    }  # fmt: skip


def dst_sep(dst: listing.Mailbox, src: listing.Mailbox) -> bytes:
    return dst.sep if dst.dirs else src.sep


def _dest_separator(work: dict, dst: listing.Mailbox, src: listing.Mailbox) -> bytes:
    """The separator of the destination's names: as its messages have it, else the source's."""
    for w in work.values():
        for blob in w.dst_now.values():
            for sep in maildir.SEPARATORS:
                if sep + b"2," in blob:
                    return sep
    for f in dst.folders.values():
        for m in f.msgs.values():
            if m.parsed.sep:
                return m.parsed.sep
    return src.sep


def _names_of(w, dst: listing.Mailbox, folder: bytes, sep: bytes) -> dict:
    """base -> name of every message the destination folder holds now."""
    df = dst.folders.get(folder)
    if w is None or w.whole:
        return {b: m.name for b, m in df.msgs.items()} if df is not None else {}
    out = {}
    for sub in (b"new", b"cur"):  # cur last: the later state of a message wins
        for n in records(w.dst_now.get(sub, b"")):
            if maildir.is_message_name(n):
                out[maildir.base_of(n, sep)] = n
    return out


def _on_source(w, src: listing.Mailbox, folder: bytes):
    """Does the source's folder hold this base? Of a folder planned by its changes, asked of its records."""
    sf = src.folders.get(folder)
    if w is None or w.whole:
        return set(sf.msgs if sf is not None else ()).__contains__
    blobs = [w.src_now.get(sub, b"") for sub in listing.SUBDIRS]

    def has(base: bytes) -> bool:
        if sf is not None and base in sf.msgs:
            return True
        for c in (b"/", src.sep):  # a record "<base>[<sep><info>]/<size>/<mtime>", first or after a NUL
            head = base + c
            if any(blob.startswith(head) or (b"\0" + head) in blob for blob in blobs):
                return True
        return False

    return has


def _has_base(w, base: bytes, sep: bytes) -> bool:
    if w is None:
        return False
    return any(maildir.base_of(n, sep) == base for blob in w.dst_now.values() for n in records(blob))


def _lookup_others(index: Index, user: bytes, root: bytes, work: dict, recs: dict, dst: listing.Mailbox, sep: bytes,
                   src: listing.Mailbox, states: dict):
    """For a local copy: the user's other folders holding a base (asked for new bases only), with what the
    destination holds of it there. The records of every base new somewhere are read at the first
    question, folder by folder (one read each), not base by base."""
    found: dict | None = None

    def maybe_in(g: bytes, bases: list) -> list:
        # Of these bases, those among the names the last run left in g: a record of ours there names one
        # of them. (Where they were not left, a base this misses is fetched instead of copied: no harm.)
        w = work.get(g)
        lists = w.then if w is not None and w.then is not None else index.folder_lists(user, g)
        names = [v for k, v in (lists or {}).items() if k[:1] == views.DST]
        if not names:
            return bases
        left = views.bases_of(b"".join(names), sep)
        return [b for b in bases if b in left]

    def load() -> dict:
        new = {b for f, sf in src.folders.items() for b in sf.msgs if b not in recs.get(f, {})}
        out: dict = {}
        if new:
            for g in sorted(states):
                have = recs.get(g, {})
                got = {b: have[b] for b in new if b in have}
                got.update(index.get_recs(user, g, maybe_in(g, [b for b in new if b not in have])))
                for b, rec in got.items():
                    out.setdefault(b, []).append((g, rec))
        return out

    def others(folder: bytes, base: bytes) -> list:
        nonlocal found
        if found is None:
            found = load()
        out = []
        for g, rec in found.get(base, ()):
            if g == folder or not rec.dst_name:
                continue
            df = dst.folders.get(g)
            d = df.msgs.get(base) if df is not None else None
            if d is None:  # not among the names the plan looks at: is the recorded file there?
                p = maildir.folder_dir(root, g) + b"/" + rec.dst_subdir + b"/" + rec.dst_name
                try:
                    st = os.lstat(p)
                    d = listing.Msg(rec.dst_subdir, rec.dst_name, st.st_size, st.st_mtime_ns,
                                    maildir.parse_name(rec.dst_name, sep))  # fmt: skip
                except OSError:
                    d = None
            out.append((g, rec, d))
        return out

    return others


def _uid_lists(source: Source, job: UserJob, src: listing.Mailbox, dst: listing.Mailbox, states: dict, still: set,
               files: dict):  # fmt: skip
    """Both sides' dovecot-uidlist of every folder that is not quiet: folder -> (source bytes, destination
    bytes, source (size, mtime)). Where the destination's is the source's byte for byte as we wrote it and
    neither has changed since, the destination's bytes are the source's: not read again (after 10 % of
    flags changed, that is every list, 17 MB on the medium corpus)."""
    out = {}
    todo = [(folder, sf) for folder, sf in src.folders.items() if folder not in still]
    mine_of = {folder: _read_local(maildir.folder_dir(job.dst_root, folder) + b"/" + UIDLIST) for folder, _ in todo}
    carried = {}
    for folder, sf in todo:
        mine, stamp = mine_of[folder], sf.controls.get(UIDLIST)
        if stamp is not None and mine is not None and len(mine) == stamp[0] and _as_carried(
                states.get(folder), stamp, dst.folders.get(folder)):  # fmt: skip
            carried[folder] = mine
    # The lists the listing did not bring already, in one go: never a round trip each.
    unread = [(job.src_root, rel) for rel in (maildir.in_folder(f, UIDLIST) for f, sf in todo
                                              if UIDLIST in sf.controls and f not in carried)
              if rel not in files]  # fmt: skip
    got = {rel: data for (_root, rel), data in read_many(source, unread).items()} if unread else {}
    for folder, sf in todo:
        stamp = sf.controls.get(UIDLIST)
        rel = maildir.in_folder(folder, UIDLIST)
        mine = mine_of[folder]
        if stamp is None:
            data = None
        elif folder in carried:
            data = carried[folder]
        else:
            data = files[rel] if rel in files else got.get(rel)
        if data is not None and len(data) != stamp[0]:
            stamp = (-1, stamp[1])  # rewritten since the listing: read it again next run
        if data is None and mine is None:
            continue
        out[folder] = (data, mine, stamp if stamp is not None else (ABSENT, 0))
    return out


def _as_carried(st: FolderState | None, src_stamp, df) -> bool:
    """Is the destination folder's dovecot-uidlist the source's, byte for byte as we wrote it, with
    neither changed since (their stamps as the last run left them, the source's trusted)?"""
    return (
        st is not None and st.verbatim and not st.uids_own and df is not None
        and uidlist_as_left(st, src_stamp, source_side=True)
        and uidlist_as_left(st, df.controls.get(UIDLIST), source_side=False)
    )  # fmt: skip


def _read_local(path: bytes) -> bytes | None:
    try:
        return read_local(path)[0]
    except OSError:
        return None


def _dst_stamps(root: bytes, folder: bytes, seen=None, taken=None) -> dict[bytes, int]:
    """The destination folder's cur/new mtimes (now, or as ``seen`` before the run if it did nothing
    there, or as :func:`_settle` took them after the run's last write), if settled enough to be trusted
    (stamps.settled)."""
    out = {}
    now = stamps.fs_now_ns()
    for sub in (b"cur", b"new"):
        try:
            if seen is not None:
                m = seen.dir_mtimes[sub]
            elif taken is not None:
                m = taken[(folder, sub)]
            else:
                m = os.stat(maildir.folder_dir(root, folder) + b"/" + sub).st_mtime_ns
        except (OSError, KeyError):
            return {}
        if not stamps.settled(m, now):
            return {}
        out[sub] = m
    return out


def _settle(root: bytes, folders) -> dict:
    """Wait, once per user and a clock tick at most, until the cur/new this run wrote in are settled
    (stamps.settled) for their stamps to be kept: a folder written in the last tick would otherwise be
    left without one, listed again by the next run, and not make its mailbox quiet. Returns the mtimes
    it read, (folder, sub) -> mtime_ns: the stamps to keep. Taken after the run's last write and before
    the names are read again, as a stamp must be; a write during the wait moves the directory past it,
    so the next run lists that directory again."""
    latest, taken = 0, {}
    for folder in folders:
        for sub in (b"cur", b"new"):
            try:
                m = taken[(folder, sub)] = os.stat(maildir.folder_dir(root, folder) + b"/" + sub).st_mtime_ns
            except OSError:
                continue
            latest = max(latest, m)
    if latest:
        stamps.wait_settled(latest)
    return taken


def _record_folders(batch, user: bytes, src: listing.Mailbox, states, plan: Plan, out: Outcome, stamp_dirs: bool,
                   dst_root: bytes, work: dict, dst: listing.Mailbox) -> dict:
    """What the next run compares with: per folder worked on, the source's stamps and listings as seen,
    the destination's as left, the UID merge's state; nothing (relist it whole) where something failed.
    Returns the state of every folder the index now keeps for the user."""
    failed_folders = {a.folder for a, _ in out.failed} | {a.from_folder for a, _ in out.failed if a.from_folder}
    done_kinds_incomplete = out.fatal is not None or out.interrupted
    changed = {a.folder for a in out.done if a.writes} | {a.from_folder for a in out.done if a.from_folder}
    taken = _settle(dst_root, changed - failed_folders) if not done_kinds_incomplete else {}
    news = dict(states)
    for folder, f in src.folders.items():
        st = states.get(folder) or FolderState()
        w = work.get(folder)
        if w is None:  # quiet: as it was
            continue
        new = FolderState(dict(), dict(st.controls), uids_own=st.uids_own, uidvalidity=st.uidvalidity)
        for (cf, name), ctl in out.controls.items():
            if cf == folder and ctl is not None:
                new.controls[name] = ctl
        _record_uids(new, plan.uids.get(folder), src, dst_root, folder,
                     ok=folder not in failed_folders and not done_kinds_incomplete)  # fmt: skip
        clean = (
            not done_kinds_incomplete
            and folder not in failed_folders
            and folder not in plan.held
            and not src.errors
        )
        if clean:
            # The stamps first, then the names: a change in between shows as a moved stamp next time.
            touched = folder in changed
            new.dst_mtimes = _dst_stamps(dst_root, folder, None if touched else dst.folders.get(folder), taken)
            left = views.left_lists(dst_root, folder, w, _relist(st, new) if touched else set())
            if left != w.then:
                batch.put_lists(user, folder, left)
            new.snap = True
            new.problems = _folder_problems(src, folder)
            if stamp_dirs and src.now_ns is not None:
                for sub, m in f.dir_mtimes.items():
                    if m <= src.now_ns - _margin(m):
                        new.dir_mtimes[sub] = m
        elif st.snap:
            batch.put_lists(user, folder, None)
        if new != st or folder not in states:
            batch.put_folder(user, folder, new)
        news[folder] = new
    return news


def _relist(st: FolderState, new: FolderState) -> set:
    """The destination subdirs of a folder the run wrote in whose names must be read again: all but those
    still at the stamp the last run left (settled then: whatever wrote there since, this run included,
    moved it), whose names are the ones the last run left. A 1 % change writes in one subdir of most
    folders, not both."""
    return {sub for sub in listing.SUBDIRS if not st.snap or new.dst_mtimes.get(sub) is None
            or new.dst_mtimes[sub] != st.dst_mtimes.get(sub)}  # fmt: skip


def _margin(mtime_ns: int) -> int:
    """How old a source stamp must be to be kept: older than the source's clock can tell apart, whole
    seconds on ext3 (SME 8), a tick where the filesystem keeps nanoseconds."""
    return STAMP_MARGIN_NS if mtime_ns % 1_000_000_000 == 0 else FINE_STAMP_MARGIN_NS


def _folder_problems(src: listing.Mailbox, folder: bytes) -> list:
    """What of the folder's cur/new was set aside, to be said again while its directories stay as they are."""
    if not src.skipped and not src.rejected:
        return []
    heads = tuple(maildir.show(maildir.in_folder(folder, sub)) + "/" for sub in listing.SUBDIRS)
    return [[k, t] for k, texts in (("skipped", src.skipped), ("rejected", src.rejected)) for t in texts if t.startswith(heads)]


def _record_uids(new: FolderState, ctx, src: listing.Mailbox, dst_root: bytes, folder: bytes, ok: bool) -> None:
    """What the folder's UID merge leaves for the next run: whether the destination numbers the folder
    itself (sticky), the UIDVALIDITY that is ours, and both files' stamps (unchanged: nothing to merge)."""
    if ctx is None or ctx.merged is None:
        return
    m = ctx.merged
    new.verbatim = False
    new.uids_own = new.uids_own or m.own
    if m.uidvalidity is not None:
        new.uidvalidity = m.uidvalidity
    if not ok:
        new.controls.pop(UIDLIST, None)  # merge again next run
        return
    size, mtime = ctx.src_stamp
    if size != ABSENT and (src.now_ns is None or mtime > src.now_ns - _margin(mtime)):
        size = -1  # changed too recently to trust the stamp
    path = maildir.folder_dir(dst_root, folder) + b"/" + UIDLIST
    try:
        # Byte for byte the source's, as the stamp recorded says: checked on the file that stamp is of,
        # since the destination's Dovecot may have rewritten it since we did. Later runs take a list
        # with this stamp for the source's without reading either (see _as_carried). The file the
        # executor judged (or wrote) and left, by its inode, size and mtime, is not read again.
        st = os.stat(path)
        if ctx.left is not None and ctx.left == (st.st_ino, st.st_size, st.st_mtime_ns):
            new.verbatim = bool(ctx.same) and ctx.src_data is not None
        else:
            data, st = read_local(path)
            new.verbatim = bool(ctx.same) and ctx.src_data is not None and data == ctx.src_data
        dsize, dmtime = st.st_size, st.st_mtime_ns
    except OSError:
        dsize, dmtime = ABSENT, 0
    new.controls[UIDLIST] = Ctl(size, mtime, "", dsize, dmtime)


DEFAULT_DEST = Path("/var/lib/nethserver/vmail")


def index_key(source: str, dest_root: Path) -> str:
    """An index belongs to one source and one destination: another destination gets another index
    (the one of NethServer's own mailbox root keeps the plain ``HOST_PORT`` name)."""
    dest = os.path.abspath(dest_root)
    if dest == str(DEFAULT_DEST):
        return source
    return f"{source}-{xxhash.xxh64_hexdigest(os.fsencode(dest))[:12]}"


def state_dir_for(base: Path, key: str) -> StateDir:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in key)
    return StateDir(base / safe)

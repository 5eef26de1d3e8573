"""``maildirsync-import mailboxes DIR``: copy every mailbox of an exploded backup into the destination
layout with the sync engine, and seed the index of the live source.

Each user of the backup (``importer.inspect``: the accounts database, admin's ``home/e-smith/Maildir``
included) is one :class:`maildirsync.engine.UserJob` from ``DIR/<their Maildir>`` to
``<dest-root>/<user>@<domain>/Maildir``, run by :func:`maildirsync.engine.run`.

The index is the point. With ``--source-host HOST [--port P]`` the run writes into the index that
``maildirsync -s HOST -p P`` keeps (``engine.index_key("HOST_P", dest_root)``): the records name the
messages as the backup holds them, which is the source as it was when the backup was taken, so the next
``maildirsync -s`` sees exactly what changed on the source since then: new mail is downloaded, flag
changes are renames, expunged mail is deleted, and the rest is not touched. Without ``--source-host`` the
index is one of this backup alone (key ``local-<hash of DIR>``); the first ``maildirsync -s`` then finds no
record, and adopts what the destination holds (same base, same size) without downloading it (its
``dovecot-uidlist`` is merged with the live source's all the same, so UIDs stay), but it never deletes what
was expunged on the source after the backup. Running
``mailboxes --source-host`` afterwards, before the first ``maildirsync -s``, records the copies in that
source's index without copying anything again.

Three things make a backup a different source from the live one, and are handled here:

* **Directory stamps.** The engine skips re-listing a ``cur``/``new`` whose mtime equals the one recorded
  in the index. The backup's directory mtimes come from an archive (whole seconds, taken while mail kept
  arriving): a live directory changed in the same second as the backup read it would carry an equal stamp
  and its change would be skipped. The run passes ``stamp_dirs=False``, so the engine
  records no stamp for a seeded folder, and the first ``maildirsync -s`` lists every folder in full.
* **Nothing is deleted.** A message missing from the tree means the tree was consumed
  (``migration-import`` moves files out of it), not that a user deleted it: the run never deletes on the
  destination. Deletes on the source are ``maildirsync -s``'s business.
* **Never backwards.** Once ``maildirsync -s`` has synced a user from the live source, the index holds a
  later state than the backup: seeding that user again would step the destination back (renames undone,
  mail delivered after the backup deleted, then downloaded again). Such a user is left alone, with a note.
  The importer's own seeds are told apart by a small file beside the index (:data:`MARKER`).

The exploded tree is only read.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from importer import inspect as inspect_mod
from importer.errors import BadInputError, ImporterError
from maildirsync import engine, remote
from maildirsync.errors import EXIT_BUSY, IndexBusy, MaildirsyncError
from maildirsync.index import StateDir
from maildirsync.plan import Options
from maildirsync.transport import LocalSource

DEFAULT_STATE = Path("/var/lib/maildirsync")  # as maildirsync's --state-dir
MARKER = "seeded-by-import.json"


class IndexInUseError(ImporterError):
    """Another maildirsync run holds the index: exit 4, as for ``maildirsync``."""

    exit_code = EXIT_BUSY


class SyncEngineError(ImporterError):
    """The engine refused (the index cannot be opened or written): its message, its exit code."""

    def __init__(self, err: MaildirsyncError, hint: str | None = None) -> None:
        super().__init__(err.message, hint)
        self.exit_code = err.exit_code


@dataclass
class Seeding:
    """What a ``mailboxes`` run will do, decided before anything is written."""

    tree: Path
    dest_root: Path
    domain: str
    source_host: str | None
    port: int
    state: StateDir
    key: str
    jobs: list[engine.UserJob] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def source_label(self) -> str:
        return f"{self.source_host} port {self.port}" if self.source_host else "this backup"

    def next_command(self) -> str:
        if self.source_host:
            port = f" -p {self.port}" if self.port != 22 else ""
            return f"maildirsync -s {self.source_host}{port}"
        return "maildirsync -s HOST"


def index_key(tree: Path, source_host: str | None, port: int, dest: Path) -> str:
    """The index ``maildirsync -s HOST -p PORT --dest-root DEST`` keeps, or one of this backup alone."""
    if source_host:
        return engine.index_key(f"{source_host}_{port}", dest)
    return "local-" + xxhash.xxh64_hexdigest(os.fsencode(tree) + b"\0" + os.fsencode(dest))


def prepare(
    tree: str | os.PathLike,
    *,
    dest_root: str | os.PathLike = inspect_mod.DEFAULT_DEST_ROOT,
    domain: str | None = None,
    source_host: str | None = None,
    port: int = 22,
    state_base: str | os.PathLike = DEFAULT_STATE,
    users: list[str] | None = None,
    maildirs: list[str] | None = None,
) -> Seeding:
    """Check the input and pair each user of the backup with its destination mailbox. ``maildirs``:
    ``NAME=USER`` items, each a Maildir of the backup that no user account owns
    (``home/e-smith/files/users/NAME/Maildir``) and the mailbox it goes to."""
    if source_host is not None and not source_host.strip():
        raise BadInputError("--source-host is empty", "give the host as you will give it to maildirsync -s")
    if not 0 < port < 65536:
        raise BadInputError(f"--port {port}: not a TCP port", "give the SSH port of the source, 1 to 65535 (default 22)")
    root = inspect_mod.check_tree(tree).absolute()
    dest = Path(dest_root).absolute()
    if not dest.is_dir():
        raise BadInputError(
            f"the destination mailboxes root {dest} does not exist",
            "install the NethServer mail server (nethserver-mail-server) first, or pass --dest-root",
        )
    inv = inspect_mod.inspect_tree(root, dest_root=str(dest), domain=None, packages=False)
    acc = f"{inspect_mod.DB_DIR}/accounts"
    if acc in inv.missing_dbs:
        raise BadInputError(
            f"{root} lacks {acc}: the users of the backup are unknown",
            "explode the full backup again; the accounts database names the users",
        )
    backup_domain = inv.domain
    whence = "--domain" if domain else "this host's domain"
    domain = domain or remote.host_domain()
    if not domain:
        raise BadInputError(
            "cannot tell the mail domain: this host has no DNS domain (hostname -d is empty)",
            f"pass --domain (the backup's DomainName is {backup_domain})" if backup_domain else "pass --domain",
        )
    key = index_key(root, source_host, port, dest)
    s = Seeding(root, dest, domain, source_host, port, engine.state_dir_for(Path(state_base), key), key)
    if backup_domain and backup_domain != domain:
        s.notes.append(
            f"the backup's mail domain is {backup_domain}: mailboxes go to <user>@{domain} ({whence}); "
            f"pass --domain {backup_domain} if they belong there"
        )
    by_name = {u.name: u for u in inv.users}
    if users:
        unknown = sorted(set(users) - set(by_name))
        if unknown:
            raise BadInputError(
                f"no such user in the backup: {', '.join(unknown)}",
                f"users of this backup: {', '.join(by_name) or '(none)'}",
            )
    for u in inv.users:
        if users and u.name not in users:
            continue
        if not u.mailbox.exists:
            s.notes.append(
                f"{u.name}: no Maildir in the backup ({u.mailbox.path}); nothing to copy. (If migration-import "
                "already ran on this tree, it moved the Maildirs out: maildirsync -s adopts what it moved.)"
            )
            continue
        box = dest / f"{u.name}@{domain}"
        if box.is_symlink() or (box / "Maildir").is_symlink():
            s.notes.append(f"{u.name}: {box} or its Maildir is a symbolic link: not written through; skipped")
            continue
        s.jobs.append(
            engine.UserJob(u.name, os.fsencode(root / u.mailbox.path), os.fsencode(box / "Maildir"), create=True)
        )
    _orphan_jobs(s, inv, maildirs or [])
    if not inv.users:
        s.notes.append("the accounts database of the backup has no users")
    return s


def _orphan_jobs(s: Seeding, inv, maildirs: list[str]) -> None:
    """One job per ``--maildir NAME=USER``; a note for each orphan Maildir left out. The job is named after
    NAME, not USER: the index then holds NAME's records, which `maildirsync -s` (that syncs USER from the
    source's USER) never reads, so the copied mail stays mail of the destination's own, never deleted."""
    by_name = {o.name: o for o in inv.orphans}
    users = {u.name for u in inv.users}
    taken = {os.fsdecode(j.dst_root): j.user for j in s.jobs}
    mapped = set()
    for item in maildirs:
        name, sep, target = item.partition("=")
        name, target = name.strip(), target.strip()
        if not sep or not name or not target or "/" in name + target or "@" in target or target in (".", ".."):
            raise BadInputError(f"--maildir {item!r}: give NAME=USER",
                                "NAME a directory of home/e-smith/files/users, USER the mailbox it goes to "
                                "(<USER>@<domain>)")  # fmt: skip
        if name in users:
            raise BadInputError(f"--maildir {item!r}: {name} is a user of the backup, whose Maildir is copied "
                                f"to {name}@{s.domain} already", "--maildir is for the Maildirs no user owns")  # fmt: skip
        o = by_name.get(name)
        if o is None:
            known = ", ".join(sorted(by_name)) or "none"
            raise BadInputError(f"--maildir {item!r}: {s.tree}/{inspect_mod.predict.USERS_DIR}/{name}/Maildir is not "
                                "a Maildir of the backup that no user owns",
                                f"the Maildirs no user owns: {known}")  # fmt: skip
        box = s.dest_root / f"{target}@{s.domain}"
        dst = os.fsdecode(box / "Maildir")
        if dst in taken:
            raise BadInputError(f"--maildir {item!r}: {dst} also receives {taken[dst]}'s Maildir in this run",
                                "copy it into a mailbox of its own, or in a run of its own (-u to leave the other "
                                "user out)")  # fmt: skip
        if box.is_symlink() or (box / "Maildir").is_symlink():
            raise BadInputError(f"--maildir {item!r}: {box} or its Maildir is a symbolic link", "not written through")
        taken[dst] = name
        mapped.add(name)
        s.jobs.append(engine.UserJob(name, os.fsencode(s.tree / o.path), os.fsencode(dst), create=True))
        s.notes.append(f"{name}: the Maildir {o.path}, which no user account owns, goes to {target}@{s.domain}")
    for o in inv.orphans:
        if o.name not in mapped:
            s.notes.append(f"{o.name}: {o.path} ({o.messages} messages) is {o.reason}: not copied; "
                           f"`--maildir {o.name}=USER` copies it into USER's mailbox")  # fmt: skip


# --------------------------------------------------------------------------- never backwards


def _read_marker(state: StateDir) -> dict:
    try:
        d = json.loads((state.path / MARKER).read_text())
        return d if isinstance(d.get("users"), dict) else {"users": {}}
    except (OSError, ValueError, AttributeError):
        return {"users": {}}


def _write_marker(state: StateDir, data: dict) -> None:
    p = state.path / MARKER
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, p)


def _seed_allowed(known: bool, status: dict | None, mark: dict | None) -> bool:
    """May the backup be written over what the index holds of a user?

    Yes when the index knows nothing of the user, or when the last thing to write it was a seed of ours:
    a finished seed not followed by any run (a run's user status is newer than the seed's end), or a seed
    that died before finishing, not followed by any run that got as far as recording a status."""
    if not known:
        return True
    if not mark:
        return False
    finished = mark.get("finished")
    if finished is None:
        return status is None
    return status is None or float(status.get("time", 0)) <= float(finished)


def drop_newer(s: Seeding) -> None:
    """Leave out (with a note) every user the live source's index already holds in a later state."""
    if not s.jobs:
        return
    try:
        s.state.acquire("maildirsync-import mailboxes (checking the index)")
    except IndexBusy as e:
        raise IndexInUseError(e.message, "wait for that run to finish, then run this command again") from None
    except MaildirsyncError as e:
        raise SyncEngineError(e, "check the --state-dir") from None
    try:
        index, _note = s.state.open_index(readonly=True)
        try:
            marks = _read_marker(s.state)["users"]
            keep = []
            for job in s.jobs:
                u = job.user.encode()
                status = index.user_status(u)
                known = status is not None or bool(index.user_records(u))
                if _seed_allowed(known, status, marks.get(job.user)):
                    keep.append(job)
                    continue
                when = (
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status["time"]))
                    if status and "time" in status
                    else "an interrupted run"
                )
                s.notes.append(
                    f"{job.user}: not copied: maildirsync already synced this mailbox from {s.source_label} "
                    f"(last run: {when}), which is newer than the backup; `{s.next_command()} -u {job.user}` "
                    "brings it up to date"
                )
            s.jobs = keep
        finally:
            index.close()
    finally:
        s.state.release()


# --------------------------------------------------------------------------- the run


def run(
    s: Seeding,
    *,
    dry_run: bool = False,
    owner: tuple[int, int] | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    on_user: Callable[[engine.UserResult], None] | None = None,
) -> engine.RunResult:
    """Copy the mailboxes (or plan it, for a dry run) and record them in the index."""
    drop_newer(s)
    opts = engine.RunOptions(dry_run=dry_run, plan=Options(delete=False), owner=owner, stamp_dirs=False)
    if not s.jobs:
        result = engine.RunResult([], dry_run)
        result.notes[:0] = s.notes
        return result
    marks_lock = threading.Lock()
    marks: dict = {}
    if not dry_run:
        try:
            s.state.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            marks = _read_marker(s.state)
            now = time.time()
            for job in s.jobs:
                marks["users"][job.user] = {"tree": str(s.tree), "started": now, "finished": None}
            _write_marker(s.state, marks)
        except OSError as e:
            raise ImporterError(f"cannot write in the state directory {s.state.path}: {e.strerror}") from None

    def done(r: engine.UserResult) -> None:
        if not dry_run:
            with marks_lock:
                marks["users"][r.user]["finished"] = time.time()
                try:
                    _write_marker(s.state, marks)
                except OSError:
                    pass  # only the never-backwards check reads it; it then errs on the side of refusing
        if on_user is not None:
            on_user(r)

    try:
        result = engine.run(
            s.jobs, LocalSource(), s.state, opts, command="maildirsync-import mailboxes", stop=stop,
            progress=progress, on_user=done,
        )  # fmt: skip
    except IndexBusy as e:
        raise IndexInUseError(e.message, "wait for that run to finish, then run this command again") from None
    except MaildirsyncError as e:
        raise SyncEngineError(e) from None
    result.notes[:0] = s.notes + closing_notes(s, result)
    return result


def closing_notes(s: Seeding, result: engine.RunResult) -> list[str]:
    """What the next ``maildirsync -s`` will do with what this run recorded."""
    if not result.users:
        return []
    verb = "would record" if result.dry_run else "recorded"
    if s.source_host:
        return [
            f"{verb} the mailboxes in the index of {s.source_label} ({s.state.index_path}): "
            f"`{s.next_command()}` transfers only what changed there since the backup (give the host exactly "
            "this way: the index is named after it)"
        ]
    return [
        f"{verb} the mailboxes in an index of this backup only ({s.state.index_path}), as --source-host was not "
        "given: the first `maildirsync -s HOST` adopts these messages without downloading them, but it does not "
        "know these copies as its own: mail expunged on the source after the backup stays on the destination. "
        "Before that first run, run this again with "
        "--source-host HOST [--port P]: it records what is already here without copying it again"
    ]


def to_json(s: Seeding, result: engine.RunResult) -> str:
    from maildirsync import report

    d = json.loads(report.to_json(result))
    d["index"] = {"source_host": s.source_host, "port": s.port, "key": s.key, "path": str(s.state.index_path)}
    d["domain"] = s.domain
    return json.dumps(d, indent=1)


__all__ = [
    "IndexInUseError", "MARKER", "Seeding", "SyncEngineError", "closing_notes",
    "drop_newer", "index_key", "prepare", "run", "to_json",
]  # fmt: skip

"""Local-to-local sync: which mailboxes two directory trees hold, and how they pair up; and the checks that
keep two trees (or a tree and the index) from overlapping."""

from __future__ import annotations

import os
from pathlib import Path

import xxhash

from .engine import UserJob
from .errors import NoMailboxPaired, NotAMaildir, UsageError
from .transport import LocalSource

__all__ = ["LocalSource", "is_maildir", "jobs", "refuse_overlap"]

NEVER_WRITTEN = "the source is never written; choose a destination outside it"


def is_maildir(p: Path) -> bool:
    return (p / "cur").is_dir() or (p / "new").is_dir()


def users_in(root: Path) -> list[str]:
    """Users of a root that holds ``<user>/Maildir`` folders."""
    try:
        return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.is_symlink() and is_maildir(d / "Maildir"))
    except OSError as e:
        raise NotAMaildir(f"cannot read {root}: {e.strerror}") from None


def overlap(a: Path, b: Path) -> str | None:
    """How ``a`` sits against ``b`` once symbolic links are resolved ("the same directory as", "inside",
    "around"), or None when neither holds the other. Paths that do not exist yet resolve as far as they do."""
    ra, rb = os.path.realpath(a), os.path.realpath(b)
    if ra == rb:
        return "the same directory as"
    common = os.path.commonpath([ra, rb])
    if common == rb:
        return "inside"
    if common == ra:
        return "around"
    return None


def refuse_overlap(what: str, a: Path, other: str, b: Path, why: str) -> None:
    """A usage error (nothing done) when ``a`` and ``b`` overlap: one line saying which, and why it matters."""
    how = overlap(a, b)
    if how is None:
        return
    a, b = Path(a).absolute(), Path(b).absolute()
    real = os.path.realpath(a)
    resolved = f" ({real} once symbolic links are resolved)" if real != str(a) else ""
    where = f"contains {other} {b}" if how == "around" else f"is {how} {other} {b}"
    raise UsageError(f"{what} {a}{resolved} {where}: {why}")


def _entries(p: Path) -> list[str]:
    try:
        return os.listdir(p)
    except OSError as e:
        raise NotAMaildir(f"cannot read {p}: {e.strerror}") from None


def jobs(source: Path, dest: Path, only: list[str], create: bool) -> tuple[list[UserJob], str, list[str]]:
    """Pair the mailboxes of SOURCE and DEST. Returns the jobs, the index key and notes for the report."""
    source, dest = source.absolute(), dest.absolute()
    # One index per pair of trees: the same source synced into another destination starts afresh.
    key = "local-" + xxhash.xxh64_hexdigest(os.fsencode(source) + b"\0" + os.fsencode(dest))
    if not source.is_dir():
        raise NotAMaildir(f"{source} is not a directory")
    # Before anything else, dry run included: a destination overlapping the source would be a write to it
    # (sync SRC SRC/.Sub makes .Sub a folder of the source).
    refuse_overlap("the destination", dest, "the source", source, NEVER_WRITTEN)
    if dest.exists() and not dest.is_dir():
        raise NotAMaildir(f"{dest} is not a directory")
    filled = dest.is_dir() and bool(_entries(dest))
    if is_maildir(source):
        if filled and not is_maildir(dest):
            if users_in(dest):
                raise UsageError(
                    f"{source} is one Maildir but {dest} is a directory of <user>/Maildir: give the user's Maildir, "
                    f"{dest}/<user>/Maildir"
                )
            _refuse_to_fill(dest, create)
        name = source.parent.name if source.name == "Maildir" else source.name
        out = [UserJob(name, os.fsencode(source), os.fsencode(dest), create=True)]
        _refuse_links_back(out, source, dest)
        return out, key, []
    users = users_in(source)
    if not users:
        raise NotAMaildir(
            f"{source} is neither a Maildir (no cur/ or new/ inside) nor a directory of <user>/Maildir folders"
        )
    if dest.exists() and is_maildir(dest):
        raise UsageError(f"{source} holds several mailboxes but {dest} is a single Maildir: give a directory of users")
    dest_users = set(users_in(dest)) if dest.is_dir() else set()
    if filled and not dest_users:
        _refuse_to_fill(dest, create)
    if only:
        missing = sorted(set(only) - set(users))
        if missing:
            raise UsageError(f"no such user in {source}: {', '.join(missing)}")
        users = [u for u in users if u in only]
    notes = []
    out = []
    for u in users:
        if u not in dest_users and not create:
            notes.append(
                f"{u}: no destination mailbox {dest / u / 'Maildir'}; skipped. Create the user there first, "
                "or pass --create"
            )
            continue
        out.append(UserJob(u, os.fsencode(source / u / "Maildir"), os.fsencode(dest / u / "Maildir"), create=create))
    for u in sorted(dest_users - set(users_in(source))):
        if not only:
            notes.append(f"{u}: only on the destination; left alone")
    _refuse_links_back(out, source, dest)
    if not out:
        raise NoMailboxPaired(
            f"not one user of {source} has a mailbox in {dest}: create them there (or pass --create), then run again",
            notes,
        )
    return out, key, notes


def _refuse_to_fill(dest: Path, create: bool) -> None:
    """A directory that holds something else (a home, a mount point with lost+found) is filled only on request."""
    if not create:
        raise UsageError(
            f"{dest} is neither empty, nor a Maildir, nor a directory of <user>/Maildir: pass --create to sync into "
            "it anyway"
        )


def _refuse_links_back(jobs_: list[UserJob], source: Path, dest: Path) -> None:
    """Per mailbox too: a user's Maildir that is a symbolic link into the other tree overlaps it."""
    for j in jobs_:
        refuse_overlap("the destination mailbox", Path(os.fsdecode(j.dst_root)), "the source", source, NEVER_WRITTEN)
        refuse_overlap("the source mailbox", Path(os.fsdecode(j.src_root)), "the destination", dest, NEVER_WRITTEN)

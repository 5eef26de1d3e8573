"""Local-to-local sync: which mailboxes two directory trees hold, and how they pair up."""

from __future__ import annotations

import os
from pathlib import Path

import xxhash

from .engine import UserJob
from .errors import NotAMaildir, UsageError
from .transport import LocalSource

__all__ = ["LocalSource", "is_maildir", "jobs"]


def is_maildir(p: Path) -> bool:
    return (p / "cur").is_dir() or (p / "new").is_dir()


def users_in(root: Path) -> list[str]:
    """Users of a root that holds ``<user>/Maildir`` folders."""
    try:
        return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.is_symlink() and is_maildir(d / "Maildir"))
    except OSError as e:
        raise NotAMaildir(f"cannot read {root}: {e.strerror}") from None


def jobs(source: Path, dest: Path, only: list[str], create: bool) -> tuple[list[UserJob], str, list[str]]:
    """Pair the mailboxes of SOURCE and DEST. Returns the jobs, the index key and notes for the report."""
    source, dest = source.absolute(), dest.absolute()
    # One index per pair of trees: the same source synced into another destination starts afresh.
    key = "local-" + xxhash.xxh64_hexdigest(os.fsencode(source) + b"\0" + os.fsencode(dest))
    if not source.is_dir():
        raise NotAMaildir(f"{source} is not a directory")
    if is_maildir(source):
        if dest.exists() and not dest.is_dir():
            raise NotAMaildir(f"{dest} is not a directory")
        name = source.parent.name if source.name == "Maildir" else source.name
        return [UserJob(name, os.fsencode(source), os.fsencode(dest), create=True)], key, []
    users = users_in(source)
    if not users:
        raise NotAMaildir(
            f"{source} is neither a Maildir (no cur/ or new/ inside) nor a directory of <user>/Maildir folders"
        )
    if dest.exists() and is_maildir(dest):
        raise UsageError(f"{source} holds several mailboxes but {dest} is a single Maildir: give a directory of users")
    if only:
        missing = sorted(set(only) - set(users))
        if missing:
            raise UsageError(f"no such user in {source}: {', '.join(missing)}")
        users = [u for u in users if u in only]
    notes = []
    out = []
    dest_users = set(users_in(dest)) if dest.is_dir() else set()
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
    return out, key, notes

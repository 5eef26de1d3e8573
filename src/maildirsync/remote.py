"""Which mailboxes to pull from a live source, following the old script's layout rules (DESIGN.md §1):
destination ``<dest-root>/<user>@<domain>/Maildir``, source by layout (sme8, and sme9 which keeps it:
``<users-dir>/<user>/Maildir``, admin at ``/home/e-smith/Maildir``; ns6: ``<vmail-dir>/<user>/Maildir``)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from .engine import UserJob
from .errors import NoMailboxPaired, UsageError
from .maildir import bad_name, show
from .transport import DIR, Source

SKIPPED_USERS = frozenset({"vmail", "root"})
# Source types (-t). SME Server 9 (CentOS 6) keeps SME 8's layout; ns6 is NethServer 6's.
TYPES = ("sme8", "sme9", "ns6")


@dataclass
class Layout:
    type: str = "sme8"
    users_dir: str = "/home/e-smith/files/users"
    admin_maildir: str = "/home/e-smith/Maildir"
    vmail_dir: str = "/var/lib/nethserver/vmail"

    @property
    def sme(self) -> bool:
        return self.type != "ns6"

    def source_path(self, user: str) -> str:
        if not self.sme:
            return f"{self.vmail_dir}/{user}/Maildir"
        if user == "admin":
            return self.admin_maildir
        return f"{self.users_dir}/{user}/Maildir"

    @property
    def users_root(self) -> str:
        return self.users_dir if self.sme else self.vmail_dir


@dataclass
class Mapping:
    jobs: list[UserJob] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def host_domain() -> str | None:
    """What ``hostname -d`` prints: the host's DNS domain."""
    fqdn = socket.getfqdn()
    return fqdn.split(".", 1)[1] if "." in fqdn else None


def destination_mailboxes(dest_root: Path, domain: str | None) -> tuple[dict[str, Path], list[str]]:
    """user -> destination Maildir. The user is what comes before ``@``, in any domain; if one user has
    mailboxes in several domains, the one in ``domain`` is synced and the others are reported."""
    try:
        entries = sorted(p for p in dest_root.iterdir() if "@" in p.name and (p / "Maildir").is_dir())
    except OSError as e:
        raise UsageError(f"cannot read the destination mailboxes in {dest_root}: {e.strerror}") from None
    found: dict[str, list[Path]] = {}
    for p in entries:
        user = p.name.split("@", 1)[0]
        if user and user not in SKIPPED_USERS and not p.is_symlink():
            found.setdefault(user, []).append(p / "Maildir")
    out, notes = {}, []
    for user, paths in sorted(found.items()):
        pick = next((p for p in paths if p.parent.name == f"{user}@{domain}"), paths[0])
        out[user] = pick
        for other in paths:
            if other != pick:
                notes.append(f"{user}: {other.parent.name} is not synced: {pick.parent.name} takes {user}'s source mail")
    return out, notes


def source_users(source: Source, layout: Layout) -> set[str]:
    root = os.fsencode(layout.users_root)
    users = set()
    if source.exists(root):
        raw = source.scan(root, {})
        # A name that cannot be a file name here (control bytes, ...) is no user of ours.
        users = {os.fsdecode(e.rel) for e in raw.entries if e.kind == DIR and b"/" not in e.rel and not bad_name(e.rel)}
    if layout.sme and source.exists(os.fsencode(layout.admin_maildir)):
        users.add("admin")
    return users - SKIPPED_USERS


def map_users(source: Source, layout: Layout, dest_root: Path, domain: str | None, only: list[str]) -> Mapping:
    dest, notes = destination_mailboxes(dest_root, domain)
    src_users = source_users(source, layout)
    m = Mapping(notes=notes)
    wanted = set(only) if only else set(dest) | src_users
    unknown = sorted(set(only) - set(dest) - src_users)
    if unknown:
        raise UsageError(f"no such user on the source or the destination: {', '.join(map(_show, unknown))}")
    for user in sorted(wanted):
        src_path = layout.source_path(user)
        if user not in dest:
            m.notes.append(
                f"warning: {_show(user)}: has mail on the source ({_show(src_path)}) but no mailbox on this server: "
                f"create the user {_show(user)} here (or run maildirsync-import), then run again"
            )
            continue
        if user not in src_users and not source.exists(os.fsencode(src_path)):
            m.notes.append(f"{_show(user)}: no Maildir on the source ({_show(src_path)}); nothing to sync")
            continue
        m.jobs.append(UserJob(user, os.fsencode(src_path), os.fsencode(dest[user])))
    if not m.jobs:
        raise NoMailboxPaired(_nobody(layout, dest_root, domain, len(src_users), len(dest), bool(only)), m.notes)
    return m


def _nobody(layout: Layout, dest_root: Path, domain: str | None, n_src: int, n_dest: int, only: bool) -> str:
    """Why not one user could be paired, and what to do about it."""
    if only:
        return "none of the users asked for (-u) could be paired with a mailbox on this server: see the notes"
    head = "not one source user has a mailbox on this server"
    if n_src == 0:
        return (
            f"{head}: the source has no user under {_show(layout.users_root)}; check -t (sme8, sme9 or ns6)"
            + (" and --users-dir" if layout.sme else " and --vmail-dir")
        )
    if n_dest == 0:
        return (
            f"{head}: {dest_root} holds no <user>@{domain or '<domain>'}/Maildir; create the users here "
            "(or run maildirsync-import), or check --dest-root, then run again"
        )
    return (
        f"{head} ({n_src} on the source, {n_dest} mailbox(es) in {dest_root}): create the users here "
        "(or run maildirsync-import), then run again"
    )


def _show(name: str) -> str:
    return show(os.fsencode(name))

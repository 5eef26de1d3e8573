"""What ``migration-import`` will leave behind, said before it runs (and checked after).

From NethServer 7's own code (DESIGN.md section 5): the mail step
``nethserver-mail-migrate-mailboxes`` loops over the accounts of ``type=user``
only, skips a user missing from the destination's passwd (``[ERROR] <u> skipped:
not found in passwd database``), skips a user whose
``/var/lib/nethserver/vmail/<u>@<domain>/Maildir`` already exists (``[WARNING] ...
skipped: destination already exists``), and moves every other user's Maildir.
So, for a backup:

* **orphan Maildirs**: ``home/e-smith/files/users/<name>/Maildir`` whose ``<name>``
  is no ``type=user`` account (no record, another type, a line that could not be
  read) is never imported: :func:`orphans` reports each, with what to do
  (``maildirsync-import mailboxes --maildir <name>=USER``);
* **skips** (:func:`skips`): admin's mailbox (a ``system`` record), users not in
  passwd (yet: the import creates them first, or they are skipped), destination
  Maildirs that already exist -- expected when they hold every message of the
  backup (``maildirsync-import mailboxes`` copied them), a loss otherwise;
* after the import, :func:`after_import` checks that each user exists and has
  a mailbox.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from maildirsync.maildir import detect_separator, parse_name

USERS_DIR = "home/e-smith/files/users"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
ACCOUNT_TYPES = ("user", "group", "ibay", "pseudonym", "system", "printer")
DOMAIN_TYPES = ("domain",)


@dataclass
class Orphan:
    name: str  # the directory under home/e-smith/files/users
    path: str  # its Maildir, relative to the tree
    messages: int
    bytes: int
    folders: int
    reason: str  # why migration-import does not import it
    todo: str


@dataclass
class Skip:
    user: str
    kind: str  # not_user_type, not_in_passwd, destination_copied, destination_exists
    message: str
    expected: bool = False  # not a problem (the mail is already there)
    blocking: bool = False  # mail would be lost: `all` stops here unless told to go on


# --------------------------------------------------------------------------- passwd


Passwd = Callable[[str], bool]


def passwd_lookup(path: str | os.PathLike | None = None) -> Passwd:
    """Is a user in the destination's passwd? The system's user database (``getpwnam``, as the mail step
    asks it), or a passwd-format file (``getent passwd > FILE`` of the destination, to inspect elsewhere)."""
    if path is None:
        def system(name: str) -> bool:
            try:
                pwd.getpwnam(name)
                return True
            except KeyError:
                return False

        return system
    names = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                names.add(line.split(":", 1)[0])
    return names.__contains__


# --------------------------------------------------------------------------- Maildirs


def message_keys(root: Path) -> set[tuple[str, bytes]]:
    """``(folder, base)`` of every message of a Maildir: what says two Maildirs hold the same mail."""
    out: set[tuple[str, bytes]] = set()
    folders = [("", root)]
    try:
        folders += sorted((e.name, Path(e.path)) for e in os.scandir(root)
                          if e.name.startswith(".") and e.name not in (".", "..") and e.is_dir(follow_symlinks=False))
    except OSError:
        return out
    for fname, fdir in folders:
        for sub in ("cur", "new"):
            try:
                names = [os.fsencode(e.name) for e in os.scandir(fdir / sub)
                         if not e.name.startswith(".") and e.is_file(follow_symlinks=False)]  # fmt: skip
            except OSError:
                continue
            sep = detect_separator(names)
            out.update((fname, parse_name(n, sep).base) for n in names)
    return out


def orphans(root: Path, accounts, problems_by_key: dict, scan) -> list[Orphan]:
    """Every ``home/e-smith/files/users/*/Maildir`` that no ``type=user`` account owns."""
    base = root / USERS_DIR
    try:
        names = sorted(e.name for e in os.scandir(base) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []
    out = []
    for name in names:
        rel = f"{USERS_DIR}/{name}/Maildir"
        if not (root / rel).is_dir():
            continue
        rec = accounts.get(name)
        if rec is not None and rec.type == "user":
            continue
        if rec is not None:
            reason = f"its account is of type {rec.type!r} (accounts line {rec.line}), and the mail step imports " \
                     "accounts of type 'user' only"  # fmt: skip
            if rec.type.lower() == "user":
                reason += " (the type is not written in lower case)"
        elif name in problems_by_key:
            p = problems_by_key[name]
            reason = f"its account line (accounts line {p.line}) could not be read: {p.reason}"
        else:
            reason = "no account of that name in the accounts database"
        box = scan(root / rel, rel)
        out.append(Orphan(name, rel, box.messages, box.bytes, box.folders,
                          f"not imported by migration-import: {reason}",
                          f"create the user it belongs to on this host, then `maildirsync-import mailboxes DIR "
                          f"--maildir {name}=USER` copies it into USER's mailbox"))  # fmt: skip
    return out


def skips(inv, root: Path, passwd: Passwd) -> list[Skip]:
    """What the mail step of migration-import will skip, user by user."""
    out: list[Skip] = []
    for u in inv.users:
        if u.system:
            if u.mailbox.exists:
                out.append(Skip(u.name, "not_user_type", f"{u.name}'s mailbox ({u.mailbox.path}, "
                                f"{u.mailbox.messages} messages) is not imported: {u.name} is a 'system' account and "
                                "the mail step imports accounts of type 'user' only; `maildirsync-import mailboxes "
                                f"DIR -u {u.name}` copies it"))  # fmt: skip
            continue
        if not passwd(u.name):
            out.append(Skip(u.name, "not_in_passwd", f"{u.name} is not in this host's passwd (yet): the import "
                            "must create the account before its mail step, which otherwise skips it with "
                            f"'[ERROR] {u.name} skipped: not found in passwd database'"))  # fmt: skip
        if inv.domain and u.mailbox.exists:
            dest = Path(inv.dest_root) / f"{u.name}@{inv.domain}" / "Maildir"
            if dest.is_dir():
                want = message_keys(root / u.mailbox.path)
                missing = len(want - message_keys(dest))
                if not missing:
                    out.append(Skip(u.name, "destination_copied", f"{dest} already holds the backup's "
                                    f"{plural(len(want), 'message')} (as `maildirsync-import mailboxes` leaves it): the mail step "
                                    "skips it with a [WARNING] 'destination already exists', which is expected",
                                    expected=True))  # fmt: skip
                else:
                    out.append(Skip(u.name, "destination_exists", f"{dest} already exists and lacks {missing} of the "
                                    f"{len(want)} messages of the backup: the mail step skips it with a [WARNING] "
                                    f"and does not import them; `maildirsync-import mailboxes DIR -u {u.name}` "
                                    "copies them", blocking=True))  # fmt: skip
    return out


# --------------------------------------------------------------------------- the host


def installed(packages: list[str]) -> dict[str, bool | None]:
    """Is each RPM package installed? ``None`` when this host has no ``rpm`` to ask."""
    exe = shutil.which("rpm")
    out: dict[str, bool | None] = {}
    for p in packages:
        if exe is None:
            out[p] = None
            continue
        try:
            rc = subprocess.run([exe, "-q", "--quiet", p], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=60).returncode  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            out[p] = None
            continue
        out[p] = rc == 0
    return out


def after_import(users: list[dict], domain: str | None, dest_root: str, passwd: Passwd) -> list[str]:
    """After the import: each ``type=user`` account of the backup (``users``: name, system, messages, exists)
    that has no account or no mailbox here."""
    out = []
    for u in users:
        if u["system"]:
            continue
        mail = f"; its mail ({plural(u['messages'], 'message')}) was not imported" if u["messages"] else ""
        dest = Path(dest_root) / f"{u['name']}@{domain}" / "Maildir" if domain else None
        if not passwd(u["name"]):
            if dest is not None and dest.is_dir():
                mail = f"; its mailbox is at {dest} (copied before the import): create the account to use it"
            out.append(f"{u['name']}: not in this host's passwd: the import did not create the account{mail}")
            continue
        if dest is not None and u["exists"]:
            if not dest.is_dir():
                out.append(f"{u['name']}: no mailbox at {dest}{mail}; `maildirsync -s HOST -u {u['name']}` "
                           "fetches it from the source once the mailbox exists")  # fmt: skip
    return out

"""Builders for the importer tests: SME-like backup trees and archives.

Nothing is read from outside the test's own temporary directory. (A module of
its own, with a name unique in the test tree, so tests can import it.)
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

MAIL_MTIME = 1_300_000_000  # 2011-03-13: the mails' dates must survive the explode

ACCOUNTS = r"""# e-smith accounts database -- written by the tests
# (comments and blank lines are ignored)

admin=system|FirstName|Local|LastName|Administrator|PasswordSet|yes
root=system|FirstName|root|LastName|user
shared=system|Visible|internal
www=system|FirstName|web|LastName|server
alice=user|FirstName|Alice|LastName|Smith|EmailForward|both|ForwardAddress|alice@elsewhere.test|PasswordSet|yes
bob=user|FirstName|Bob|LastName|O\|Brien|Description|line one\nline two|EmailForward|local|ForwardAddress|
carol=user|FirstName|Carol|LastName|NoMail|EmailForward|forward|ForwardAddress|carol@out.test
staff=group|Description|Staff members|Members|alice,bob
empty=group|Description|Nobody here|Members|
info=pseudonym|Account|alice|Visible|internal
sales=pseudonym|Account|info
ghost=pseudonym|Account|nobody
primary=ibay|Name|Primary i-bay|Group|admin
"""

# An accounts database as a new user met it: lines not in canonical form, unknown types, broken escapes,
# and one account line the old parser dropped without a word (jdoe's: no '=').
HOSTILE_ACCOUNTS = ACCOUNTS + r"""  # an indented comment: a comment, as for NethServer's reader
jdoe user|FirstName|John|LastName|Doe
spaced = user|FirstName|Spaced|LastName|Key
Upper=User|FirstName|Upper|LastName|Case
legacy=mailbox|Description|an old kind of record
broken=user|FirstName|Bro\ken|LastName|Esc\
odd=user|FirstName
=nokey|FirstName|Nobody
carol=user|FirstName|Carol|LastName|Again|EmailForward|forward|ForwardAddress|carol@out.test
"""

CONFIGURATION = r"""# e-smith configuration database
DomainName=example.com
SystemName=sme
qpsmtpd=service|Authentication|enabled|TCPPort|25|access|public|status|enabled|TLS|enabled
sqpsmtpd=service|TCPPort|465|access|public|status|enabled
uqpsmtpd=service|TCPPort|587|access|public|status|enabled
imap=service|TCPPort|143|access|private|status|enabled
imaps=service|TCPPort|993|access|public|status|enabled
pop3=service|TCPPort|110|access|private|status|disabled
pop3s=service|TCPPort|995|access|public|status|enabled
spamassassin=service|status|enabled|SortSpam|enabled|MessageRetentionTime|15|Sensitivity|medium
"""

DOMAINS = r"""example.com=domain|Content|Primary|Description|Primary domain|Nameservers|internal
other.org=domain|Content|Primary|Description|A second domain\|with a pipe
"""


def write(path: Path, text: str | bytes, mtime: int | None = None, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    if mode is not None:
        path.chmod(mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def add_messages(maildir: Path, folder: str = "", cur: int = 0, new: int = 0, size: int = 100) -> None:
    base = maildir / folder if folder else maildir
    for sub in ("cur", "new", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    if folder:
        write(base / "maildirfolder", "")
    for i in range(cur):
        write(base / "cur" / f"{1000 + i}.M{i}P1.sme,S={size}:2,S", b"x" * size, MAIL_MTIME)
    for i in range(new):
        write(base / "new" / f"{2000 + i}.M{i}P1.sme,S={size}", b"y" * size, MAIL_MTIME)


def build_sme_tree(root: Path, accounts: str = ACCOUNTS) -> Path:
    """An exploded SME 8/9 full backup, small but with every kind of record."""
    db = root / "home/e-smith/db"
    write(db / "accounts", accounts)
    write(db / "configuration", CONFIGURATION)
    write(db / "domains", DOMAINS)
    users = root / "home/e-smith/files/users"
    alice = users / "alice/Maildir"
    add_messages(alice, cur=2, new=1)
    add_messages(alice, ".Sent", cur=1)
    write(alice / "tmp" / "999.inprogress", b"z" * 50)  # tmp/ is not mail
    write(alice / "dovecot.index.cache", b"c" * 500)  # not a message
    write(alice / "cur" / ".hidden", b"h")  # dot files are not messages
    add_messages(users / "bob/Maildir", cur=1, size=1000)
    add_messages(root / "home/e-smith/Maildir", cur=2, size=10)  # admin's
    write(root / "etc/e-smith/templates-custom/etc/postfix/main.cf/10custom", "# custom\n")
    write(root / "etc/e-smith/templates-user-custom/.qmail/20forward", "# user custom\n")
    write(root / "root/.ssh/authorized_keys", "ssh-rsa AAAA source-key\n")
    write(root / "etc/passwd", "root:x:0:0::/root:/bin/bash\n")
    return root


def tar_of_tree(tree: Path, out: Path, mode: str = "w:gz") -> Path:
    with tarfile.open(out, mode) as tar:
        tar.add(tree, arcname=".")
    return out


# --------------------------------------------------------------------------- hostile archives


@dataclass
class M:
    """One member to put in a test archive."""

    name: str
    data: bytes | None = b"data"
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    mode: int = 0o644
    mtime: int = MAIL_MTIME


def make_tar(path: Path, members: list[M], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tar:
        for m in members:
            ti = tarfile.TarInfo(m.name)
            ti.type = m.type
            ti.linkname = m.linkname
            ti.mode = m.mode
            ti.mtime = m.mtime
            if m.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                ti.devmajor, ti.devminor = 1, 3
            if m.type == tarfile.REGTYPE and m.data is not None:
                ti.size = len(m.data)
                tar.addfile(ti, io.BytesIO(m.data))
            else:
                tar.addfile(ti)
    return path




def build_hostile_tree(root: Path) -> Path:
    """The SME tree with HOSTILE_ACCOUNTS, and Maildirs that no type=user account owns: jdoe's (its line is
    not a record), Upper's (type 'User'), legacy's (type 'mailbox'), www's (a system account), and one with
    no account at all (gone)."""
    build_sme_tree(root, HOSTILE_ACCOUNTS)
    users = root / "home/e-smith/files/users"
    add_messages(users / "jdoe/Maildir", cur=3, new=1)
    add_messages(users / "jdoe/Maildir", ".Sent", cur=2)
    add_messages(users / "Upper/Maildir", cur=1)
    add_messages(users / "legacy/Maildir", cur=2)
    add_messages(users / "www/Maildir", cur=1)
    add_messages(users / "gone/Maildir", new=2)
    add_messages(users / "spaced/Maildir", cur=1)
    (users / "nomaildir").mkdir(parents=True)  # a home without a Maildir: nothing to report
    return root

"""A realistic mailbox history, built over IMAP, shared by the harness and end-to-end tests.

Every message body is unique (its Message-ID and text carry a tag), so a message can be
recognised by its body hash within a folder even where its UID is not known in advance.
"""
from __future__ import annotations

import imaplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from . import snapshot as s

USERS = {"alice": "alice-secret", "bob": "bob-secret"}

CAFE = "Caf&AOk-"  # "Café" in modified UTF-7, as clients send it


def make_message(tag: str, *, when: datetime | None = None, extra_kb: int = 0,
                 eight_bit: bool = False) -> bytes:
    """An RFC 5322 message with CRLF line ends, unique by `tag`."""
    when = when or datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    text = f"Hello, this is message {tag}.\r\n"
    if eight_bit:
        text += "Grüße aus Köln, ça va très bien.\r\n"
    if extra_kb:
        # A line-wrapped base64-looking attachment makes a multi-block file.
        line = (tag.replace("-", "") + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 3)[:72]
        text += "\r\n".join(line for _ in range(extra_kb * 1024 // 74)) + "\r\n"
    headers = (
        f"From: Sender {tag} <sender@example.org>\r\n"
        f"To: user@example.net\r\n"
        f"Subject: test {tag}\r\n"
        f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        f"Message-ID: <{tag}@maildirsync.test>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n"
    )
    return (headers + "\r\n" + text).encode("utf-8")


def _date(n: int) -> datetime:
    """Distinct, old INTERNALDATEs, whole seconds (Maildir keeps them as file mtimes)."""
    return datetime(2019, 1, 1, 8, 0, 0, tzinfo=timezone.utc) + timedelta(days=37 * n, seconds=n)


@dataclass
class Prepared:
    """Where the named messages of the history ended up: label -> (folder, uid)."""

    refs: dict[str, tuple[str, int]] = field(default_factory=dict)

    def __getitem__(self, label: str) -> tuple[str, int]:
        return self.refs[label]


def prepare_alice(imap: imaplib.IMAP4) -> Prepared:
    """Folders, flags, keywords, copies, moves, expunges and renames, as a user makes them."""
    p = Prepared()
    for name in ("Sent", "Drafts", "Archive", "Archive.2019", CAFE, "Old Stuff",
                 "Work", "Work.Clients", "Scratch", "Projects.2024"):
        # Projects.2024 alone: its parent "Projects" is listed but \Noselect.
        s.create_folder(imap, name, subscribe=name not in ("Old Stuff", "Scratch"))

    def add(label, folder, n, flags=(), keywords=(), **kw):
        uid = s.append(imap, folder, make_message(label, when=_date(n), **kw),
                       flags=flags, keywords=keywords, internaldate=_date(n))
        p.refs[label] = (folder, uid)

    add("unseen", "INBOX", 1)
    add("seen", "INBOX", 2, flags=("\\Seen",))
    add("flagged", "INBOX", 3, flags=("\\Seen", "\\Flagged"))
    add("answered", "INBOX", 4, flags=("\\Seen", "\\Answered"), keywords=("$Forwarded",))
    add("labelled", "INBOX", 5, flags=("\\Seen",), keywords=("Work", "$Label1"))
    add("big", "INBOX", 6, flags=("\\Seen",), extra_kb=300)
    add("umlauts", "INBOX", 7, eight_bit=True)
    add("to-copy", "INBOX", 8, flags=("\\Seen",), keywords=("NonJunk",))
    add("to-move", "INBOX", 9, flags=("\\Seen", "\\Flagged"))
    add("to-expunge", "INBOX", 10, flags=("\\Seen",))
    add("sent-1", "Sent", 11, flags=("\\Seen",))
    add("sent-2", "Sent", 12, flags=("\\Seen",))
    add("sent-3", "Sent", 13, flags=("\\Seen",))
    add("draft", "Drafts", 14, flags=("\\Draft",))
    add("archived", "Archive.2019", 15, flags=("\\Seen",), keywords=("$Label2",))
    add("cafe", CAFE, 16, flags=("\\Seen",), eight_bit=True)
    add("work", "Work.Clients", 17, keywords=("Customer",))
    add("scratch", "Scratch", 18)
    add("project", "Projects.2024", 20, flags=("\\Seen",))
    add("last-in-sent", "Sent", 19, flags=("\\Seen",))

    # Later changes: flag and keyword edits are Maildir renames.
    s.store(imap, "INBOX", p["unseen"][1], add=("\\Flagged",))
    s.store(imap, "INBOX", p["labelled"][1], add=("$Label3",), remove=("Work",))
    s.store(imap, "INBOX", p["seen"][1], remove=("\\Seen",), add=("\\Answered",))

    uid = s.copy(imap, "INBOX", p["to-copy"][1], "Archive.2019")
    p.refs["copied"] = ("Archive.2019", uid)
    uid = s.move(imap, "INBOX", p["to-move"][1], CAFE)
    p.refs["moved"] = (CAFE, uid)
    del p.refs["to-move"]

    s.expunge(imap, "INBOX", p.refs.pop("to-expunge")[1])
    # Expunging the highest UID leaves UIDNEXT above the last message.
    s.expunge(imap, "Sent", p.refs.pop("last-in-sent")[1])

    # RENAME takes the children along: Work.Clients becomes Jobs.Clients.
    s.rename_folder(imap, "Work", "Jobs")
    p.refs["work"] = ("Jobs.Clients", p["work"][1])
    s.subscribe(imap, "Jobs")
    s.subscribe(imap, "Jobs.Clients")
    s.unsubscribe(imap, "Archive")

    s.delete_folder(imap, "Scratch")
    del p.refs["scratch"]

    # New mail still arriving: no flags, so it sits in new/ as \Recent.
    p.refs["fresh-1"] = ("INBOX", s.append(imap, "INBOX", make_message("fresh-1")))
    p.refs["fresh-2"] = ("INBOX", s.append(imap, "INBOX", make_message("fresh-2")))
    return p


def prepare_bob(imap: imaplib.IMAP4) -> Prepared:
    """A second, small user, so per-user trees are proven separate."""
    p = Prepared()
    s.create_folder(imap, "Sent", subscribe=True)
    for n, (folder, flags) in enumerate([("INBOX", ()), ("INBOX", ("\\Seen",)),
                                         ("Sent", ("\\Seen",))]):
        label = f"bob-{n}"
        uid = s.append(imap, folder, make_message(label, when=_date(40 + n)), flags=flags,
                       internaldate=_date(40 + n))
        p.refs[label] = (folder, uid)
    return p


def prepare_all(server) -> dict[str, Prepared]:
    prepared = {}
    for user, prepare in (("alice", prepare_alice), ("bob", prepare_bob)):
        with server.connect(user) as imap:
            prepared[user] = prepare(imap)
    return prepared


def work_on_destination(dst, prepared: dict) -> None:
    """Users after the MX switch: new mail, flag and keyword changes, an expunge, a subscribe."""
    p = prepared["alice"]
    s.deliver(dst, "alice", make_message("after-switch-dst"))
    with dst.connect("alice") as imap:
        s.append(imap, "Sent", make_message("sent-from-dst"), flags=("\\Seen",))
        s.store(imap, *p["flagged"], remove=("\\Flagged",))
        # New keyword on each side: their Maildir letters collide and must be mapped by name.
        s.store(imap, *p["answered"], add=("\\Flagged", "DstOnly"))
        s.expunge(imap, *p["umlauts"])
        s.subscribe(imap, "Old Stuff")


def keep_changing_source(src, prepared: dict) -> None:
    """The old server still receives mail and its users still read and file it."""
    p = prepared["alice"]
    s.deliver(src, "alice", make_message("after-switch-src"))
    s.deliver(src, "bob", make_message("bob-after-switch"))
    with src.connect("alice") as imap:
        s.append(imap, "Archive.2019", make_message("archived-later"), flags=("\\Seen",),
                 keywords=("$Label2",))
        s.store(imap, *p["answered"], add=("SrcOnly",), remove=("$Forwarded",))
        s.store(imap, *p["labelled"], add=("\\Flagged", "SrcOnly"))
        s.expunge(imap, *p["sent-2"])
        s.create_folder(imap, "Later", subscribe=True)
        s.append(imap, "Later", make_message("later-1"), flags=("\\Seen",))


def snapshot_all(server) -> dict[str, s.MailboxSnapshot]:
    snaps = {}
    for user in USERS:
        with server.connect(user) as imap:
            snaps[user] = s.take_snapshot(imap, user)
    return snaps

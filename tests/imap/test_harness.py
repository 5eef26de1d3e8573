"""The IMAP harness itself: two Dovecots over identical trees agree, and the comparer catches
every kind of difference. Without this, an end-to-end "equal" could mean a blind comparer."""
from __future__ import annotations

import dataclasses
import os
import subprocess

import pytest

from . import snapshot as s
from .dovecot import DovecotServer
from .scenario import CAFE, USERS, make_message, prepare_all, snapshot_all


def _maildir_files(server: DovecotServer, user: str) -> dict[str, list[str]]:
    """Message file names per folder dir: a rename here is a flag change on disk."""
    out = {}
    for dirpath, _dirs, files in os.walk(server.maildir(user)):
        if os.path.basename(dirpath) in ("cur", "new"):
            out[dirpath] = sorted(files)
    return out


def test_copied_tree_serves_the_same_mailbox_and_the_diff_sees_changes(dovecot_tmp, start_dovecot):
    first = start_dovecot("first", dovecot_tmp / "first")
    prepared = prepare_all(first)
    before = snapshot_all(first)

    alice = before["alice"]
    assert set(alice.folders) == {"INBOX", "Sent", "Drafts", "Archive", "Archive.2019", CAFE,
                                  "Old Stuff", "Jobs", "Jobs.Clients", "Projects", "Projects.2024"}
    assert alice.folder("Projects").attributes == ("\\Noselect",)
    # Dovecot's RENAME leaves the old names subscribed: stale entries a sync must carry too.
    assert alice.subscriptions == ("Archive.2019", CAFE, "Drafts", "Jobs", "Jobs.Clients",
                                   "Projects.2024", "Sent", "Work", "Work.Clients")
    inbox = alice.folder("INBOX")
    assert inbox.messages[prepared["alice"]["unseen"][1]].flags == ("\\Flagged",)
    labelled = inbox.messages[prepared["alice"]["labelled"][1]]
    assert (labelled.flags, labelled.keywords) == (("\\Seen",), ("$Label1", "$Label3"))
    assert alice.folder("Sent").uidnext > max(alice.folder("Sent").messages) + 1
    copied = alice.folder("Archive.2019").messages[prepared["alice"]["copied"][1]]
    assert copied.body_sha256 == inbox.messages[prepared["alice"]["to-copy"][1]].body_sha256
    assert all(m.internaldate.startswith(("2019", "2020", "2021", "2022", "2023"))
               for m in alice.folder("Sent").messages.values())

    second_root = dovecot_tmp / "second"
    subprocess.run(["cp", "-a", str(dovecot_tmp / "first"), str(second_root)], check=True)
    second = start_dovecot("second", second_root)
    s.assert_same_mailbox(before["alice"], snapshot_all(second)["alice"], ("first", "second"))
    s.assert_same_mailbox(before["bob"], snapshot_all(second)["bob"], ("first", "second"))

    # One flag changed on one side shows up as exactly that difference.
    folder, uid = prepared["alice"]["flagged"]
    with second.connect("alice") as imap:
        s.store(imap, folder, uid, remove=("\\Flagged",))
    after = snapshot_all(second)["alice"]
    assert s.diff_snapshots(before["alice"], after, ("first", "second")) == [
        f"folder 'INBOX' uid {uid} flags: first=('\\\\Flagged', '\\\\Seen') second=('\\\\Seen',)"
    ]
    with pytest.raises(AssertionError, match="flags"):
        s.assert_same_mailbox(before["alice"], after)

    # A folder deleted and re-created gets a new UIDVALIDITY: the comparer must say so.
    with second.connect("alice") as imap:
        s.delete_folder(imap, "Old Stuff")
        s.create_folder(imap, "Old Stuff")
    diff = s.diff_snapshots(after, snapshot_all(second)["alice"])
    assert len(diff) == 1 and diff[0].startswith("folder 'Old Stuff' uidvalidity:"), diff

    assert first.log_problems() == [] and second.log_problems() == []


def test_snapshot_changes_nothing_on_the_server(dovecot_tmp, start_dovecot):
    server = start_dovecot("ro", dovecot_tmp / "ro")
    with server.connect("alice") as imap:
        unseen = s.append(imap, "INBOX", make_message("never-read"))
        s.append(imap, "INBOX", make_message("read"), flags=("\\Seen",))
    files_before = _maildir_files(server, "alice")
    first = snapshot_all(server)["alice"]
    second = snapshot_all(server)["alice"]
    assert first == second
    assert first.folder("INBOX").messages[unseen].flags == ()
    # EXAMINE + BODY.PEEK[]: not even new/ -> cur/ moves, which a SELECT would make.
    assert _maildir_files(server, "alice") == files_before
    assert any(path.endswith("new") and names for path, names in files_before.items())


def _sample() -> s.MailboxSnapshot:
    msg = s.MessageState(uid=3, flags=("\\Seen",), keywords=("$Label1",),
                         internaldate="2020-01-02T03:04:05+00:00", size=120, body_sha256="ab" * 32)
    inbox = s.FolderState("INBOX", (), uidvalidity=1700000000, uidnext=4, messages={3: msg})
    parent = s.FolderState("Parent", ("\\Noselect",))
    return s.MailboxSnapshot("alice", {"INBOX": inbox, "Parent": parent}, subscriptions=("INBOX",))


def _with_message(snap: s.MailboxSnapshot, **changes) -> s.MailboxSnapshot:
    inbox = snap.folders["INBOX"]
    msg = dataclasses.replace(inbox.messages[3], **changes)
    folders = dict(snap.folders, INBOX=dataclasses.replace(inbox, messages={3: msg}))
    return dataclasses.replace(snap, folders=folders)


def _with_folder(snap: s.MailboxSnapshot, **changes) -> s.MailboxSnapshot:
    folders = dict(snap.folders, INBOX=dataclasses.replace(snap.folders["INBOX"], **changes))
    return dataclasses.replace(snap, folders=folders)


@pytest.mark.parametrize("mutate, expected", [
    (lambda x: _with_message(x, flags=("\\Flagged", "\\Seen")), "folder 'INBOX' uid 3 flags:"),
    (lambda x: _with_message(x, keywords=()), "folder 'INBOX' uid 3 keywords:"),
    (lambda x: _with_message(x, internaldate="2020-01-02T03:04:06+00:00"),
     "folder 'INBOX' uid 3 internaldate:"),
    (lambda x: _with_message(x, size=121), "folder 'INBOX' uid 3 size:"),
    (lambda x: _with_message(x, body_sha256="cd" * 32), "folder 'INBOX' uid 3 body_sha256:"),
    (lambda x: _with_message(x, uid=4), "folder 'INBOX' uid 3: only in a"),
    (lambda x: _with_folder(x, uidvalidity=1700000001), "folder 'INBOX' uidvalidity:"),
    (lambda x: _with_folder(x, uidnext=5), "folder 'INBOX' uidnext:"),
    (lambda x: _with_folder(x, messages={}), "folder 'INBOX' uid 3: only in a"),
    (lambda x: dataclasses.replace(x, subscriptions=()), "subscription 'INBOX': only in a"),
    (lambda x: dataclasses.replace(x, folders={"INBOX": x.folders["INBOX"]}),
     "folder 'Parent': only in a"),
], ids=["flags", "keywords", "internaldate", "size", "body", "uid", "uidvalidity", "uidnext",
        "message-gone", "subscription", "folder-gone"])
def test_diff_names_each_kind_of_difference(mutate, expected):
    base = _sample()
    changed = mutate(base)
    # _with_message(uid=4) keeps the dict key 3 but renames the message: rekey it.
    inbox = changed.folders["INBOX"]
    if any(k != m.uid for k, m in inbox.messages.items()):
        changed = _with_folder(changed, messages={m.uid: m for m in inbox.messages.values()})
    assert base != changed
    diff = s.diff_snapshots(base, changed)
    assert diff and diff[0].startswith(expected), diff
    assert s.diff_snapshots(base, _sample()) == []


@pytest.mark.parametrize("line, is_problem", [
    ("Nov 28 10:45:37 imap(alice)<1><x>: Error: open(/m/cur/1) failed: Permission denied", True),
    ("Nov 28 10:45:37 imap(alice)<1><x>: Error: Maildir /m: UIDVALIDITY changed (1 -> 2)", True),
    ("Nov 28 10:45:37 imap(alice)<1><x>: Warning: Maildir /m: Expunged message reappeared, "
     "giving a new UID (old uid=3, file=x)", True),
    ("Nov 28 10:45:37 imap(alice)<1><x>: Warning: /m/dovecot-uidlist: Duplicate file entry at "
     "line 4: x (uid 3 -> 9)", True),
    ("Nov 28 10:45:37 master: Panic: file x: assertion failed", True),
    ("Nov 28 10:45:37 master: Fatal: bind(127.0.0.1, 1) failed", True),
    ("Nov 28 10:45:37 imap-login: Info: Login: user=<alice>, method=PLAIN", False),
    ("Nov 28 10:45:37 master: Warning: Killed with signal 15 (by pid=1 uid=0 code=kill)", False),
])
def test_log_problems_flags_errors_and_renumbering(tmp_path, line, is_problem):
    server = DovecotServer(workdir=tmp_path, mail_root=tmp_path / "mail", users=dict(USERS))
    server.log_path.write_text(f"{line}\n")
    assert server.log_problems() == ([line] if is_problem else [])


@pytest.mark.parametrize("data, expected", [
    ([b'(\\HasNoChildren) "." INBOX'], [("INBOX", ("\\HasNoChildren",))]),
    ([b'(\\HasNoChildren) "." "Old Stuff"'], [("Old Stuff", ("\\HasNoChildren",))]),
    ([b'() "." "say \\"hi\\" \\\\ bye"'], [('say "hi" \\ bye', ())]),
    ([b'(\\Noselect \\HasChildren) "." Projects'],
     [("Projects", ("\\HasChildren", "\\Noselect"))]),
    ([(b'(\\HasNoChildren) "." {8}', b"odd\tname"), b""], [("odd\tname", ("\\HasNoChildren",))]),
    ([b'(\\Noinferiors) NIL Caf&AOk-'], [("Caf&AOk-", ("\\Noinferiors",))]),
    ([None], []),
], ids=["atom", "quoted", "escaped", "noselect", "literal", "nil-delimiter", "empty"])
def test_list_responses_parse(data, expected):
    assert s._parse_list(data) == expected

"""Issue 9: every IMAP client keeps its UIDs (DESIGN.md §3, "The UID invariant"), shown with two real
Dovecots compared over IMAP.

Before the switch, while the destination holds only what maildirsync placed, every source UID names the
same message (the same body) on the destination and the destination has no UID the source lacks: even
when an administrator browses the destination between syncs (its Dovecot rewrites the uidlist and numbers
what the list does not name), with version 1 uidlists on the source (SME 8's Dovecot 1.0), and on
NethServer's import path (the backup's Maildirs moved into place with their old uidlist and index files).
After the switch the destination's numbering is only extended, and the messages that could not keep the
source's UID are counted. A destination Dovecot taking APPENDs while maildirsync writes into the same
folders loses no assignment. Every Dovecot log stays clean (no renumbering, no UIDVALIDITY change, no error).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from . import snapshot as s
from .dovecot import DovecotServer, chown_tree, ensure_mail_user
from .oracle import selectable
from .scenario import USERS, make_message, prepare_all, snapshot_all
from .test_dovecot_e2e import SYNC_TIMEOUT, _assert_logs_clean, _maildirsync, _tree_state


class Pair:
    """A source and a destination Dovecot, and maildirsync between their trees."""

    def __init__(self, src: DovecotServer, dst: DovecotServer, root: Path):
        self.src, self.dst = src, dst
        self.src_root, self.dst_root, self.state = src.mail_root, dst.mail_root, root / "state"

    def sync(self) -> dict:
        before = _tree_state(self.src_root)
        cmd = [_maildirsync(), "sync", str(self.src_root), str(self.dst_root), "--state-dir", str(self.state),
               "--create", "--json", "--max-delete", "100"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=SYNC_TIMEOUT)
        print(f"$ {' '.join(cmd)}\n{r.stdout}{r.stderr}")
        assert r.returncode == 0, r.stdout + r.stderr
        assert _tree_state(self.src_root) == before, "the sync changed the source tree"
        _, uid, gid = ensure_mail_user()
        chown_tree(self.dst_root, uid, gid)
        return json.loads(r.stdout)

    def sync_from_version_1(self) -> dict:
        """SME 8: the source's Dovecot 1.0 keeps version 1 files. Ours (2.3) would rewrite them on opening
        a folder, so it is stopped, the files are written back as version 1, and it syncs from that."""
        self.src.stop()
        to_version_1(self.src_root)
        try:
            return self.sync()
        finally:
            self.src.start()


@pytest.fixture
def pair(dovecot_tmp, start_dovecot) -> Pair:
    return Pair(start_dovecot("src", dovecot_tmp / "src"), start_dovecot("dst", dovecot_tmp / "dst"), dovecot_tmp)


# --- what a client sees ----------------------------------------------------------------------------------


def browse(server: DovecotServer) -> dict:
    """An administrator testing the destination: SELECT and FETCH of every folder of every user (the
    destination's Dovecot rewrites version 1 lists and numbers what they do not name). Then a snapshot."""
    for user in USERS:
        with server.connect(user) as imap:
            for name, attrs in s.list_folders(imap).items():
                if any(a.lower() in ("\\noselect", "\\nonexistent") for a in attrs):
                    continue
                s.select(imap, name)
                imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER])")
                imap.close()
    return snapshot_all(server)


def same_uids(src: dict, dst: dict) -> list:
    """Before the switch: per folder, every source UID names the same body on the destination, the
    destination has no UID the source lacks, and UIDVALIDITY and UIDNEXT are the source's."""
    problems = []
    for user in USERS:
        for name, sf in selectable(src[user]).items():
            df = dst[user].folders.get(name)
            if df is None:
                problems.append(f"{user} {name}: missing on the destination")
                continue
            if (sf.uidvalidity, sf.uidnext) != (df.uidvalidity, df.uidnext):
                problems.append(f"{user} {name}: UIDVALIDITY/UIDNEXT source {sf.uidvalidity}/{sf.uidnext}, "
                                f"destination {df.uidvalidity}/{df.uidnext}")
            for uid, m in sf.messages.items():
                d = df.messages.get(uid)
                if d is None or d.body_sha256 != m.body_sha256:
                    problems.append(f"{user} {name}: source UID {uid} names "
                                    f"{'nothing' if d is None else 'another message'} on the destination")
            for uid in sorted(set(df.messages) - set(sf.messages)):
                problems.append(f"{user} {name}: destination UID {uid} is not on the source")
    return problems


def to_version_1(root: Path) -> None:
    """Every dovecot-uidlist under root rewritten as Dovecot 1.0 writes it, same numbering (the
    server that owns root is stopped)."""
    for path in root.rglob("dovecot-uidlist"):
        lines = path.read_bytes().split(b"\n")
        head = dict((f[:1], f[1:]) for f in lines[0].split()[1:])
        names = {}
        for sub in ("cur", "new"):
            for n in os.listdir(os.fsencode(path.parent / sub)):
                names[n.split(b":")[0]] = n
        out, last = [], 0
        for line in lines[1:]:
            if line:
                uid, _, name = line.partition(b":")
                base = name.split(b":")[0]
                out.append(uid.split()[0] + b" " + names.get(base, base))
                last = int(uid.split()[0])
        # Version 3 lets lines run past N (Dovecot appends without rewriting the header); version 1 does not.
        head_line = b"1 %s %d" % (head[b"V"], max(int(head[b"N"]), last + 1))
        path.write_bytes(b"\n".join([head_line] + out) + b"\n")
        os.chown(path, *ensure_mail_user()[1:])


def mda_deliver(root: Path, user: str, message: bytes, folder: str = "") -> Path:
    """Mail put into new/ by a delivery agent, as qmail does on SME: no server has numbered it yet."""
    d = root / user / "Maildir" / folder / "new"
    name = f"{int(time.time())}.M{time.time_ns() % 10**6}P{os.getpid()}Q{len(os.listdir(d))}.mda"
    p = d / name
    p.write_bytes(message)
    os.chown(p, *ensure_mail_user()[1:])
    return p


_n = [0]


def msg(tag: str) -> bytes:
    _n[0] += 1
    return make_message(f"{tag}-{_n[0]}")


def change_source(pair: Pair, rnd: int) -> None:
    """The old server keeps working: three messages in, one of them expunged, two more; a move; a read."""
    uids = [s.deliver(pair.src, "alice", msg(f"r{rnd}-in")) for _ in range(3)]
    mda_deliver(pair.src_root, "alice", msg(f"r{rnd}-mda"))
    with pair.src.connect("alice") as imap:
        s.expunge(imap, "INBOX", uids[1])
    for _ in range(2):
        s.deliver(pair.src, "alice", msg(f"r{rnd}-more"))
    s.deliver(pair.src, "bob", msg(f"r{rnd}-bob"))
    with pair.src.connect("alice") as imap:
        s.move(imap, "INBOX", uids[0], "Archive.2019")
        s.store(imap, "INBOX", uids[2], add=("\\Seen",))
        s.append(imap, "Sent", msg(f"r{rnd}-sent"), flags=("\\Seen",))


# --- before the switch ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 1], ids=["source-version-3", "source-version-1"])
def test_each_source_uid_names_the_same_message_while_the_destination_is_browsed(pair, version):
    prepare_all(pair.src)
    for rnd in range(3):
        if rnd:
            change_source(pair, rnd)
        src = snapshot_all(pair.src)
        pair.sync_from_version_1() if version == 1 else pair.sync()
        dst = browse(pair.dst)
        problems = same_uids(src, dst)
        assert not problems, f"round {rnd}:\n  " + "\n  ".join(problems)
    _assert_logs_clean(pair.src, pair.dst)


def test_a_message_the_destination_numbered_first_takes_the_source_uid_after_all(pair):
    """The destination's Dovecot numbers a message the source has not numbered yet; the source then gives
    that UID to another message. The next sync makes the destination say what the source says, and its
    index is rebuilt from the list (no client uses it yet): no 'reappeared', no renumbering of others."""
    prepare_all(pair.src)
    pair.sync()
    browse(pair.dst)
    body = msg("race-x")
    x = mda_deliver(pair.src_root, "alice", body)
    pair.sync()  # x goes over unnumbered
    before = browse(pair.dst)  # the destination numbers x itself
    x_hash = hashlib.sha256(body).hexdigest()
    x_uid_there = {m.body_sha256: u for u, m in before["alice"].folder("INBOX").messages.items()}[x_hash]
    hidden = x.with_name("hidden")
    x.rename(hidden)  # the source's server numbers another message first...
    s.deliver(pair.src, "alice", msg("race-y"))
    hidden.rename(x)  # ...then x
    src = snapshot_all(pair.src)
    x_uid_here = {m.body_sha256: u for u, m in src["alice"].folder("INBOX").messages.items()}[x_hash]
    assert x_uid_here != x_uid_there  # the case is made: the two servers numbered x differently
    pair.sync()
    dst = browse(pair.dst)
    problems = same_uids(src, dst)
    assert not problems, "\n  ".join(problems)
    _assert_logs_clean(pair.src, pair.dst)


@pytest.mark.parametrize("version", [1, 3], ids=["backup-version-1", "backup-version-3"])
def test_nethserver_import_path_then_source_changes(pair, version):
    """migration-import moves the backup's Maildirs into place with their dovecot-uidlist and Dovecot's
    index files; maildirsync starts with no index (it adopts what is there) while the source went on."""
    prepare_all(pair.src)
    pair.src.stop()
    if version == 1:
        to_version_1(pair.src_root)
    for user in USERS:  # the backup, moved into place as migration-import does (index files included)
        shutil.copytree(pair.src_root / user, pair.dst_root / user, symlinks=True)
    chown_tree(pair.dst_root, *ensure_mail_user()[1:])
    pair.src.start()
    with pair.src.connect("alice") as imap:
        gone = s.append(imap, "INBOX", msg("in-backup-then-expunged"))  # not in the backup: numbered after it
    change_source(pair, 1)
    with pair.src.connect("alice") as imap:  # a message that is in the backup, expunged on the source since
        uid_of = {m.body_sha256: u for u, m in s.take_snapshot(imap, "alice").folder("Sent").messages.items()}
        s.expunge(imap, "Sent", min(uid_of.values()))
        s.expunge(imap, "INBOX", gone)
    src = snapshot_all(pair.src)
    rep = pair.sync_from_version_1() if version == 1 else pair.sync()
    dst = browse(pair.dst)
    assert sum(u["counts"]["new"] for u in rep["users"]) > 0
    assert sum(u["counts"]["adopted"] for u in rep["users"]) > 15  # the backup's mail is adopted, not fetched
    problems = same_uids(src, dst)
    if version == 1:
        # A version 1 list: no Dovecot 2 has opened the folder here, so a message it lists that the source
        # numbered and no longer has is the source's, deleted there since the backup: deleted here too.
        assert not problems, "\n  ".join(problems)
    else:
        # A version 3 list says nothing of who numbered what: the backup's copy of a message expunged on
        # the source since cannot be told from mail delivered here, so it is kept, and said.
        assert problems == ["alice Sent: destination UID 1 is not on the source"], problems
        assert any("not placed by maildirsync" in w for u in rep["users"] for w in u["warnings"]), rep
    _assert_logs_clean(pair.src, pair.dst)


# --- after the switch ----------------------------------------------------------------------------------


def test_after_the_switch_the_destination_numbering_is_only_extended(pair):
    prepare_all(pair.src)
    pair.sync()
    browse(pair.dst)
    # The MX switch: mail delivered on the destination, one message expunged there.
    mine = s.deliver(pair.dst, "alice", msg("after-switch-1"))
    expunged = s.deliver(pair.dst, "alice", msg("after-switch-2"))
    with pair.dst.connect("alice") as imap:
        s.expunge(imap, "INBOX", expunged)
    d_switch = snapshot_all(pair.dst)
    # Stragglers on the source: the first two take UIDs the destination gave already.
    for i in range(5):
        s.deliver(pair.src, "alice", msg(f"straggler-{i}"))
    src = snapshot_all(pair.src)
    rep = pair.sync()
    dst = browse(pair.dst)

    inbox_src, inbox_dst, inbox_sw = (x["alice"].folder("INBOX") for x in (src, dst, d_switch))
    # What clients already know of the destination never changes.
    for uid, m in inbox_sw.messages.items():
        assert inbox_dst.messages[uid].body_sha256 == m.body_sha256, uid
    assert expunged not in inbox_dst.messages and mine in inbox_dst.messages
    # A message from the source keeps its UID, or gets one that names nothing on the source.
    by_hash = {m.body_sha256: uid for uid, m in inbox_dst.messages.items()}
    renumbered = 0
    for uid, m in inbox_src.messages.items():
        d_uid = by_hash[m.body_sha256]
        if d_uid != uid:
            renumbered += 1
            assert d_uid not in inbox_src.messages, f"source UID {uid} placed at {d_uid}, the source's UID of another message"
    assert renumbered == 2
    (alice,) = [u for u in rep["users"] if u["user"] == "alice"]
    assert alice["counts"]["renumbered"] == 2 and any("2 message(s) got a new UID" in w for w in alice["warnings"])
    # Nothing to do next time: nothing renumbered again.
    rep2 = pair.sync()
    assert all(u["counts"]["renumbered"] == 0 for u in rep2["users"])
    assert snapshot_all(pair.dst)["alice"] == dst["alice"]
    _assert_logs_clean(pair.src, pair.dst)


def test_a_destination_dovecot_taking_appends_while_maildirsync_writes(pair):
    """maildirsync places messages and rewrites the list under Dovecot's own lock: a live Dovecot taking
    APPENDs into the same folders meanwhile loses no assignment and logs no renumbering."""
    prepare_all(pair.src)
    pair.sync()
    browse(pair.dst)
    stop = threading.Event()
    appended: dict = {"INBOX": {}, "Sent": {}}
    errors = []

    def appender():
        try:
            with pair.dst.connect("bob") as imap:
                n = 0
                while not stop.is_set():
                    folder = ("INBOX", "Sent")[n % 2]
                    body = msg("appended")
                    appended[folder][s.append(imap, folder, body)] = hashlib.sha256(body).hexdigest()
                    n += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    t = threading.Thread(target=appender, daemon=True)
    t.start()
    try:
        for rnd in range(4):
            for i in range(6):
                s.deliver(pair.src, "bob", msg(f"while-{rnd}-{i}"))
            with pair.src.connect("bob") as imap:
                s.append(imap, "Sent", msg(f"sent-while-{rnd}"), flags=("\\Seen",))
            pair.sync()
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors
    assert sum(len(v) for v in appended.values()) > 10
    src, dst = snapshot_all(pair.src)["bob"], snapshot_all(pair.dst)["bob"]
    for folder, uids in appended.items():
        got = dst.folder(folder).messages
        for uid, h in uids.items():
            assert uid in got and got[uid].body_sha256 == h, f"{folder}: APPENDUID {uid} lost or renumbered"
    for folder in ("INBOX", "Sent"):
        have = {m.body_sha256 for m in dst.folder(folder).messages.values()}
        assert {m.body_sha256 for m in src.folder(folder).messages.values()} <= have, folder
    _assert_logs_clean(pair.src, pair.dst)

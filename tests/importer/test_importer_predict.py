"""Nothing dropped silently, and what migration-import will skip said before it runs (issue 11, parts 2-3):
every db line parsed or reported with its file and line, every Maildir of the backup owned by a reported
account or reported itself, admin's mailbox and type=user, passwd, destination Maildirs already there."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from importer import inspect as insp
from importer import predict
from importer_fixtures import add_messages, write

DB = "home/e-smith/db"


def passwd_file(tmp_path: Path, *users: str) -> Path:
    lines = ["root:x:0:0:root:/root:/bin/bash"] + [f"{u}:x:{1000 + i}:1000::/home/{u}:/bin/bash"
                                                     for i, u in enumerate(users)]  # fmt: skip
    return write(tmp_path / "passwd", "\n".join(lines) + "\n")


@pytest.fixture
def vmail(tmp_path) -> Path:
    d = tmp_path / "vmail"
    d.mkdir()
    return d


def test_every_maildir_of_the_backup_is_owned_by_a_reported_account_or_reported(hostile_tree, vmail):
    inv = insp.inspect_tree(hostile_tree, dest_root=str(vmail), packages=False)
    owned = {u.mailbox.path for u in inv.users if u.mailbox.exists}
    orphans = {o.path for o in inv.orphans}
    users_dir = hostile_tree / predict.USERS_DIR
    every = {f"{predict.USERS_DIR}/{d.name}/Maildir" for d in users_dir.iterdir() if (d / "Maildir").is_dir()}
    every.add("home/e-smith/Maildir")  # admin's
    assert owned | orphans == every and not owned & orphans
    reasons = {o.name: o.reason for o in inv.orphans}
    assert set(reasons) == {"jdoe", "Upper", "legacy", "www", "gone"}
    assert "(accounts line 18) could not be read: no '='" in reasons["jdoe"]
    assert "type 'User'" in reasons["Upper"] and "not written in lower case" in reasons["Upper"]
    assert "type 'mailbox'" in reasons["legacy"] and "type 'system'" in reasons["www"]
    assert "no account of that name" in reasons["gone"]
    assert all(r.startswith("not imported by migration-import") for r in reasons.values())
    jdoe = next(o for o in inv.orphans if o.name == "jdoe")
    assert (jdoe.messages, jdoe.folders) == (6, 2)
    assert "--maildir jdoe=USER" in jdoe.todo
    # an orphan with mail blocks `all`; the spaced-key user is a user (read the forgiving way), not an orphan
    assert {p.subject for p in inv.blocking if p.kind == "orphan_maildir"} == orphans
    assert "spaced" in {u.name for u in inv.users}


def test_every_db_problem_is_a_pitfall_with_file_and_line(hostile_tree, vmail):
    inv = insp.inspect_tree(hostile_tree, dest_root=str(vmail), packages=False)
    lines = {p.subject: p for p in inv.pitfalls if p.kind == "db_line"}
    assert set(lines) == {f"{DB}/accounts:{n}" for n in (18, 19, 22, 23, 24, 25)}
    assert {s for s, p in lines.items() if p.blocking} == {f"{DB}/accounts:18", f"{DB}/accounts:24"}  # no record
    assert "read as: spaced=user|FirstName|Spaced" in lines[f"{DB}/accounts:19"].message
    assert "unknown escape '\\k'" in lines[f"{DB}/accounts:22"].message
    assert "lone backslash" in lines[f"{DB}/accounts:22"].message
    assert "property 'FirstName' has no value" in lines[f"{DB}/accounts:23"].message
    assert "line 10 is overridden" in lines[f"{DB}/accounts:25"].message
    types = {p.subject: p.message for p in inv.pitfalls if p.kind == "unknown_type"}
    assert set(types) == {f"{DB}/accounts:20", f"{DB}/accounts:21"}
    assert "did you mean 'user'?" in types[f"{DB}/accounts:20"]


@pytest.mark.parametrize(
    "in_passwd, expect",
    [
        ((), {"alice", "bob", "carol", "broken", "odd", "spaced"}),
        (("alice", "bob"), {"carol", "broken", "odd", "spaced"}),
    ],
    ids=["nobody-yet", "some"],
)
def test_users_missing_from_passwd_are_predicted(hostile_tree, vmail, tmp_path, in_passwd, expect):
    inv = insp.inspect_tree(hostile_tree, dest_root=str(vmail), packages=False,
                            passwd=str(passwd_file(tmp_path, *in_passwd)))  # fmt: skip
    missing = {s.user for s in inv.skips if s.kind == "not_in_passwd"}
    assert missing == expect
    text = insp.render_text(inv)
    if not in_passwd:  # all of them: one line, not one per user
        assert "none of the 6 users is in this host's passwd yet" in text
    else:
        assert "skip: carol: carol is not in this host's passwd" in text
        assert "alice is not in this host's passwd" not in text


def test_admin_is_not_type_user_and_its_mailbox_is_predicted_skipped(sme_tree, vmail, tmp_path):
    inv = insp.inspect_tree(sme_tree, dest_root=str(vmail), packages=False,
                            passwd=str(passwd_file(tmp_path, "admin", "alice", "bob", "carol")))  # fmt: skip
    [adm] = [s for s in inv.skips if s.user == "admin"]
    assert adm.kind == "not_user_type" and "type 'user' only" in adm.message and "-u admin" in adm.message
    assert not adm.blocking  # `mailboxes` copies it
    assert [s.kind for s in inv.skips if s.user != "admin"] == []  # everyone else is imported


def test_admin_without_mail_is_no_prediction(sme_tree, vmail):
    shutil.rmtree(sme_tree / "home/e-smith/Maildir")
    inv = insp.inspect_tree(sme_tree, dest_root=str(vmail), packages=False)
    assert not [s for s in inv.skips if s.user == "admin"]


def copy_maildir(src: Path, dst: Path, drop: int = 0) -> None:
    shutil.copytree(src, dst)
    for p in sorted(dst.glob("cur/*"))[:drop]:
        p.unlink()


def test_destination_that_holds_the_backup_is_expected_one_that_lacks_mail_blocks(sme_tree, vmail):
    users = sme_tree / predict.USERS_DIR
    copy_maildir(users / "alice/Maildir", vmail / "alice@example.com/Maildir")
    # a flag changed on the copy (a rename) is the same message
    cur = vmail / "alice@example.com/Maildir/cur"
    first = sorted(cur.iterdir())[0]
    first.rename(cur / (first.name.rsplit(":", 1)[0] + ":2,FS"))
    copy_maildir(users / "bob/Maildir", vmail / "bob@example.com/Maildir", drop=1)
    inv = insp.inspect_tree(sme_tree, dest_root=str(vmail), packages=False)
    kinds = {s.user: s for s in inv.skips if s.kind.startswith("destination")}
    assert kinds["alice"].kind == "destination_copied" and kinds["alice"].expected and not kinds["alice"].blocking
    assert "which is expected" in kinds["alice"].message
    assert kinds["bob"].kind == "destination_exists" and kinds["bob"].blocking
    assert "lacks 1 of the 1 messages" in kinds["bob"].message and "-u bob" in kinds["bob"].message
    text = insp.render_text(inv)
    assert "expected: alice:" in text and "BLOCKING: bob:" in text


def test_cli_inspect_lists_orphans_predictions_and_blocking(cli, hostile_tree, vmail, tmp_path):
    r = cli("inspect", hostile_tree, "--dest-root", vmail, "--passwd", passwd_file(tmp_path, "alice"))
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "Maildirs that no user account owns (5):" in out
    assert "home/e-smith/files/users/jdoe/Maildir: 6 msgs" in out
    assert "`maildirsync-import mailboxes DIR --maildir jdoe=USER`" in out
    assert "What migration-import will not import (a prediction; passwd: " in out
    assert "BLOCKING [orphan_maildir] home/e-smith/files/users/gone/Maildir" in out
    assert f"BLOCKING [db_line] {DB}/accounts:18" in out
    d = json.loads(cli("inspect", "--json", hostile_tree, "--dest-root", vmail).stdout)
    assert {o["name"] for o in d["orphans"]} == {"jdoe", "Upper", "legacy", "www", "gone"}
    assert {s["kind"] for s in d["skips"]} >= {"not_user_type", "not_in_passwd"}


def test_features_installed_or_not_with_a_stand_in_rpm(sme_tree, vmail, standins, monkeypatch):
    """rpm -q answers for the features; one that is missing blocks."""
    monkeypatch.setenv("STANDIN_RPM_INSTALLED", "nethserver-directory nethserver-mail-server")
    inv = insp.inspect_tree(sme_tree, dest_root=str(vmail))
    state = {f.package: f.installed for f in inv.features}
    assert state == {"nethserver-directory": True, "nethserver-mail-server": True,
                     "nethserver-mail-filter": False, "nethserver-samba": False}  # fmt: skip
    assert {p.subject for p in inv.blocking if p.kind == "feature_missing"} == {"nethserver-mail-filter",
                                                                                "nethserver-samba"}  # fmt: skip
    assert "yum install nethserver-samba" in insp.render_text(inv)


def test_without_rpm_nothing_is_claimed(sme_tree, vmail, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    inv = insp.inspect_tree(sme_tree, dest_root=str(vmail))
    assert {f.installed for f in inv.features} == {None}
    assert not [p for p in inv.pitfalls if p.kind == "feature_missing"]


def test_missing_destination_root_blocks(sme_tree, tmp_path):
    inv = insp.inspect_tree(sme_tree, dest_root=str(tmp_path / "no-vmail"), packages=False)
    assert [p.kind for p in inv.blocking if p.kind == "no_dest_root"] == ["no_dest_root"]


def test_message_keys_ignore_flags_and_cache_files(tmp_path):
    a = tmp_path / "a"
    add_messages(a, cur=2, new=1)
    add_messages(a, ".Sent", cur=1)
    write(a / "dovecot.index.cache", "x")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    for p in (b / "new").iterdir():  # first read: new/x -> cur/x:2,S
        os.rename(p, b / "cur" / (p.name + ":2,S"))
    assert predict.message_keys(a) == predict.message_keys(b) and len(predict.message_keys(a)) == 4

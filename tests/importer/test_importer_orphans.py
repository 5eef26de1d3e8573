"""``mailboxes`` and the Maildirs no user account owns (issue 11, part 2): each is named in a note with what
to do, and copied when told which mailbox it belongs to (``--maildir NAME=USER``), into an index entry of
its own name, so that ``maildirsync -s`` (which syncs USER from the source's USER) never deletes it."""

from __future__ import annotations

import json

import pytest

from importer import mailboxes as mbx
from maildirsync import engine
from mdtools import snapshot

DOMAIN = "example.com"


@pytest.fixture
def run(cli, hostile_tree, tmp_path):
    vmail = tmp_path / "vmail"
    vmail.mkdir()

    def go(*extra):
        return cli("mailboxes", hostile_tree, "--dest-root", vmail, "--domain", DOMAIN, "--state-dir",
                   tmp_path / "state", "--owner", "keep", "--source-host", "192.0.2.7", "--json", *extra)  # fmt: skip

    return go, hostile_tree, vmail, tmp_path / "state"


def test_orphans_are_named_with_what_to_do_and_not_copied(run):
    go, tree, vmail, _ = run
    r = go()
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    notes = "\n".join(d["notes"])
    for name in ("jdoe", "Upper", "legacy", "www", "gone"):
        assert f"{name}: home/e-smith/files/users/{name}/Maildir" in notes, name
        assert f"`--maildir {name}=USER` copies it" in notes
    assert "is not imported by migration-import" in notes
    assert not any(p.name.startswith(("jdoe@", "gone@")) for p in vmail.iterdir())


def test_an_orphan_is_copied_into_the_mailbox_it_is_told(run):
    go, tree, vmail, state = run
    r = go("--maildir", "jdoe=john", "--maildir", "gone=gone")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    by_user = {u["user"]: u for u in d["users"]}
    assert by_user["jdoe"]["counts"]["new"] == 6 and by_user["gone"]["counts"]["new"] == 2
    src = tree / "home/e-smith/files/users/jdoe/Maildir"
    assert snapshot(vmail / f"john@{DOMAIN}/Maildir") == snapshot(src)
    assert any("jdoe: the Maildir home/e-smith/files/users/jdoe/Maildir" in n and f"john@{DOMAIN}" in n
               for n in d["notes"])  # fmt: skip
    # recorded under its own name: john's own sync from the source never sees these as its records
    index, _ = engine.state_dir_for(state, engine.index_key("192.0.2.7_22", vmail)).open_index(readonly=True)
    try:
        assert index.user_records(b"jdoe") and not index.user_records(b"john")
    finally:
        index.close()


@pytest.mark.parametrize(
    "item, says",
    [
        ("jdoe", "give NAME=USER"),
        ("jdoe=", "give NAME=USER"),
        ("jdoe=a/b", "give NAME=USER"),
        ("jdoe=john@elsewhere", "give NAME=USER"),
        ("alice=john", "alice is a user of the backup"),
        ("nobody=john", "is not a Maildir of the backup that no user owns"),
        ("jdoe=alice", "also receives alice's Maildir in this run"),
    ],
)
def test_bad_maildir_items_are_refused_before_anything_is_copied(run, item, says):
    go, _, vmail, _ = run
    r = go("--maildir", item)
    assert r.exit_code == 2, r.output
    assert says in r.stderr and "hint:" in r.stderr
    assert list(vmail.iterdir()) == []


def test_one_engine_job_per_mailbox_with_a_maildir_the_mapped_orphans_last(hostile_tree, tmp_path):
    vmail = tmp_path / "vmail"
    vmail.mkdir()
    s = mbx.prepare(hostile_tree, dest_root=vmail, domain=DOMAIN, state_base=tmp_path / "st", maildirs=["jdoe=jdoe"])
    assert [j.user for j in s.jobs] == ["admin", "alice", "bob", "spaced", "jdoe"]  # broken, odd: no Maildir
    assert all(isinstance(j, engine.UserJob) and j.create for j in s.jobs)

"""Issue 13 part 1: an index belongs to one source and one destination. Another destination, a changed
--dest-root, a recreated mailbox or a reinstalled host never inherit an index's history (which would make
every message they lack look deleted there, so that nothing is fetched and the run says "ok"); and when
most of what the index says we placed is gone, the run refuses and says what to do."""

from __future__ import annotations

import json
import shutil

import pytest

from maildirsync.engine import IDENTITY, VANISHED_MIN
from maildirsync.index import StateDir
from maildirsync.lab.corpus import SME8_ADMIN, SME8_USERS, CorpusSpec, generate
from mdtools import cli, messages, mkmaildir, snapshot
from sshfixtures import sshd_server  # noqa: F401  (fixture)

DOMAIN = "example.org"


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "src"
    generate(src, CorpusSpec(users=2, folders=2, messages=15, seed=5, layout="plain"), processes=1)
    return src


def sync(src, dst, state, *extra):
    p = cli("sync", src, dst, "--state-dir", state, "--create", "--json", *extra)
    assert "Traceback" not in p.stdout + p.stderr, p.stderr
    return p, json.loads(p.stdout) if p.stdout.startswith("{") else None


def total(rep, key):
    return sum(u["counts"][key] for u in rep["users"])


def in_source(src) -> int:
    return sum(len(v) for v in messages(src).values())


def test_a_second_destination_gets_everything(corpus, tmp_path):
    state = tmp_path / "state"
    p, rep = sync(corpus, tmp_path / "testdst", state)
    assert p.returncode == 0 and total(rep, "new") == in_source(corpus)
    p, rep = sync(corpus, tmp_path / "realdst", state, "-v")
    assert p.returncode == 0 and total(rep, "new") == in_source(corpus), rep
    assert snapshot(tmp_path / "realdst") == snapshot(corpus)


def test_a_recreated_mailbox_at_the_same_path_is_filled_again(corpus, tmp_path):
    dst, state = tmp_path / "dst", tmp_path / "state"
    sync(corpus, dst, state)
    user = sorted(p.name for p in corpus.iterdir())[0]
    shutil.rmtree(dst / user / "Maildir")
    mkmaildir(dst / user / "Maildir")  # as the mail server makes a new user's mailbox
    dry, rep = sync(corpus, dst, state, "-n")
    assert dry.returncode == 3  # the dry run says what the real run does, and writes nothing
    assert not (dst / user / "Maildir" / IDENTITY.decode()).exists()
    p, rep = sync(corpus, dst, state)
    assert p.returncode == 0
    (u,) = [u for u in rep["users"] if u["user"] == user]
    assert u["counts"]["new"] == in_source(corpus / user) > 0
    assert any("is not the one the index knows" in w for w in u["warnings"]), u
    assert snapshot(dst) == snapshot(corpus)
    p, rep = sync(corpus, dst, state)  # and from then on its history holds
    assert p.returncode == 0 and total(rep, "new") == 0 and all(u["status"] == "ok" for u in rep["users"])


def test_an_index_older_than_destination_identities_is_trusted(corpus, tmp_path):
    """An index written before destinations carried an identity holds for the destination it knows: the
    identity is written and nothing is fetched again."""
    dst, state = tmp_path / "dst", tmp_path / "state"
    sync(corpus, dst, state)
    (d,) = [p for p in state.iterdir() if (p / "index").is_dir()]
    idx, _ = StateDir(d).open_index(readonly=False)
    b = idx.batch()
    for user, st in idx.all_status().items():
        b.put_user(user, {k: v for k, v in st.items() if k != "dest_id"})
    b.commit()
    idx.close()
    for marker in dst.rglob(IDENTITY.decode()):
        marker.unlink()
    p, rep = sync(corpus, dst, state)
    assert p.returncode == 0 and total(rep, "new") == 0 and total(rep, "adopted") == 0, rep
    assert len(list(dst.rglob(IDENTITY.decode()))) == len(rep["users"])


def world(tmp_path):
    src = tmp_path / "sme"
    generate(src, CorpusSpec(users=2, folders=2, messages=12, seed=9, layout="sme8", domain=DOMAIN), processes=1)
    users = sorted(p.name for p in (src / SME8_USERS).iterdir()) + ["admin"]
    return src, users


def make_dest(root, users):
    for u in users:
        mkmaildir(root / f"{u}@{DOMAIN}" / "Maildir")


def remote(server, src, dest, state, *extra):
    p = cli("-s", server.host, "-p", server.port, "-i", server.client_key, "--known-hosts", server.known_hosts,
            "--state-dir", state, "--dest-root", dest, "--domain", DOMAIN, "--owner", "keep",
            "--users-dir", src / SME8_USERS, "--admin-maildir", src / SME8_ADMIN, "--json", *extra)  # fmt: skip
    assert "Traceback" not in p.stdout + p.stderr, p.stderr
    return p, json.loads(p.stdout)


def test_a_changed_dest_root_and_a_wiped_host_with_the_state_kept(sshd_server, tmp_path):  # noqa: F811
    src, users = world(tmp_path)
    state = tmp_path / "state"
    want = sum(len(v) for v in messages(src / SME8_USERS).values()) + sum(len(v) for v in messages(src / SME8_ADMIN).values())
    first, second = tmp_path / "vmail", tmp_path / "other-vmail"
    make_dest(first, users)
    p, rep = remote(sshd_server, src, first, state)
    assert p.returncode == 0 and total(rep, "new") == want
    # --dest-root changed: another index, everything fetched into the new root.
    make_dest(second, users)
    p, rep = remote(sshd_server, src, second, state)
    assert p.returncode == 0 and total(rep, "new") == want, rep
    # The destination host reinstalled, its mailboxes made again empty; /var/lib/maildirsync kept.
    shutil.rmtree(first)
    make_dest(first, users)
    p, rep = remote(sshd_server, src, first, state)
    assert p.returncode == 0 and total(rep, "new") == want, rep
    assert all(any("not the one the index knows" in w for w in u["warnings"]) for u in rep["users"])
    p, rep = remote(sshd_server, src, first, state)
    assert p.returncode == 0 and total(rep, "new") == 0 and all(u["status"] == "ok" for u in rep["users"])


@pytest.fixture
def one_box(tmp_path):
    """One user with a folder big enough for the vanished guard."""
    src = tmp_path / "src"
    generate(src, CorpusSpec(users=1, folders=1, messages=4 * VANISHED_MIN, seed=3, layout="plain"), processes=1)
    (user,) = [p.name for p in src.iterdir()]
    return src, user


def test_most_of_what_was_placed_gone_is_refused_with_what_to_do(one_box, tmp_path):
    src, user = one_box
    dst, state = tmp_path / "dst", tmp_path / "state"
    sync(src, dst, state)
    cur = dst / user / "Maildir" / "cur"
    files = sorted(cur.iterdir())
    for f in files[: len(files) * 3 // 4]:  # lost, the identity kept (a restore of an old copy, say)
        f.unlink()
    p, rep = sync(src, dst, state)
    assert p.returncode == 1
    (u,) = rep["users"]
    assert u["status"] == "failed" and "most of what maildirsync placed is gone" in u["reason"]
    assert f"--forget {user}" in u["reason"] and "--max-delete 100" in u["reason"]
    assert total(rep, "new") == 0 and len(list(cur.iterdir())) == len(files) - len(files) * 3 // 4
    # The administrator knows the destination lost them: fetched again.
    p, rep = sync(src, dst, state, "--forget", user)
    assert p.returncode == 0 and total(rep, "new") == len(files) * 3 // 4, rep
    assert snapshot(dst) == snapshot(src)


def test_deleted_there_on_purpose_is_accepted_with_max_delete_100(one_box, tmp_path):
    src, user = one_box
    dst, state = tmp_path / "dst", tmp_path / "state"
    sync(src, dst, state)
    cur = dst / user / "Maildir" / "cur"
    gone = sorted(cur.iterdir())[: 3 * VANISHED_MIN]
    for f in gone:
        f.unlink()
    assert sync(src, dst, state)[0].returncode == 1
    p, rep = sync(src, dst, state, "--max-delete", "100")
    assert p.returncode == 0 and total(rep, "new") == 0  # deleted on the destination: not brought back
    p, rep = sync(src, dst, state)
    assert p.returncode == 0 and rep["users"][0]["status"] == "ok" and not any(f.exists() for f in gone)

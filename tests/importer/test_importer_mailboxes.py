"""``maildirsync-import mailboxes``: copy the backup's Maildirs into the NethServer layout with the sync
engine, seed the index, and check that the next ``maildirsync -s`` from the live source (a real OpenSSH
sshd) transfers only what changed after the backup (issue 5, "Seeding")."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from importer import mailboxes as mbx
from importer_fixtures import CONFIGURATION, DOMAINS, tar_of_tree, write
from maildirsync import engine
from maildirsync.lab.corpus import CORPUS_END, SME8_ADMIN, SME8_USERS, CorpusSpec, folders_of, generate
from maildirsync.lab.scenarios import apply as mutate
from mdtools import cli as maildirsync_cli
from mdtools import snapshot
from sshfixtures import sshd_server  # noqa: F401  (fixture)

DOMAIN = "example.org"
BACKUP_TIME = 1_700_000_000  # directory mtimes as the archive carried them: well in the past
SPEC = CorpusSpec(users=3, folders=3, messages=12, seed=5, layout="sme8", domain=DOMAIN)
USERS = ["admin", "arossi", "hbianchi"]  # what SPEC generates, admin's Maildir in home/e-smith/Maildir


def accounts_db() -> str:
    lines = [
        "# accounts of the seeding tests",
        "admin=system|FirstName|Local|LastName|Administrator",
        "root=system|FirstName|root",
        "nomail=user|FirstName|No|LastName|Maildir",  # a user whose Maildir is not in the backup
    ]
    lines += [f"{u}=user|FirstName|{u}|LastName|Test" for u in USERS if u != "admin"]
    return "\n".join(lines) + "\n"


def maildir_of(root: Path, user: str) -> Path:
    return root / (SME8_ADMIN if user == "admin" else SME8_USERS / user / "Maildir")


def dest_of(dest: Path, user: str) -> Path:
    return dest / f"{user}@{DOMAIN}" / "Maildir"


def tree_state(root: Path) -> dict[str, tuple]:
    """Everything about a tree that copying must not change: every entry's type, mode, owner, size,
    mtime and content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            data = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else b""
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, data)
    return out


@pytest.fixture(scope="module")
def backup_archive(tmp_path_factory) -> tuple[Path, Path]:
    """An SME 8 source as it was when its full backup was taken, and that backup (smeserver.tgz)."""
    base = tmp_path_factory.mktemp("sme")
    src = base / "source"
    generate(src, SPEC, processes=1)
    write(src / "home/e-smith/db/accounts", accounts_db())
    write(src / "home/e-smith/db/configuration", CONFIGURATION.replace("example.com", DOMAIN))
    write(src / "home/e-smith/db/domains", DOMAINS.replace("example.com", DOMAIN))
    for dirpath, _dirs, _files in os.walk(src):
        os.utime(dirpath, (BACKUP_TIME, BACKUP_TIME))
    return src, tar_of_tree(src, base / "smeserver.tgz")


@pytest.fixture
def world(tmp_path, backup_archive, cli):
    """The live source (a copy of the backed-up source, to change), the exploded backup, an empty
    NethServer mail root and a state directory."""
    src, archive = backup_archive
    live = tmp_path / "live"
    shutil.copytree(src, live, symlinks=True)
    tree = tmp_path / "migration"
    r = cli("explode", archive, tree, "-q")
    assert r.exit_code == 0, r.output
    dest = tmp_path / "vmail"
    dest.mkdir()
    return live, tree, dest, tmp_path / "state"


def mailboxes(cli, world, *extra):
    _, tree, dest, state = world
    return cli("mailboxes", tree, "--dest-root", dest, "--domain", DOMAIN, "--state-dir", state, "--owner", "keep",
               *extra)  # fmt: skip


def report(r) -> dict:
    return json.loads(r.stdout)


def total(rep: dict, key: str) -> int:
    return sum(u["counts"][key] for u in rep["users"])


def messages_in(root: Path) -> tuple[int, int]:
    n = size = 0
    for p in root.rglob("*"):
        if p.parent.name in ("cur", "new") and p.is_file() and not p.name.startswith("."):
            n += 1
            size += p.stat().st_size
    return n, size


# --------------------------------------------------------------------------- copying


def test_copies_every_mailbox_admin_included_and_never_touches_the_tree(cli, world):
    _, tree, dest, state = world
    before = tree_state(tree)
    r = mailboxes(cli, world, "--json")
    assert r.exit_code == 0, r.output
    rep = report(r)
    assert [u["user"] for u in rep["users"]] == USERS
    for u in rep["users"]:
        assert u["status"] == "changed" and u["counts"]["new"] == messages_in(maildir_of(tree, u["user"]))[0] > 0
        assert u["counts"]["deleted"] == u["counts"]["failed"] == 0
    for u in USERS:
        assert snapshot(dest_of(dest, u)) == snapshot(maildir_of(tree, u)), u  # cache files and tmp/ aside
        assert not list(dest_of(dest, u).rglob("dovecot.index*"))
    assert any("nomail: no Maildir in the backup" in n for n in rep["notes"])
    assert any("adopts these messages" in n for n in rep["notes"])  # no --source-host: a local index
    assert rep["index"]["key"].startswith("local-") and rep["index"]["source_host"] is None
    assert tree_state(tree) == before  # copied, not consumed

    again = mailboxes(cli, world, "--json")
    assert again.exit_code == 0, again.output
    rep = report(again)
    assert {u["status"] for u in rep["users"]} == {"ok"}
    assert all(v == 0 for u in rep["users"] for v in u["counts"].values())
    assert tree_state(tree) == before


def test_seeded_folders_carry_no_directory_stamp(cli, world):
    """The backup's cur/new mtimes are no evidence about the live source's directories: none is kept."""
    _, _, dest, state = world
    assert mailboxes(cli, world, "--source-host", "192.0.2.7").exit_code == 0
    index, _ = engine.state_dir_for(state, engine.index_key("192.0.2.7_22", dest)).open_index(readonly=True)
    try:
        for u in USERS:
            folders = index.user_folders(u.encode())
            assert len(folders) == SPEC.folders and index.user_records(u.encode())
            assert all(st.dir_mtimes == {} for st in folders.values()), u
    finally:
        index.close()


def test_dry_run_changes_nothing(cli, world):
    _, tree, dest, state = world
    before = tree_state(tree)
    r = mailboxes(cli, world, "-n", "--source-host", "192.0.2.7")
    assert r.exit_code == 3, r.output  # as maildirsync -n: changes are pending
    assert "DRY RUN" in r.stdout and "would record" in r.stdout
    assert list(dest.iterdir()) == []
    sd = engine.state_dir_for(state, engine.index_key("192.0.2.7_22", world[2]))
    assert not (sd.index_path / "data.mdb").exists() and not (sd.path / mbx.MARKER).exists()
    assert tree_state(tree) == before


def test_only_the_named_users_with_the_owner_asked_for(cli, world):
    _, _, dest, _ = world
    r = mailboxes(cli, world, "-u", "admin", "--owner", "4321:4322", "--json")
    assert r.exit_code == 0, r.output
    assert [u["user"] for u in report(r)["users"]] == ["admin"]
    assert [p.name for p in dest.iterdir()] == [f"admin@{DOMAIN}"]
    box = dest / f"admin@{DOMAIN}"
    owned = [box, box / "Maildir", box / "Maildir/cur", *list((box / "Maildir/cur").iterdir())[:1]]
    assert [(p.stat().st_uid, p.stat().st_gid) for p in owned] == [(4321, 4322)] * len(owned)
    assert stat.S_IMODE(box.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "args, code, says",
    [
        (["mailboxes", "{tmp}/nowhere", "--domain", DOMAIN], 2, "no such directory"),
        (["mailboxes", "{tmp}", "--domain", DOMAIN], 2, "not an exploded"),
        (["mailboxes", "{tree}", "--dest-root", "{tmp}/novmail", "--domain", DOMAIN], 2, "nethserver-mail-server"),
        (["mailboxes", "{tree}", "--dest-root", "{dest}", "--domain", DOMAIN, "-u", "zed"], 2, "no such user"),
        (["mailboxes", "{tree}", "--dest-root", "{dest}", "--domain", DOMAIN, "--owner", "nosuchuser:x"], 2,
         "--owner"),
        (["mailboxes", "{tree}", "--dest-root", "{dest}", "--domain", DOMAIN, "--port", "70000"], 2, "not a TCP port"),
    ],
    ids=["missing-dir", "not-a-backup", "no-dest-root", "unknown-user", "bad-owner", "bad-port"],
)
def test_bad_input_is_one_message_and_exit_2(cli, world, tmp_path, args, code, says):
    _, tree, dest, state = world
    (tmp_path / "junk").write_text("x")
    argv = [a.format(tmp=tmp_path, tree=tree, dest=dest) for a in args] + ["--state-dir", str(state)]
    r = cli(*argv)
    assert r.exit_code == code, r.output
    assert says in r.stderr and "hint:" in r.stderr
    assert list(dest.iterdir()) == []


def test_no_domain_known_asks_for_one(cli, world, monkeypatch):
    monkeypatch.setattr(mbx.remote, "host_domain", lambda: None)
    _, tree, dest, state = world
    r = cli("mailboxes", tree, "--dest-root", dest, "--state-dir", state)
    assert r.exit_code == 2 and "--domain" in r.stderr and DOMAIN in r.stderr  # the backup's DomainName, as a hint


def test_an_index_in_use_is_exit_4_naming_its_holder(cli, world):
    _, _, dest, state = world
    held = engine.state_dir_for(state, engine.index_key("192.0.2.7_22", world[2]))
    held.acquire("maildirsync -s 192.0.2.7")
    try:
        r = mailboxes(cli, world, "--source-host", "192.0.2.7")
    finally:
        held.release()
    assert r.exit_code == 4, r.output
    assert "maildirsync -s 192.0.2.7" in r.stderr
    assert list(dest.iterdir()) == []


# --------------------------------------------------------------------------- seeding


def deliver_keeping_the_dir_mtime(live: Path, backup: Path) -> tuple[Path, int]:
    """A delivery into a cur/ that the scenarios left alone, after which the directory's mtime reads as in
    the backup (a change in the same second as the backup read it, on a clock of whole seconds). A stamp
    taken from the backup would hide it."""
    for user in USERS:
        for folder in folders_of(maildir_of(live, user)):
            cur = folder / "cur"
            twin = maildir_of(backup, user) / folder.relative_to(maildir_of(live, user)) / "cur"
            if cur.stat().st_mtime_ns != twin.stat().st_mtime_ns:
                continue  # touched by a scenario
            data = b"Subject: same second\r\n\r\nbody\r\n"
            name = f"{CORPUS_END + 7 * 86400}.M1P4999999Q1.sme8.example.org,S={len(data)},W={len(data) + 2}:2,S"
            (cur / name).write_bytes(data)
            os.utime(cur / name, (CORPUS_END + 7 * 86400,) * 2)
            old = twin.stat().st_mtime_ns
            os.utime(cur, ns=(old, old))
            return cur / name, len(data)
    raise AssertionError("every folder was touched: no place for the same-second delivery")


def sync_from_live(server, world, *extra):
    live, _, dest, state = world
    p = maildirsync_cli(
        "-s", server.host, "-p", server.port, "-i", server.client_key, "--known-hosts", server.known_hosts,
        "--state-dir", state, "--dest-root", dest, "--domain", DOMAIN, "--owner", "keep",
        "--users-dir", live / SME8_USERS, "--admin-maildir", live / SME8_ADMIN, "--json", *extra,
    )  # fmt: skip
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout)


def snap(root: Path, whole_seconds: bool, what: str = "all") -> dict:
    """snapshot(), with sub-second mtimes cut for SFTP v3 (whole seconds only), limited to the messages
    (``cur/``, ``new/``) or the control files if asked."""
    out = snapshot(root)
    if what != "all":
        out = {k: v for k, v in out.items() if (b"/cur/" in b"/" + k or b"/new/" in b"/" + k) == (what == "messages")}
    return {k: (v[0], v[1] // 10**9 if v[1] is not None else None, v[2]) for k, v in out.items()} if whole_seconds else out


def equal_to_live(world, whole_seconds: bool, what: str = "all", merged_subscriptions: bool = False) -> None:
    """The destination holds what the live source holds. A ``subscriptions`` file the engine found already
    there with no record of it is merged, not carried: same lines, its own mtime."""
    live, _, dest, _ = world
    for u in USERS:
        d, s = snap(dest_of(dest, u), whole_seconds, what), snap(maildir_of(live, u), whole_seconds, what)
        if merged_subscriptions:
            d, s = ({k: (v[0], 0, v[2]) if k == b"subscriptions" else v for k, v in x.items()} for x in (d, s))
        assert d == s, u


SEEDINGS = {
    "seeded-host-index-exec": (["host"], ()),
    "seeded-host-index-sftp": (["host"], ("--transport", "sftp")),
    "local-index-then-host-index": (["local", "host"], ()),  # the remedy the local seed's note gives
    "local-index-only": (["local"], ()),
}


@pytest.mark.parametrize("seeds, transport", SEEDINGS.values(), ids=SEEDINGS.keys())
def test_after_seeding_the_live_sync_transfers_only_what_changed(cli, world, sshd_server, seeds, transport):  # noqa: F811
    live, tree, dest, state = world
    host_args = ("--source-host", sshd_server.host, "--port", str(sshd_server.port))
    in_backup = sum(messages_in(maildir_of(tree, u))[0] for u in USERS)
    for i, seed in enumerate(seeds):
        r = mailboxes(cli, world, "--json", *(host_args if seed == "host" else ()))
        assert r.exit_code == 0, r.output
        rep = report(r)
        if i == 0:
            assert total(rep, "new") == in_backup
        else:  # already copied: only recorded, nothing copied again
            assert (total(rep, "new"), total(rep, "bytes"), total(rep, "adopted")) == (0, 0, in_backup)
        if seed == "local":
            assert any("run this again with --source-host" in n for n in rep["notes"])
        else:
            assert any(f"maildirsync -s {sshd_server.host} -p {sshd_server.port}" in n for n in rep["notes"])

    # The source lives on after the backup: flags change, mail arrives (one delivery in a directory whose
    # mtime reads as the backup's).
    flags = mutate("flags", live, "sme8", seed=2, step=1)
    new = mutate("new", live, "sme8", seed=3, step=2, fraction=0.05)
    _, extra_size = deliver_keeping_the_dir_mtime(live, tree)
    assert flags.flag_changes > 0 and new.added > 1

    rep = sync_from_live(sshd_server, world, *transport)
    got = {k: total(rep, k) for k in ("new", "renamed", "adopted", "moved", "deleted", "conflicts", "refetched",
                                      "failed", "bytes")}  # fmt: skip
    downloaded = {"new": new.added + 1, "bytes": new.added_bytes + extra_size}
    if seeds[-1] == "host":
        # Only the new mail is downloaded; a flag change is a rename (0 bytes); nothing else is touched.
        want = {**downloaded, "renamed": flags.flag_changes, "adopted": 0}
    else:
        # No record of the live source: what the backup brought is adopted in place, flags included.
        want = {**downloaded, "renamed": 0, "adopted": in_backup}
    assert got == {**want, "moved": 0, "deleted": 0, "conflicts": 0, "refetched": 0, "failed": 0}

    if seeds[-1] == "host":
        merged = seeds[0] == "local"  # the second seed found the first one's subscriptions: merged
        equal_to_live(world, whole_seconds=bool(transport), merged_subscriptions=merged)
        # Never backwards: seeding again from the (older) backup leaves the synced mailboxes alone.
        again = mailboxes(cli, world, "--json", *host_args)
        assert again.exit_code == 0, again.output
        rep = report(again)
        assert rep["users"] == []
        assert sum("newer than the backup" in n for n in rep["notes"]) == len(USERS)
        equal_to_live(world, whole_seconds=bool(transport), merged_subscriptions=merged)
        assert total(sync_from_live(sshd_server, world, *transport), "bytes") == 0
    else:
        # The messages end as on the source; the control files the live index has no record of are only
        # taken where they did not change since the backup, but dovecot-uidlist is merged whatever its
        # history (issue 9): it says what the live source's says, so every client keeps its UIDs.
        equal_to_live(world, whole_seconds=False, what="messages")
        stale = []
        for u in USERS:
            for rel in snap(dest_of(dest, u), False, "controls"):
                got_ = (dest_of(dest, u) / os.fsdecode(rel)).read_bytes()
                if got_ != (maildir_of(live, u) / os.fsdecode(rel)).read_bytes():
                    assert got_ == (maildir_of(tree, u) / os.fsdecode(rel)).read_bytes()
                    stale.append(rel.rsplit(b"/", 1)[-1])
        assert b"dovecot-uidlist" not in stale


def test_seeding_again_before_any_live_sync_is_allowed(cli, world):
    """Running the import again (after a partial or interrupted one) is not stepping back: it completes."""
    _, tree, dest, state = world
    first = mailboxes(cli, world, "--source-host", "192.0.2.7", "-u", "arossi")
    assert first.exit_code == 0, first.output
    marker = json.loads((engine.state_dir_for(state, engine.index_key("192.0.2.7_22", world[2])).path / mbx.MARKER).read_text())
    assert set(marker["users"]) == {"arossi"} and marker["users"]["arossi"]["finished"] is not None
    r = mailboxes(cli, world, "--source-host", "192.0.2.7", "--json")
    assert r.exit_code == 0, r.output
    status = {u["user"]: u["status"] for u in report(r)["users"]}
    assert status == {"admin": "changed", "arossi": "ok", "hbianchi": "changed"}
    for u in USERS:
        assert snapshot(dest_of(dest, u)) == snapshot(maildir_of(tree, u)), u


def test_mail_missing_from_the_tree_is_never_deleted_on_the_destination(cli, world):
    """migration-import moves files out of the tree: what is missing there was not deleted by anyone."""
    _, tree, dest, _ = world
    assert mailboxes(cli, world, "--source-host", "192.0.2.7").exit_code == 0
    gone = sorted(maildir_of(tree, "arossi").glob("cur/*"))[:3]
    for p in gone:
        p.unlink()
    r = mailboxes(cli, world, "--source-host", "192.0.2.7", "--json")
    assert r.exit_code == 0, r.output
    assert total(report(r), "deleted") == 0
    assert all((dest_of(dest, "arossi") / "cur" / p.name).is_file() for p in gone)


@pytest.mark.parametrize(
    "known, status, mark, allowed",
    [
        (False, None, None, True),  # the index knows nothing of the user
        (True, {"time": 100.0}, None, False),  # synced by maildirsync -s, never seeded
        (True, {"time": 100.0}, {"started": 90.0, "finished": 101.0}, True),  # our seed was the last run
        (True, {"time": 200.0}, {"started": 90.0, "finished": 101.0}, False),  # a live sync after our seed
        (True, None, {"started": 90.0, "finished": None}, True),  # our seed died midway, nothing since
        (True, {"time": 200.0}, {"started": 90.0, "finished": None}, False),  # ... and a run recorded since
    ],
)
def test_when_a_seed_may_write_over_the_index(known, status, mark, allowed):
    assert mbx._seed_allowed(known, status, mark) is allowed

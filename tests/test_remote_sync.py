"""`maildirsync -s` end to end against OpenSSH sshd, with an SME 8-shaped source and the NethServer
destination layout (issue 3)."""

from __future__ import annotations

import json
import shutil

import pytest

from maildirsync.lab.corpus import SME8_ADMIN, SME8_USERS, CorpusSpec, generate
from maildirsync.lab.scenarios import apply as mutate
from mdtools import cli, mkmaildir, snapshot
from sshfixtures import legacy_sshd, sftp_only_sshd, sshd_server  # noqa: F401  (fixtures)

DOMAIN = "example.org"


@pytest.fixture
def world(tmp_path):
    """An SME 8 source tree and a NethServer destination whose mailboxes exist but are empty."""
    src = tmp_path / "sme"
    generate(src, CorpusSpec(users=3, folders=3, messages=12, seed=11, layout="sme8", domain=DOMAIN), processes=1)
    users = sorted(p.name for p in (src / SME8_USERS).iterdir()) + ["admin"]
    dest = tmp_path / "vmail"
    for u in users:
        mkmaildir(dest / f"{u}@{DOMAIN}" / "Maildir")
    return src, dest, tmp_path / "state", users


def run(server, world, *extra, transport=()):
    src, dest, state, _ = world
    return cli(
        "-s", server.host, "-p", server.port, "-i", server.client_key, "--known-hosts", server.known_hosts,
        "--state-dir", state, "--dest-root", dest, "--domain", DOMAIN, "--owner", "keep",
        "--users-dir", src / SME8_USERS, "--admin-maildir", src / SME8_ADMIN, "--json", *transport, *extra,
    )  # fmt: skip


def report(p) -> dict:
    assert "Traceback" not in p.stderr, p.stderr
    return json.loads(p.stdout)


def pairs(world):
    src, dest, _, users = world
    for u in users:
        s = src / (SME8_ADMIN if u == "admin" else SME8_USERS / u / "Maildir")
        yield u, s, dest / f"{u}@{DOMAIN}" / "Maildir"


def assert_equal(world, whole_seconds=False):
    """SFTP v3 carries whole-second mtimes: over it, sub-second parts cannot survive."""

    def snap(root):
        out = snapshot(root)
        if whole_seconds:
            out = {k: (v[0], v[1] // 10**9 if v[1] is not None else None, v[2]) for k, v in out.items()}
        return out

    for u, s, d in pairs(world):
        assert snap(d) == snap(s), u


def total(rep, key):
    return sum(u["counts"][key] for u in rep["users"])


@pytest.mark.parametrize("transport", [(), ("--transport", "sftp")], ids=["auto", "sftp"])
def test_dry_run_first_sync_and_each_kind_of_change(sshd_server, world, transport):  # noqa: F811
    sftp = bool(transport)
    dry = run(sshd_server, world, "-n", transport=transport)
    assert dry.returncode == 3, dry.stderr
    rep = report(dry)
    assert {u["user"] for u in rep["users"]} == set(world[3])  # admin included, from /home/e-smith/Maildir
    assert all(not list(d.rglob("cur/*")) for _, _, d in pairs(world))

    first = run(sshd_server, world, transport=transport)
    assert first.returncode == 0, first.stdout + first.stderr
    assert total(report(first), "new") == total(rep, "new") > 0
    assert_equal(world, sftp)

    for step, scenario in enumerate(("flags", "new", "moved", "deleted", "churn"), 1):
        m = mutate(scenario, world[0], "sme8", seed=step, step=step)
        p = run(sshd_server, world, "--max-delete", "100", transport=transport)
        assert p.returncode == 0, (scenario, p.stdout, p.stderr)
        rep = report(p)
        if scenario == "flags":
            assert total(rep, "renamed") == m.flag_changes and total(rep, "bytes") == 0
        if scenario == "new":
            assert total(rep, "new") == m.added and total(rep, "bytes") == m.added_bytes
        if scenario == "moved":
            assert total(rep, "moved") == m.moved and total(rep, "bytes") == 0
        if scenario == "deleted":
            assert total(rep, "deleted") == m.deleted
        assert_equal(world, sftp)


def test_source_is_never_written(sshd_server, world):  # noqa: F811
    before = snapshot(world[0], with_inodes=True)
    for _ in range(2):
        assert run(sshd_server, world).returncode == 0
    assert snapshot(world[0], with_inodes=True) == before


def test_legacy_algorithm_server(legacy_sshd, world):  # noqa: F811
    p = run(legacy_sshd, world)
    assert p.returncode == 0, p.stdout + p.stderr
    assert_equal(world)


def test_sftp_only_account(sftp_only_sshd, world):  # noqa: F811
    p = run(sftp_only_sshd, world)
    assert p.returncode == 0, p.stdout + p.stderr
    assert_equal(world, whole_seconds=True)


def test_unknown_and_changed_host_keys_are_refused(sshd_server, world, tmp_path):  # noqa: F811
    src, dest, state, _ = world
    empty = tmp_path / "kh-empty"
    empty.write_text("")
    args = ["-s", sshd_server.host, "-p", sshd_server.port, "-i", sshd_server.client_key, "--state-dir", state,
            "--dest-root", dest, "--domain", DOMAIN, "--users-dir", src / SME8_USERS]  # fmt: skip
    p = cli(*args, "--known-hosts", empty)
    assert p.returncode == 77 and "--accept-new-host-key" in p.stderr and "Traceback" not in p.stderr
    assert empty.read_text() == ""
    wrong = tmp_path / "kh-wrong"
    line = sshd_server.known_hosts.read_text().split()
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIDdOc1pWqZ1P3Zl3yF4gQ2Z5d3Y8b1hCq1rN6kq9x7Ue"
    wrong.write_text(f"{line[0]} ssh-ed25519 {other}\n")
    p = cli(*args, "--known-hosts", wrong)
    assert p.returncode == 77 and "Traceback" not in p.stderr
    # First contact with --accept-new-host-key records the key and syncs.
    p = cli(*args, "--known-hosts", empty, "--accept-new-host-key", "--admin-maildir", src / SME8_ADMIN, "--owner", "keep")
    assert p.returncode == 0, p.stderr
    assert sshd_server.host_key_line.split()[1] in empty.read_text()


def test_users_follow_the_nethserver_layout(sshd_server, world):  # noqa: F811
    src, dest, state, users = world
    # A mailbox in another domain is still the same user; a source user with no destination mailbox is
    # a warning saying how to fix it; vmail and root are skipped.
    victim = users[0]
    (dest / f"{victim}@{DOMAIN}").rename(dest / f"{victim}@other.example")
    shutil.rmtree(dest / f"{users[1]}@{DOMAIN}")
    mkmaildir(dest / f"root@{DOMAIN}" / "Maildir")
    mkmaildir(dest / f"vmail@{DOMAIN}" / "Maildir")
    p = run(sshd_server, world)
    rep = report(p)
    synced = {u["user"] for u in rep["users"]}
    assert victim in synced and users[1] not in synced and not {"root", "vmail"} & synced
    assert any(users[1] in n and "create the user" in n for n in rep["notes"])
    assert snapshot(dest / f"{victim}@other.example" / "Maildir") == snapshot(src / SME8_USERS / victim / "Maildir")


def test_only_some_users(sshd_server, world):  # noqa: F811
    users = world[3]
    rep = report(run(sshd_server, world, "-u", users[0]))
    assert [u["user"] for u in rep["users"]] == [users[0]]
    bad = run(sshd_server, world, "-u", "nosuchuser")
    assert bad.returncode == 2 and "nosuchuser" in bad.stdout + bad.stderr


def test_parallel_users_over_one_connection(sshd_server, world):  # noqa: F811
    p = run(sshd_server, world, "-j", "4")
    assert p.returncode == 0, p.stderr
    assert_equal(world)


def test_status_and_verify(sshd_server, world):  # noqa: F811
    src, dest, state, users = world
    assert run(sshd_server, world).returncode == 0
    st = cli("status", "--state-dir", state, "--json")
    data = json.loads(st.stdout)
    # One index per source and destination: its name is the source's, with the destination root's hash.
    (key,) = [k for k in data if k.startswith(f"{sshd_server.host}_{sshd_server.port}-")]
    assert set(data[key]) == set(users) and all(v["status"] == "changed" for v in data[key].values())
    text = cli("status", "--state-dir", state).stdout
    assert f"{sshd_server.host}:{sshd_server.port} (sme8) -> {dest}:" in text, text
    common = ["-s", sshd_server.host, "-p", sshd_server.port, "--state-dir", state, "--dest-root", dest, "--domain", DOMAIN,
              "-i", sshd_server.client_key, "--known-hosts", sshd_server.known_hosts,
              "--users-dir", src / SME8_USERS, "--admin-maildir", src / SME8_ADMIN]  # fmt: skip
    ok = cli("verify", *common)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "UIDs of 3 folder(s) compared with the source's, 0 differ" in ok.stdout, ok.stdout

    # A destination whose Dovecot numbered a message otherwise: named, counted, exit 1.
    u0 = dest / f"{users[0]}@{DOMAIN}" / "Maildir"
    ul = u0 / ".Sent" / "dovecot-uidlist" if (u0 / ".Sent" / "dovecot-uidlist").exists() else u0 / "dovecot-uidlist"
    lines = ul.read_bytes().split(b"\n")
    first, second = lines[1].split(b" ", 1), lines[2].split(b" ", 1)
    lines[1], lines[2] = first[0] + b" " + second[1], second[0] + b" " + first[1]  # two UIDs swapped
    ul.write_bytes(b"\n".join(lines))
    uids = cli("verify", *common, "--json")
    assert uids.returncode == 1, uids.stdout + uids.stderr
    (mine,) = [r for r in json.loads(uids.stdout) if r["user"] == users[0]]
    assert mine["uid_folders_differing"] == 1 and "2 UID(s) naming another message" in mine["uid_notes"][0], mine
    assert cli("verify", *common, "--no-source").returncode == 0  # the messages themselves are fine

    victim = next((dest / f"{users[0]}@{DOMAIN}" / "Maildir" / "cur").iterdir())
    victim.write_bytes(victim.read_bytes() + b"x")
    bad = cli("verify", *common, "--no-source")
    assert bad.returncode == 1 and victim.name in bad.stdout


def test_unreachable_source_is_one_clear_line(world, tmp_path):
    src, dest, state, _ = world
    key = tmp_path / "k"
    key.write_text("not a key")
    p = cli("-s", "127.0.0.1", "-p", "1", "-i", key, "--state-dir", state, "--dest-root", dest)
    assert p.returncode not in (0, 1) and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1

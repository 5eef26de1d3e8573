"""`maildirsync -s` at its edges, against OpenSSH on 127.0.0.1: SME Server 9 (`-t sme9`), a run where not one
source user has a mailbox here (issue 12 part 5: exit 67 with the hint), and an index that would share a
tree with the destination mailboxes (issue 13 part 2)."""

from __future__ import annotations

import json
import shutil

import pytest

from maildirsync.errors import EXIT_NO_USERS
from maildirsync.lab.corpus import SME8_ADMIN, SME8_USERS, CorpusSpec, generate
from mdtools import cli, mkmaildir, raw_bytes, snapshot
from sshfixtures import sshd_server  # noqa: F401  (fixture)

DOMAIN = "example.org"


@pytest.fixture
def world(tmp_path):
    """An SME 8/9 source tree and a NethServer destination whose mailboxes exist but are empty."""
    src = tmp_path / "sme"
    generate(src, CorpusSpec(users=2, folders=2, messages=6, seed=5, layout="sme8", domain=DOMAIN), processes=1)
    users = sorted(p.name for p in (src / SME8_USERS).iterdir()) + ["admin"]
    dest = tmp_path / "vmail"
    for u in users:
        mkmaildir(dest / f"{u}@{DOMAIN}" / "Maildir")
    return src, dest, tmp_path / "state", users


def run(server, world, *extra, dest=None, state=None):
    src, dest_, state_, _ = world
    return cli(
        "-s", server.host, "-p", server.port, "-i", server.client_key, "--known-hosts", server.known_hosts,
        "--state-dir", state or state_, "--dest-root", dest or dest_, "--domain", DOMAIN, "--owner", "keep",
        "--users-dir", src / SME8_USERS, "--admin-maildir", src / SME8_ADMIN, *extra,
    )  # fmt: skip


def test_sme9_is_the_sme8_layout(sshd_server, world):  # noqa: F811
    src, dest, _, users = world
    p = run(sshd_server, world, "-t", "sme9", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert {u["user"] for u in json.loads(p.stdout)["users"]} == set(users)  # admin included
    for u in users:
        s = src / (SME8_ADMIN if u == "admin" else SME8_USERS / u / "Maildir")
        assert snapshot(dest / f"{u}@{DOMAIN}" / "Maildir") == snapshot(s), u


def _no_mailboxes(world):
    shutil.rmtree(world[1])
    world[1].mkdir()


def _other_users_only(world):
    shutil.rmtree(world[1])
    mkmaildir(world[1] / f"carol@{DOMAIN}" / "Maildir")


# How a run can end with nobody paired, and what the error line must point at.
NOBODY = {
    "no mailbox at all": (_no_mailboxes, [], "holds no <user>@example.org/Maildir; create the users here"),
    "other users only": (_other_users_only, [], "on the source, 1 mailbox(es) in"),
    "wrong source type": (lambda w: None, ["-t", "ns6", "--vmail-dir", "/nonexistent"], "check -t (sme8, sme9 or ns6)"),
    "asked for a user with no mailbox": (
        lambda w: shutil.rmtree(w[1] / f"admin@{DOMAIN}"), ["-u", "admin"], "none of the users asked for (-u)"
    ),
    "asked for a user with no mail on the source": (
        lambda w: mkmaildir(w[1] / f"carol@{DOMAIN}" / "Maildir"), ["-u", "carol"], "none of the users asked for (-u)"
    ),
}


@pytest.mark.parametrize("dry_run", [False, True], ids=["sync", "dry-run"])
@pytest.mark.parametrize("case", NOBODY)
def test_nobody_paired_is_exit_67_with_the_hint(sshd_server, world, case, dry_run):  # noqa: F811
    prepare, extra, says = NOBODY[case]
    prepare(world)
    before = raw_bytes(world[1])
    p = run(sshd_server, world, *extra, *(["-n"] if dry_run else []))
    assert p.returncode == EXIT_NO_USERS, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    errors = p.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("maildirsync: error: n") and says in errors[0], errors
    if case == "asked for a user with no mail on the source":
        assert "carol: no Maildir on the source" in p.stdout
    elif case != "wrong source type":
        # The per-user hint of before: which user, and what to do.
        assert "create the user" in p.stdout and "(or run maildirsync-import), then run again" in p.stdout
    assert raw_bytes(world[1]) == before


def test_nobody_paired_in_json(sshd_server, world):  # noqa: F811
    _no_mailboxes(world)
    p = run(sshd_server, world, "--json")
    assert p.returncode == EXIT_NO_USERS and not p.stderr
    rep = json.loads(p.stdout)
    assert rep["exit_code"] == EXIT_NO_USERS and rep["error"].startswith("not one source user")
    assert len(rep["notes"]) == len(world[3]) and all("create the user" in n for n in rep["notes"])


def test_one_user_paired_is_a_normal_run(sshd_server, world):  # noqa: F811
    src, dest, _, users = world
    for u in users[1:]:
        shutil.rmtree(dest / f"{u}@{DOMAIN}")
    p = run(sshd_server, world)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "create the user" in p.stdout


# (A destination root inside the index's own directory cannot be made: an index is named after its
# destination root, unless that is NethServer's own, which no test may touch.)
@pytest.mark.parametrize("layout", ["state inside dest-root", "the same"])
def test_the_index_and_the_destination_mailboxes_are_kept_apart(world, tmp_path, layout):
    """Refused before connecting (port 1 has no server): nothing is written, not even the state directory."""
    dest = world[1]
    state = {"state inside dest-root": dest / "state", "the same": dest}[layout]
    before = raw_bytes(tmp_path)
    p = cli("-s", "127.0.0.1", "-p", "1", "--state-dir", state, "--dest-root", dest, "-n")
    assert p.returncode == 2, p.stdout + p.stderr
    line = p.stderr.strip()
    assert "\n" not in line and "the index" in line and "the destination root" in line
    assert "keep the index and the mail apart (--state-dir)" in line
    assert raw_bytes(tmp_path) == before

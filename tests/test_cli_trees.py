"""Which trees `maildirsync sync` accepts (issue 13 part 2): a destination that is the source, inside it or
around it is refused after resolving symbolic links, in every mode; a directory that is neither empty,
nor a Maildir, nor a directory of <user>/Maildir is filled only with --create; the index stays out of both
trees. Each refusal is exit 2, one line, and nothing written anywhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mdtools import cli, mkmaildir, put, raw_bytes

MODES = {"sync": [], "dry-run": ["-n"], "create": ["--create"], "json": ["--json"], "verbose": ["-v"]}


@pytest.fixture
def world(tmp_path):
    """A single Maildir with a subfolder, a directory of users, and symbolic links into both."""
    box = mkmaildir(tmp_path / "box", ".Sent")
    put(box, "cur/1.a:2,S", b"one\n")
    put(box, ".Sent/cur/2.b:2,S", b"two\n")
    users = tmp_path / "users"
    for u in ("alice", "bob"):
        put(mkmaildir(users / u / "Maildir"), f"cur/3.{u}:2,S", u.encode())
    os.symlink(box, tmp_path / "box-link")
    os.symlink(users, tmp_path / "users-link")
    os.symlink(box / ".Sent", tmp_path / "sent-link")
    return tmp_path


# (source, destination, how the destination sits against the source), paths relative to the world.
OVERLAPS = [
    ("box", "box", "is the same directory as the source"),
    ("box", "box/.Sub", "is inside the source"),
    ("box", "box/.Sent", "is inside the source"),
    ("box", "box/sub/deeper", "is inside the source"),
    ("box/.Sent", "box", "contains the source"),
    ("box", "box-link", "(%s/box once symbolic links are resolved) is the same directory as the source"),
    ("box-link", "box/.New", "is inside the source"),
    ("box", "sent-link", "is inside the source"),
    ("box", "box/../box", "is the same directory as the source"),
    ("users", "users", "is the same directory as the source"),
    ("users", "users/carol", "is inside the source"),
    ("users", "users-link/alice/Maildir", "is inside the source"),
    ("users/alice/Maildir", "users", "contains the source"),
]


def refused(world, argv, says):
    before = raw_bytes(world)
    p = cli("sync", *argv, "--state-dir", world / "state")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stdout.strip().splitlines() if "--json" in argv else p.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert says in lines[0] and "the source is never written" in lines[0]
    assert raw_bytes(world) == before  # nothing created, the index included


@pytest.mark.parametrize("src, dst, says", OVERLAPS, ids=[f"{s}->{d}" for s, d, _ in OVERLAPS])
def test_overlapping_trees_are_refused(world, src, dst, says):
    refused(world, [world / src, world / dst], says % world if "%s" in says else says)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("src, dst, says", [OVERLAPS[0], OVERLAPS[1], OVERLAPS[4]], ids=["same", "inside", "around"])
def test_overlapping_trees_are_refused_in_every_mode(world, src, dst, says, mode):
    refused(world, [*MODES[mode], world / src, world / dst], says)


def test_a_users_maildir_that_links_into_the_source_is_refused(world):
    dst = world / "dst"
    mkmaildir(dst / "alice" / "Maildir")
    os.symlink(world / "users" / "bob" / "Maildir", dst / "bob")  # dst/bob/Maildir would be the source's
    before = raw_bytes(world)
    p = cli("sync", "--create", world / "users", dst, "--state-dir", world / "state")
    assert p.returncode == 2 and "the destination mailbox" in p.stderr and "inside the source" in p.stderr
    assert raw_bytes(world) == before


@pytest.fixture(params=["file", "lost+found", "a-home"])
def occupied(request, tmp_path) -> Path:
    """A destination that holds something else: a stray file, a fresh mount point, someone's home."""
    d = tmp_path / "occupied"
    d.mkdir()
    if request.param == "file":
        (d / "notes.txt").write_text("mine\n")
    elif request.param == "lost+found":
        (d / "lost+found").mkdir()
    else:
        (d / ".bashrc").write_text("# mine\n")
        (d / "Documents").mkdir()
    return d


@pytest.mark.parametrize("src", ["box", "users"])
def test_an_occupied_directory_is_filled_only_with_create(world, occupied, src):
    before = raw_bytes(occupied.parent)
    p = cli("sync", world / src, occupied, "--state-dir", world / "state")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "neither empty, nor a Maildir, nor a directory of <user>/Maildir: pass --create" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert raw_bytes(occupied.parent) == before
    p = cli("sync", "--create", world / src, occupied, "--state-dir", world / "state", "--owner", "keep")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (occupied / ("cur" if src == "box" else "alice/Maildir/cur")).is_dir()


@pytest.mark.parametrize("dest", ["empty", "missing", "maildir", "users"])
def test_empty_missing_and_matching_destinations_are_filled(world, dest):
    src = world / ("users" if dest == "users" else "box")
    dst = world / "dst"
    if dest == "empty":
        dst.mkdir()
    elif dest == "maildir":
        mkmaildir(dst)
    elif dest == "users":
        mkmaildir(dst / "alice" / "Maildir")
        mkmaildir(dst / "bob" / "Maildir")
    p = cli("sync", src, dst, "--state-dir", world / "state", "--owner", "keep")
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize(
    "src, dst, says",
    [
        ("box", "users", "is one Maildir but"),
        ("users", "box", "holds several mailboxes but"),
    ],
)
def test_a_single_maildir_and_a_directory_of_users_do_not_mix(world, src, dst, says):
    before = raw_bytes(world)
    p = cli("sync", "--create", world / src, world / dst, "--state-dir", world / "state")
    assert p.returncode == 2 and says in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert raw_bytes(world) == before


@pytest.mark.parametrize("where", ["box", "box/.Sent", "dst", "dst/deeper"])
def test_the_index_is_kept_out_of_both_trees(world, where):
    before = raw_bytes(world)
    p = cli("sync", "-n", world / "box", world / "dst", "--state-dir", world / where)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "the index" in p.stderr and "keep the index and the mail apart (--state-dir)" in p.stderr
    assert raw_bytes(world) == before


def test_no_user_with_a_destination_mailbox_is_exit_67_with_the_hint(world):
    dst = world / "dst"
    mkmaildir(dst / "carol" / "Maildir")  # a user the source does not have
    p = cli("sync", world / "users", dst, "--state-dir", world / "state")
    assert p.returncode == 67, p.stdout + p.stderr
    assert "alice: no destination mailbox" in p.stdout and "or pass --create" in p.stdout
    assert p.stderr.strip().splitlines() == [
        f"maildirsync: error: not one user of {world / 'users'} has a mailbox in {dst}: create them there "
        "(or pass --create), then run again"
    ]
    assert not (world / "state").exists()

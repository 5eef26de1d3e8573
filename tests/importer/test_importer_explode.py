"""``maildirsync-import explode``: formats, metadata, hostile archives, errors."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections import namedtuple
from pathlib import Path

import pytest

from importer import archive
from importer_fixtures import MAIL_MTIME, M, build_sme_tree, make_tar, tar_of_tree

FORMATS = [("w:gz", "smeserver.tgz", "gzip"), ("w:bz2", "b.tar.bz2", "bzip2"), ("w:xz", "b.tar.xz", "xz"), ("w", "b.tar", "tar")]


def tree_listing(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            st = p.lstat()
            data = p.read_bytes() if p.is_file() and not p.is_symlink() else None
            out[str(p.relative_to(root))] = (stat.S_IMODE(st.st_mode), int(st.st_mtime), data)
    return out


@pytest.mark.parametrize("mode, name, kind", FORMATS)
def test_explode_formats_keep_content_modes_mtimes(tmp_path, cli, mode, name, kind):
    src = build_sme_tree(tmp_path / "src")
    os.chmod(src / "root/.ssh", 0o700)
    os.chmod(src / "root/.ssh/authorized_keys", 0o600)
    # directories' mtimes are set last, after their content is written
    os.utime(src / "home/e-smith/Maildir/cur", (MAIL_MTIME, MAIL_MTIME))
    arc = tar_of_tree(src, tmp_path / name, mode)
    assert archive.detect_kind(arc) == kind
    dest = tmp_path / "out"
    r = cli("explode", arc, dest)
    assert r.exit_code == 0, r.output
    assert f"({kind})" in r.stdout
    assert tree_listing(dest) == tree_listing(src)
    mail = dest / "home/e-smith/files/users/alice/Maildir/cur"
    assert all(p.stat().st_mtime == MAIL_MTIME for p in mail.iterdir() if not p.name.startswith("."))
    assert (dest / "home/e-smith/Maildir/cur").stat().st_mtime == MAIL_MTIME
    assert stat.S_IMODE((dest / "root/.ssh/authorized_keys").stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="keeping owners needs root")
def test_explode_keeps_owners(tmp_path, cli):
    arc = tmp_path / "o.tgz"
    with tarfile.open(arc, "w:gz") as tar:
        for name, uid, gid in [("a", 5001, 5002), ("b", 0, 0)]:
            ti = tarfile.TarInfo(name)
            ti.uid, ti.gid, ti.uname, ti.gname = uid, gid, "", ""
            ti.size = 1
            import io

            tar.addfile(ti, io.BytesIO(b"x"))
    r = cli("explode", arc, tmp_path / "out")
    assert r.exit_code == 0, r.output
    st = (tmp_path / "out/a").stat()
    assert (st.st_uid, st.st_gid) == (5001, 5002)


def test_links_inside_dir_are_kept(tmp_path, cli):
    arc = make_tar(
        tmp_path / "l.tgz",
        [
            M("d/", type=tarfile.DIRTYPE, data=None, mode=0o755),
            M("d/file", data=b"content"),
            M("d/hard", type=tarfile.LNKTYPE, linkname="d/file", data=None),
            M("d/sym", type=tarfile.SYMTYPE, linkname="file", data=None),
            M("up", type=tarfile.SYMTYPE, linkname="d/../d/file", data=None),
        ],
    )
    r = cli("explode", arc, tmp_path / "out")
    assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    assert (out / "d/hard").stat().st_ino == (out / "d/file").stat().st_ino
    assert os.readlink(out / "d/sym") == "file"
    assert (out / "up").read_bytes() == b"content"


Hostile = namedtuple("Hostile", "members reason")

# Every case aims at tmp_path/outside (a sibling of DIR) or at system paths.
HOSTILE = {
    "dotdot": Hostile([M("ok"), M("../outside/evil")], "'..'"),
    "dotdot_deep": Hostile([M("a/b/../../../outside/evil")], "'..'"),
    "absolute": Hostile([M("{outside}/evil")], "absolute path"),
    "symlink_escape_then_write": Hostile(
        [M("l", type=tarfile.SYMTYPE, linkname="../outside", data=None), M("l/evil")], "outside"
    ),
    "symlink_absolute": Hostile([M("l", type=tarfile.SYMTYPE, linkname="{outside}", data=None)], "outside"),
    "symlink_via_dot_link": Hostile(
        [
            M("s", type=tarfile.SYMTYPE, linkname=".", data=None),
            M("t", type=tarfile.SYMTYPE, linkname="s/../outside/evil", data=None),
            M("t", data=b"through the link"),
        ],
        "outside",
    ),
    "symlink_resolved_through_a_later_link": Hostile(
        [
            M("t", type=tarfile.SYMTYPE, linkname="s/../outside/target", data=None),
            M("s", type=tarfile.SYMTYPE, linkname=".", data=None),
        ],
        "outside",
    ),
    "symlink_loop": Hostile(
        [M("a", type=tarfile.SYMTYPE, linkname="b", data=None), M("b", type=tarfile.SYMTYPE, linkname="a", data=None)],
        "loops",
    ),
    "path_through_symlink": Hostile(
        [M("d/", type=tarfile.DIRTYPE, data=None), M("s", type=tarfile.SYMTYPE, linkname="d", data=None), M("s/x")],
        "through the symbolic link",
    ),
    "hardlink_escape": Hostile([M("h", type=tarfile.LNKTYPE, linkname="../outside/target", data=None)], "hard link"),
    "hardlink_absolute": Hostile([M("h", type=tarfile.LNKTYPE, linkname="{outside}/target", data=None)], "hard link"),
    "hardlink_to_symlink": Hostile(
        [
            M("s", type=tarfile.SYMTYPE, linkname="x", data=None),
            M("h", type=tarfile.LNKTYPE, linkname="s", data=None),
        ],
        "not an earlier regular file",
    ),
    "char_device": Hostile([M("ok"), M("dev/null", type=tarfile.CHRTYPE, data=None)], "device node"),
    "block_device": Hostile([M("sda", type=tarfile.BLKTYPE, data=None)], "device node"),
    "fifo": Hostile([M("pipe", type=tarfile.FIFOTYPE, data=None)], "fifo"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("preexisting_dir", [False, True], ids=["new-dir", "empty-dir"])
def test_hostile_archive_refused_nothing_written(tmp_path, cli, case, preexisting_dir):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_text("precious")
    before = tree_listing(outside)
    members = [
        M(m.name.format(outside=outside), m.data, m.type, m.linkname.format(outside=outside), m.mode)
        for m in HOSTILE[case].members
    ]
    arc = make_tar(tmp_path / "hostile.tgz", members)
    dest = tmp_path / "dest"
    if preexisting_dir:
        dest.mkdir()
    r = cli("explode", arc, dest)
    assert r.exit_code == 2, r.output
    assert "unsafe archive member" in r.stderr
    assert HOSTILE[case].reason in r.stderr
    assert "nothing was extracted" in r.stderr
    assert tree_listing(outside) == before
    assert not dest.exists() or list(dest.iterdir()) == []
    # nothing anywhere else under tmp_path either
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["outside", "hostile.tgz"] + (["dest"] if preexisting_dir else [])
    )


def test_skip_unsafe_links_leaves_them_out(tmp_path, cli):
    arc = make_tar(
        tmp_path / "a.tgz",
        [M("keep", data=b"k"), M("abs", type=tarfile.SYMTYPE, linkname="/usr/share/doc", data=None)],
    )
    r = cli("explode", "--skip-unsafe-links", arc, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert "WARNING skipped abs" in r.stdout
    assert sorted(os.listdir(tmp_path / "out")) == ["keep"]


def test_skip_unsafe_links_still_refuses_devices(tmp_path, cli):
    arc = make_tar(tmp_path / "a.tgz", [M("n", type=tarfile.CHRTYPE, data=None)])
    r = cli("explode", "--skip-unsafe-links", arc, tmp_path / "out")
    assert r.exit_code == 2 and "device node" in r.stderr


def _big_archive(tmp_path: Path, mode: str, name: str) -> bytes:
    members = [M(f"home/e-smith/files/users/u/Maildir/cur/msg{i}", data=os.urandom(40_000)) for i in range(6)]
    return make_tar(tmp_path / name, members, mode).read_bytes()


@pytest.mark.parametrize(
    "mode, cut, member",
    [
        ("w:gz", 0.5, "in member 'home/e-smith/files/users/u/Maildir/cur/msg2'"),  # cut in the data
        ("w:gz", -6, "after the last member 'home/e-smith/files/users/u/Maildir/cur/msg5'"),  # no trailer
        ("w:bz2", 0.5, "before its first member"),  # one bzip2 block: nothing decompresses
        ("w:xz", 0.6, "member"),
        ("w", 0.5, "in member 'home/e-smith/files/users/u/Maildir/cur/msg"),
    ],
)
def test_truncated_archive_names_the_member(tmp_path, cli, mode, cut, member):
    data = _big_archive(tmp_path, mode, "full")
    n = int(len(data) * cut) if isinstance(cut, float) else len(data) + cut
    arc = tmp_path / "trunc"
    arc.write_bytes(data[:n])
    r = cli("explode", arc, tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert "truncated or corrupt" in r.stderr
    assert member in r.stderr
    assert not (tmp_path / "out").exists()


def test_plain_tar_cut_at_a_member_boundary(tmp_path, cli):
    data = make_tar(tmp_path / "t.tar", [M("a", data=b"x" * 512), M("b", data=b"y" * 512)], "w").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:1024])  # header + data of 'a', nothing more
    r = cli("explode", tmp_path / "cut.tar", tmp_path / "out")
    assert r.exit_code == 2 and "end-of-archive" in r.stderr and "'a'" in r.stderr


def test_corrupt_gzip(tmp_path, cli):
    data = bytearray(_big_archive(tmp_path, "w:gz", "c.tgz"))
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "c.tgz").write_bytes(bytes(data))
    r = cli("explode", tmp_path / "c.tgz", tmp_path / "out")
    assert r.exit_code == 2 and "corrupt" in r.stderr and "member" in r.stderr


@pytest.mark.parametrize(
    "content, message",
    [(b"", "is empty"), (b"hello, this is not an archive\n" * 30, "not a backup archive"),
     (b"\x28\xb5\x2f\xfd" + b"\0" * 600, "zstd")],
)
def test_not_an_archive(tmp_path, cli, content, message):
    (tmp_path / "f").write_bytes(content)
    r = cli("explode", tmp_path / "f", tmp_path / "out")
    assert r.exit_code == 2 and message in r.stderr


def test_gzip_of_something_else(tmp_path, cli):
    import gzip

    (tmp_path / "x.gz").write_bytes(gzip.compress(b"just text\n" * 100))
    r = cli("explode", tmp_path / "x.gz", tmp_path / "out")
    assert r.exit_code == 2 and "does not contain a tar archive" in r.stderr


def test_missing_archive(tmp_path, cli):
    r = cli("explode", tmp_path / "nope.tgz", tmp_path / "out")
    assert r.exit_code == 2 and "no such file" in r.stderr


def test_non_empty_dir_refused_unless_force(tmp_path, cli):
    arc = make_tar(tmp_path / "a.tgz", [M("new", data=b"new")])
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old").write_text("old")
    r = cli("explode", arc, dest)
    assert r.exit_code == 2 and "not empty" in r.stderr and "--force" in r.stderr
    assert sorted(os.listdir(dest)) == ["old"]
    r = cli("explode", "--force", arc, dest)
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(dest)) == ["new", "old"]


def test_force_replaces_a_symlink_instead_of_writing_through_it(tmp_path, cli):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("precious")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "f").symlink_to(outside / "victim")
    arc = make_tar(tmp_path / "a.tgz", [M("f", data=b"from archive")])
    r = cli("explode", "--force", arc, dest)
    assert r.exit_code == 0, r.output
    assert (outside / "victim").read_text() == "precious"
    assert not (dest / "f").is_symlink() and (dest / "f").read_bytes() == b"from archive"


def test_dest_cannot_be_created(tmp_path, cli):
    arc = make_tar(tmp_path / "a.tgz", [M("x")])
    (tmp_path / "file").write_text("")
    r = cli("explode", arc, tmp_path / "file/sub")
    assert r.exit_code == 2 and "cannot create" in r.stderr


def test_dest_is_a_file(tmp_path, cli):
    arc = make_tar(tmp_path / "a.tgz", [M("x")])
    (tmp_path / "file").write_text("")
    r = cli("explode", arc, tmp_path / "file")
    assert r.exit_code == 2 and "not a directory" in r.stderr


def test_not_enough_space_refused_before_writing(tmp_path, cli, monkeypatch):
    arc = make_tar(tmp_path / "a.tgz", [M("big", data=b"x" * 100_000)])
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(archive.shutil, "disk_usage", lambda p: Usage(10**6, 10**6 - 4096, 4096))
    r = cli("explode", arc, tmp_path / "out")
    assert r.exit_code == 1, r.output
    assert "not enough free space" in r.stderr
    assert not (tmp_path / "out").exists()


def test_progress_lines_when_not_a_tty(tmp_path, cli):
    arc = make_tar(tmp_path / "a.tgz", [M(f"f{i}", data=os.urandom(30_000)) for i in range(5)])
    r = cli("explode", arc, tmp_path / "out")
    assert r.exit_code == 0
    assert "checking: 0% of" in r.stderr and "extracting: 100% of" in r.stderr
    r = cli("explode", "-q", "--force", arc, tmp_path / "out")
    assert r.exit_code == 0 and "extracting" not in r.stderr


def test_default_dir_is_var_lib_migration():
    assert archive.DEFAULT_DIR == "/var/lib/migration"


def test_cli_subprocess_no_traceback(tmp_path):
    """The installed console script, as an administrator runs it."""
    arc = make_tar(tmp_path / "h.tgz", [M("../evil")])
    exe = Path(sys.executable).with_name("maildirsync-import")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "import sys; from importer.cli import main; sys.exit(main())"]
    p = subprocess.run(cmd + ["explode", str(arc), str(tmp_path / "out")], capture_output=True, text=True)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "unsafe archive member '../evil'" in p.stderr
    p = subprocess.run(cmd + ["explode"], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    p = subprocess.run(cmd + ["-h"], capture_output=True, text=True)
    assert p.returncode == 0 and "explode" in p.stdout and "inspect" in p.stdout


# --------------------------------------------------------------------------- dar


def test_dar_missing_names_the_package(tmp_path, cli, monkeypatch):
    (tmp_path / "set1").mkdir()
    (tmp_path / "set1/full-201901010000.1.dar").write_bytes(b"SARTAR")
    monkeypatch.setattr(archive.shutil, "which", lambda name: None)
    r = cli("explode", tmp_path / "set1", tmp_path / "out")
    assert r.exit_code == 1, r.output
    assert "dar" in r.stderr and "apt-get install dar" in r.stderr


@pytest.mark.parametrize(
    "files, expect",
    [
        (["full-2019.1.dar", "inc-002-2019.1.dar", "inc-001-2019.1.dar", "inc-010-2019.1.dar"],
         ["full-2019", "inc-001-2019", "inc-002-2019", "inc-010-2019"]),
        (["full-a.1.dar", "full-a.2.dar"], ["full-a"]),  # slices of one archive
    ],
)
def test_dar_set_order(tmp_path, files, expect):
    for f in files:
        (tmp_path / f).write_bytes(b"")
    folder, bases = archive.dar_set(tmp_path)
    assert bases == expect
    assert archive.dar_set(tmp_path / files[0])[1] == expect


@pytest.mark.parametrize(
    "files, message",
    [([], "no full-"), (["full-a.1.dar", "full-b.1.dar"], "2 full backups"), (["inc-001.1.dar"], "no full-")],
)
def test_dar_set_errors(tmp_path, files, message):
    for f in files:
        (tmp_path / f).write_bytes(b"")
    with pytest.raises(archive.BadInputError, match=message):
        archive.dar_set(tmp_path)


def test_dar_incremental_file_given(tmp_path):
    (tmp_path / "full-a.1.dar").write_bytes(b"")
    (tmp_path / "inc-001-a.1.dar").write_bytes(b"")
    with pytest.raises(archive.BadInputError, match="incremental"):
        archive.dar_set(tmp_path / "inc-001-a.1.dar")


@pytest.mark.skipif(shutil.which("dar") is None, reason="the dar program is not installed")
def test_dar_full_then_incrementals_in_order(tmp_path, cli):
    src = tmp_path / "src"
    bk = tmp_path / "set1"
    bk.mkdir()
    (src / "home/e-smith").mkdir(parents=True)
    (src / "home/e-smith/a").write_text("v1")
    os.utime(src / "home/e-smith/a", (MAIL_MTIME, MAIL_MTIME))

    def dar(*args):
        subprocess.run(["dar", "-N", "-Q", *args], check=True, capture_output=True)

    dar("-c", str(bk / "full-201901010000"), "-R", str(src))
    (src / "home/e-smith/a").write_text("v2")
    (src / "home/e-smith/b").write_text("new")
    dar("-c", str(bk / "inc-001-201901020000"), "-R", str(src), "-A", str(bk / "full-201901010000"))
    (src / "home/e-smith/b").unlink()
    (src / "home/e-smith/c").write_text("c")
    dar("-c", str(bk / "inc-002-201901030000"), "-R", str(src), "-A", str(bk / "inc-001-201901020000"))
    r = cli("explode", bk / "full-201901010000.1.dar", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert "full-201901010000, inc-001-201901020000, inc-002-201901030000" in r.stdout
    out = tmp_path / "out/home/e-smith"
    assert sorted(os.listdir(out)) == ["a", "c"]
    assert (out / "a").read_text() == "v2"

"""renames.rename_noreplace: a message renamed never replaces a name already there, by renameat2's flag
where the system has it and by a check where it has not; both ways behave alike."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from maildirsync import renames


def _no_flag(olddir, old, newdir, new, flags):
    ctypes.set_errno(errno.ENOSYS)  # a kernel older than renameat2 (3.10 without the backport)
    return -1


@pytest.fixture(params=["renameat2", "by-syscall-number", "check-then-rename", "no-such-call"])
def way(request, monkeypatch):
    if request.param == "renameat2":
        if renames._renameat2 is None:
            pytest.skip("no renameat2 here")
    elif request.param == "by-syscall-number":
        # What NethServer 7 gets: glibc 2.17 has no renameat2 symbol, the kernel has the call.
        by_number = renames._bind(symbol=False)
        if by_number is None:
            pytest.skip("no syscall number known for this machine")
        monkeypatch.setattr(renames, "_renameat2", by_number)
    elif request.param == "check-then-rename":
        monkeypatch.setattr(renames, "_renameat2", None)
    else:
        monkeypatch.setattr(renames, "_renameat2", _no_flag)
    return request.param


def test_renames_keeping_the_inode(tmp_path, way):
    a, b = tmp_path / "1.M1P1.h:2,", tmp_path / "1.M1P1.h:2,S"
    a.write_bytes(b"mail")
    ino = a.stat().st_ino
    renames.rename_noreplace(os.fsencode(a), os.fsencode(b))
    assert not a.exists() and b.read_bytes() == b"mail" and b.stat().st_ino == ino
    if way in ("renameat2", "by-syscall-number"):
        assert renames._renameat2 is not None  # the call did it: no fall back to check-then-rename


def test_never_replaces_an_existing_name(tmp_path, way):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"ours")
    b.write_bytes(b"the mail server's")
    with pytest.raises(FileExistsError) as e:
        renames.rename_noreplace(os.fsencode(a), os.fsencode(b))
    assert "already exists on the destination" in str(e.value)
    assert a.read_bytes() == b"ours" and b.read_bytes() == b"the mail server's"


def test_never_replaces_a_dangling_link(tmp_path, way):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"ours")
    os.symlink("nowhere", b)
    with pytest.raises(FileExistsError):
        renames.rename_noreplace(os.fsencode(a), os.fsencode(b))
    assert os.readlink(b) == "nowhere" and a.exists()


def test_a_missing_source_is_the_error_rename_gives(tmp_path, way):
    with pytest.raises(FileNotFoundError) as e:
        renames.rename_noreplace(os.fsencode(tmp_path / "gone"), os.fsencode(tmp_path / "b"))
    assert e.value.errno == errno.ENOENT and not (tmp_path / "b").exists()


def test_without_the_call_it_checks_from_then_on(tmp_path, monkeypatch):
    monkeypatch.setattr(renames, "_renameat2", _no_flag)
    (tmp_path / "a").write_bytes(b"x")
    renames.rename_noreplace(os.fsencode(tmp_path / "a"), os.fsencode(tmp_path / "b"))
    assert (tmp_path / "b").exists() and renames._renameat2 is None

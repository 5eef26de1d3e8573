"""transport.read_local: a control file read whole with raw reads, with the stat of what was read."""

from __future__ import annotations

import os

import pytest

from maildirsync.transport import read_local


@pytest.mark.parametrize("size", [0, 1, 4095, 65536, 200_001])
def test_reads_the_whole_file_and_its_stat(tmp_path, size):
    p = tmp_path / "dovecot-uidlist"
    data = os.urandom(size)
    p.write_bytes(data)
    got, st = read_local(os.fsencode(p))
    assert got == data
    assert (st.st_ino, st.st_size) == (p.stat().st_ino, size)


def test_a_file_that_grew_after_its_stat_is_read_to_its_end(tmp_path, monkeypatch):
    p = tmp_path / "dovecot-uidlist"
    p.write_bytes(b"3 V1 N2\n1 :a\n")
    real = os.fstat

    def then_appended(fd):
        st = real(fd)
        with open(p, "ab") as f:  # Dovecot appends a line between our stat and our read
            f.write(b"2 :b\n" * 20_000)
        return st

    monkeypatch.setattr(os, "fstat", then_appended)
    got, st = read_local(os.fsencode(p))
    assert got == b"3 V1 N2\n1 :a\n" + b"2 :b\n" * 20_000 and st.st_size == 13


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_local(os.fsencode(tmp_path / "nope"))

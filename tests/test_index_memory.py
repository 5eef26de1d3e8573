"""The index's pages leave a run's resident memory once read (issue 10: memory flat at every size). LMDB
maps its file; every page read stays resident in the process, so without dropping them a run's memory
grows with the index, and the page walk that guards against damaged pages maps it whole. That walk is
spared where the index is as the last run closed it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from maildirsync import index as index_mod
from maildirsync.index import StateDir

MIB = 1 << 20


def _mapped_kib(data_mdb: str) -> int:
    """Resident KiB of this process's mappings of ``data_mdb`` (/proc/self/smaps)."""
    real, total, inside = os.path.realpath(data_mdb), 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5:  # a mapping's first line
                inside = head[-1] == real
            elif inside and head[0] == "Rss:":
                total += int(head[1])
    return total


@pytest.fixture(scope="module")
def big_index(tmp_path_factory):
    """About 40 MiB of index: 100 folders' lists of 400 KiB."""
    state = StateDir(tmp_path_factory.mktemp("state"))
    ix, _ = state.open_index(readonly=False)
    b = ix.batch()
    for f in range(100):
        b.put_lists(b"alice", b".F%03d" % f, {b"s:cur": os.urandom(400 * 1024)})
    b.commit()
    ix.close()
    return state


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux only")
def test_trim_drops_the_pages_a_run_has_read(big_index):
    ix, _ = big_index.open_index(readonly=True)
    try:
        data = os.path.join(ix.path, "data.mdb")
        for f in range(100):  # read as the index's own reads do, without the trims they make
            assert [len(v) for _k, v in ix._scan(ix._lists, b"alice\0.F%03d\0" % f)] == [400 * 1024]
        assert _mapped_kib(data) > 30 * 1024  # read: resident
        ix.trim()
        assert _mapped_kib(data) < 2 * 1024
        # and what was dropped reads back the same, from the page cache
        assert len(ix.folder_lists(b"alice", b".F042")[b"s:cur"]) == 400 * 1024
    finally:
        ix.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux only")
def test_the_index_trims_its_map_while_a_run_reads_it(big_index):
    """Nobody calls trim: reading folder after folder, the map never holds more than a few folders'
    pages (index.TRIM_EVERY reads between trims), not the 40 MiB read in all."""
    ix, _ = big_index.open_index(readonly=True)
    try:
        data, most = os.path.join(ix.path, "data.mdb"), 0
        for f in range(100):
            assert len(ix.folder_lists(b"alice", b".F%03d" % f)[b"s:cur"]) == 400 * 1024
            most = max(most, _mapped_kib(data))
        assert most < 12 * 1024, f"{most} KiB of the index mapped at once"
    finally:
        ix.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux only")
def test_a_large_batch_trims_the_map_as_it_writes(tmp_path):
    """One transaction touching a page in every corner of the file (held-back statuses of many users):
    LMDB reads each page it copies through the map; every index.TRIM_OPS operations it is trimmed, and
    what is written is all there."""
    state = StateDir(tmp_path / "s")
    ix, _ = state.open_index(readonly=False)
    b = ix.batch()
    for f in range(40):
        b.put_lists(b"alice", b".F%03d" % f, {b"s:cur": os.urandom(400 * 1024)})
    b.commit(defer=False)
    ix.close()
    ix, _ = state.open_index(readonly=False)
    try:
        data = os.path.join(ix.path, "data.mdb")
        ix.trim()
        # a write transaction that rewrites every big value: each one read through the map to be freed
        b = ix.batch()
        for f in range(40):
            b.put_lists(b"alice", b".F%03d" % f, {b"s:cur": b"x" * 100})
        for n in range(600):
            b.put_meta(b"k%05d" % n, b"v")
        b.commit(defer=False)
        assert _mapped_kib(data) < 8 * 1024
        assert ix.folder_lists(b"alice", b".F039") == {b"s:cur": b"x" * 100}
        assert ix.meta(b"k00599") == b"v"
    finally:
        ix.close()


# Runs a command as its own child and prints that child's peak RSS in KiB: a fresh small parent, so that
# no earlier child of the test process can hide the number (RUSAGE_CHILDREN keeps the largest).
LAUNCH = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); " \
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def _peak_kib(*argv: str) -> int:
    out = subprocess.run([sys.executable, "-c", LAUNCH, *argv], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux only")
def test_the_page_walk_stays_small_on_a_large_index(big_index):
    alone = _peak_kib(sys.executable, "-c", "import maildirsync.index")
    walk = _peak_kib(sys.executable, "-m", "maildirsync.index", "--walk", str(big_index.index_path))
    assert walk - alone < 12 * 1024, f"the walk of a 40 MiB index peaked {walk - alone} KiB above a bare import"


def test_an_index_as_its_last_run_left_it_is_not_walked_again(tmp_path, monkeypatch):
    """Every page is read in a child process at open, in case the file was damaged (a second per two
    million messages, on every run). An index still as the run that closed it cleanly left it (inode,
    size, mtime, ctime) needs none; any change since, a run killed mid-write included, brings it back."""
    walks = []
    real = index_mod._start_walk
    monkeypatch.setattr(index_mod, "_start_walk", lambda path: walks.append(path) or real(path))
    state = StateDir(tmp_path / "s")
    for expect in (0, 0):  # a new index, then one closed cleanly
        ix, _ = state.open_index(readonly=False)
        b = ix.batch()
        b.put_meta(b"x", b"1")
        b.commit(defer=False)
        ix.close()
        assert len(walks) == expect
    state.check_ahead()
    ix, _ = state.open_index(readonly=True)
    ix.close()
    assert walks == []
    data = tmp_path / "s" / "index" / "data.mdb"
    os.utime(data)  # anything that changes the file
    ix, _ = state.open_index(readonly=False)
    assert len(walks) == 1
    b = ix.batch()
    b.put_meta(b"x", b"2")
    b.commit(defer=False)
    ix._env.close()  # as a run killed before closing leaves it: written to, its stamp not taken again
    ix._env = None
    state.open_index(readonly=False)[0].close()
    assert len(walks) == 2

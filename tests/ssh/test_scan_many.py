"""ExecSource.scan_many lists several mailboxes in one command and must see exactly what the reference
LocalSource sees of each."""

from __future__ import annotations

import os

import pytest

from maildirsync import ssh
from maildirsync.lab.corpus import CorpusSpec, generate
from maildirsync.transport import DIR, LocalSource, SourceError
from tests.sshfixtures import sshd_server  # noqa: F401


@pytest.fixture
def exec_source(sshd_server):  # noqa: F811
    src = ssh.open_source(sshd_server.host, sshd_server.port, "root", sshd_server.client_key, sshd_server.known_hosts)
    assert src.transport == "exec"
    yield src
    src.close()


def test_scan_many_matches_scan(exec_source, tmp_path):
    generate(tmp_path / "t", CorpusSpec(users=3, folders=3, messages=5, seed=2), processes=1)
    roots = sorted(os.fsencode(p) for p in (tmp_path / "t").glob("*/Maildir"))
    (tmp_path / "t" / "weird name\nwith newline").mkdir()
    roots.append(os.fsencode(tmp_path / "t" / "missing" / "Maildir"))
    # The second mailbox has been seen before: all but its INBOX cur/ are known and unchanged.
    first = LocalSource().scan(roots[1], {})
    known = {e.rel: e.mtime_ns for e in first.entries if e.kind == DIR and e.rel.rsplit(b"/", 1)[-1] in (b"cur", b"new")}
    known[b"cur"] = 1
    reqs = [(roots[0], {}), (roots[1], known), (roots[2], {}), (roots[3], {})]
    got = exec_source.scan_many(reqs)
    for (root, kn), res in zip(reqs[:3], got[:3]):
        one = LocalSource().scan(root, kn)
        assert set(res.entries) == set(one.entries)
        assert res.unchanged == one.unchanged
        assert res.errors == one.errors == []
        assert res.now_ns is not None
    assert b"cur" not in got[1].unchanged and b".Sent/cur" in got[1].unchanged
    assert isinstance(got[3], SourceError) and "missing" in str(got[3])


def test_stamps_taken_for_several_chunks_list_each_one_whole(exec_source, tmp_path):
    """The first pass of several chunks in one command, the second chunk by chunk: a Maildir asked in two
    chunks is listed whole in each (not left empty where the first pass put its entries at the first)."""
    generate(tmp_path / "t", CorpusSpec(users=2, folders=2, messages=4, seed=3), processes=1)
    a, b = sorted(os.fsencode(p) for p in (tmp_path / "t").glob("*/Maildir"))
    every = exec_source.stamps_many([a, b, a]).result(30)
    first = exec_source.lists_many(every[:2], [(a, {}), (b, {})])
    again = exec_source.lists_many(every[2:], [(a, {})])
    for res, root in ((first[0], a), (first[1], b), (again[0], a)):
        assert set(res.entries) == set(LocalSource().scan(root, {}).entries)


def test_the_first_passes_ahead_are_on_the_source_together():
    """A first pass is a find that takes the source a millisecond per mailbox: the run starts the first
    AHEAD + 1 commands' at once (their times overlap, not add up), and one more each time a chunk is
    taken, never more than that ahead (what is held stays bounded)."""
    import concurrent.futures

    from maildirsync import engine

    class Recording:
        def __init__(self):
            self.calls = []

        def stamps_many(self, roots):
            self.calls.append(list(roots))
            fut = concurrent.futures.Future()
            fut.set_result([SourceError("not read in this test") for _ in roots])
            return fut

    jobs = [engine.UserJob(f"u{i:03d}", b"/src/u%03d" % i, b"/dst/u%03d" % i) for i in range(300)]
    src = Recording()
    pf = engine._Prefetch(jobs, src, engine.RunOptions())
    pf.begin()
    sizes = [len(c) for c in src.calls]
    assert len(sizes) == pf.AHEAD + 1 and sizes[0] == pf.FIRST and all(n <= pf.STAMPS for n in sizes)
    started = sum(sizes)
    pf._first(1)  # what the list thread asks when it takes chunk 1: nothing new, it is on its way
    assert sum(len(c) for c in src.calls) == started
    pf._ahead(1)
    assert len(src.calls) == pf.AHEAD + 2
    asked = [r for c in src.calls for r in c]
    assert asked == [j.src_root for j in jobs[: len(asked)]]  # in order, each once


@pytest.mark.parametrize(
    "share, chunks",
    [
        (0, [4, 8, 16, 16, 16, 8]),  # nothing to read: chunks grow to CHUNK by count alone
        (1 / 16, [4, 8, 16, 16, 16, 8]),  # 16 of these are HELD, not more
        (1 / 14.5, [4, 8, 14, 14, 14, 14]),  # a little more: HELD cuts before 16
        (1 / 4, [4] * 17),  # large mailboxes: four at a time
        (4, [1] * 68),  # one mailbox larger than HELD is a chunk of its own, never none
    ],
)
def test_a_chunk_is_cut_where_its_listings_would_pass_what_may_be_held(tmp_path, share, chunks):
    """What is listed ahead is bounded by the size of what is to be read (the cur/new directories and
    the control files beside them), not by a count of users alone: large mailboxes come fewer at a time,
    so that a run over them holds no more than one over small ones."""
    import concurrent.futures

    from maildirsync import engine
    from maildirsync.index import StateDir
    from maildirsync.transport import FILE, RawEntry, RawScan

    class Recording:
        def __init__(self):
            self.lists = []

        def stamps_many(self, roots):
            fut = concurrent.futures.Future()
            half = int(engine._Prefetch.HELD * share) // 4  # the four sizes below make one mailbox's
            fut.set_result([RawScan(tops=[RawEntry(b"cur", DIR, half, 1), RawEntry(b".Sent", DIR, 4096, 1),
                                          RawEntry(b".Sent/cur", DIR, half, 1), RawEntry(b"new", DIR, 0, 1),
                                          RawEntry(b"dovecot-uidlist", FILE, half, 1),
                                          RawEntry(b".Sent/dovecot-uidlist", FILE, half, 1),
                                          RawEntry(b".Trash/dovecot-uidlist", FILE, 1 << 30, 1)])
                            for _ in roots])  # fmt: skip
            return fut

        def lists_many(self, outs, requests):
            self.lists.append(len(requests))
            return outs

        def read_many(self, items):
            return {}

    jobs = [engine.UserJob(f"u{i:03d}", b"/src/u%03d" % i, os.fsencode(tmp_path / f"d{i}")) for i in range(68)]
    src = Recording()
    index, _ = StateDir(tmp_path / "state").open_index(readonly=False)
    try:
        pf = engine._Prefetch(jobs, src, engine.RunOptions(), index)
        pf.begin()
        for j in jobs:
            assert isinstance(pf.get(j, dict), RawScan)
        pf.close()
    finally:
        index.close()
    assert src.lists == chunks  # (.Trash's cur/new were not in the first pass: its uidlist is not read)

"""The index never describes destination changes that are not on disk yet (DESIGN §4: the index is written
after what it describes is durable). A user's last flush is held back with its small batch, so that users
finishing one after another share one flush; these tests hold that it still comes first."""

from __future__ import annotations

import os

import pytest

from maildirsync import executor
from maildirsync.index import DEFER_OPS, StateDir


@pytest.fixture
def idx(tmp_path):
    ix, _ = StateDir(tmp_path / "state").open_index(readonly=False)
    yield ix
    ix.close()


def _flush_that_checks(ix, user, seen):
    def sync():
        seen.append(ix.user_status(user))  # what the index held when the flush ran

    return sync


@pytest.mark.parametrize("size", ["small (held back)", "large (written at once)"])
def test_flush_runs_before_the_batch_it_guards_is_written(idx, size):
    seen: list = []
    b = idx.batch()
    b.put_user(b"alice", {"status": "changed"})
    if size.startswith("large"):
        for i in range(DEFER_OPS):
            b.put_meta(b"k%d" % i, b"v")
    b.commit(sync=_flush_that_checks(idx, b"alice", seen))
    if size.startswith("small"):
        assert seen == [] and idx.user_status(b"alice") is None  # neither flushed nor written yet
        idx.flush()
    assert seen == [None]  # the flush ran once, before the record existed
    assert idx.user_status(b"alice") == {"status": "changed"}


def test_a_large_batch_pays_the_flushes_held_back_before_it(idx):
    seen: list = []
    small = idx.batch()
    small.put_user(b"bob", {"status": "changed"})
    small.commit(sync=_flush_that_checks(idx, b"bob", seen))
    large = idx.batch()
    for i in range(DEFER_OPS):
        large.put_meta(b"k%d" % i, b"v")
    large.commit()
    assert seen == [None] and idx.user_status(b"bob") == {"status": "changed"}


def test_closing_the_index_pays_what_was_held_back(tmp_path):
    seen: list = []
    sd = StateDir(tmp_path / "state")
    ix, _ = sd.open_index(readonly=False)
    b = ix.batch()
    b.put_user(b"carol", {"status": "ok"})
    b.commit(sync=_flush_that_checks(ix, b"carol", seen))
    ix.close()
    assert seen == [None]
    ix, _ = sd.open_index(readonly=True)
    assert ix.user_status(b"carol") == {"status": "ok"}
    ix.close()


@pytest.mark.skipif(executor._syncfs is None, reason="no syncfs(2) here")
def test_a_flush_owed_is_skipped_when_one_started_after_it_was_owed(tmp_path, monkeypatch):
    calls = []
    real = executor._syncfs
    monkeypatch.setattr(executor, "_syncfs", lambda fd: calls.append(fd) or real(fd))
    root = os.fsencode(tmp_path)
    owed = executor._Durable(root, {root})
    owed_too = executor._Durable(root, {root})
    assert executor._sync_filesystem(root)  # someone's flush, started after both were owed
    owed()
    owed_too()
    assert len(calls) == 1
    later = executor._Durable(root, {root})
    later()  # owed after the last flush started: needs one of its own
    assert len(calls) == 2

"""A destination folder's cur/new mtime stands for its contents only once the kernel's clock has moved past
it (stamps.py): a change made in the same tick would leave the mtime as the run read it, and the next run,
trusting the stamp, would not see that change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from maildirsync import engine, stamps
from maildirsync.lab.corpus import CorpusSpec, generate
from mdtools import T0
from test_quiet_mailbox import age, key_of, sync

NS = 1_700_000_000_123_456_789  # a stamp of a filesystem keeping nanoseconds
WHOLE = 1_700_000_000 * stamps.SECOND  # of one keeping seconds


@pytest.mark.parametrize(
    "mtime, now, trusted",
    [
        (NS, NS - 1, False),  # our clock behind the stamp
        (NS, NS, False),  # the same tick: a change now would be stamped the same
        (NS, NS + 1, True),  # the clock has moved on: any change gets another stamp
        (WHOLE, WHOLE, False),
        (WHOLE, WHOLE + stamps.SECOND // 2, False),  # the same second: a change now would keep it
        (WHOLE, WHOLE + stamps.SECOND - 1, False),
        (WHOLE, WHOLE + stamps.SECOND, True),
    ],
)
def test_a_stamp_is_settled_once_the_clock_has_passed_it(mtime, now, trusted):
    assert stamps.settled(mtime, now) is trusted


def test_a_fresh_stamp_is_waited_for_and_then_settled(tmp_path):
    (tmp_path / "m").write_bytes(b"x")
    m = os.stat(tmp_path).st_mtime_ns
    if m % stamps.SECOND == 0:
        pytest.skip("this filesystem keeps whole seconds")
    assert stamps.wait_settled(m) is True
    assert stamps.settled(m)


def test_a_whole_second_stamp_is_not_waited_for():
    """Waiting out a second for each mailbox is not worth it: such a folder is listed again next time."""
    now = stamps.fs_now_ns()
    m = now - now % stamps.SECOND
    if now - m > stamps.SECOND - 10 * stamps.TICK_NS:
        m += stamps.SECOND  # too close to the next second to be sure it is still this one
    assert stamps.wait_settled(m) is False


def _mailbox(root: Path) -> Path:
    return next(p for p in sorted(root.iterdir()) if p.is_dir()) / "Maildir"


@pytest.mark.parametrize("clock", ["stuck", "moving"])
def test_a_destination_change_in_the_tick_of_its_stamp_is_seen_next_run(tmp_path, monkeypatch, clock):
    """The destination's Dovecot expunges a message in the very tick the run read the folder's stamp
    (its mtime unchanged), then the source marks that message read. The next run must list the folder and
    find it gone (the destination's delete wins), not plan a rename from the name the index remembers."""
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=1, folders=1, messages=6, seed=3, layout="plain"), processes=1)
    age(src)
    if clock == "stuck":  # the kernel's clock has not ticked since the run wrote: no stamp is settled
        monkeypatch.setattr(stamps, "fs_now_ns", lambda: 0)
        monkeypatch.setattr(stamps, "wait_settled", lambda *a, **k: False)
    first = sync(src, dst, state)
    assert [u.status for u in first.users] == ["changed"]
    monkeypatch.undo()

    cur = _mailbox(dst) / "cur"
    name = sorted(n for n in os.listdir(cur) if ":2," in n)[0]
    base = name.split(":2,")[0]
    before = os.stat(cur)
    os.unlink(cur / name)
    if clock == "stuck":  # the same tick: the directory keeps the stamp the run read
        os.utime(cur, ns=(before.st_atime_ns, before.st_mtime_ns))
    scur = _mailbox(src) / "cur"
    old = next(n for n in os.listdir(scur) if n.startswith(base + ":2,"))
    flags = old.split(":2,")[1]
    os.rename(scur / old, scur / (base + ":2," + "".join(sorted(set(flags) | {"S", "F"}))))
    later = (T0 + 3600) * 10**9  # changed, and long enough ago for the source's stamp to be trusted
    os.utime(scur, ns=(later, later))

    second = sync(src, dst, state)
    [u] = second.users
    assert u.status in ("ok", "changed"), u.reason
    assert u.counts()["renamed"] == 0
    assert not [n for n in os.listdir(cur) if n.startswith(base)]  # the destination's delete stands


def test_the_run_leaves_settled_stamps_for_the_folders_it_wrote(tmp_path):
    """The wait is real: right after a run, every folder it wrote has its stamps in the index (the next
    run's quiet path depends on them)."""
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=2, folders=2, messages=5, seed=4, layout="plain"), processes=1)
    age(src)
    sync(src, dst, state)
    idx, _ = engine.state_dir_for(state, key_of(src, dst)).open_index(readonly=True)
    try:
        folders = {u: idx.user_folders(u) for u in idx.all_status()}
    finally:
        idx.close()
    assert folders and all(st.dst_mtimes for fs in folders.values() for st in fs.values())

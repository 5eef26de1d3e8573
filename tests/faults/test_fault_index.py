"""The index lost, damaged, or held by another run (issue 2 "The index", issue 6 "an index file deleted or
truncated between runs", "two runs started at once"; DESIGN.md §4 "Nothing lost", README "One run at a
time").

A lost or damaged index is set aside and rebuilt by adopting what the destination holds: nothing is
downloaded again (proven by a source that counts every byte it hands out). A second run while one holds
the index exits 4 naming the holder, and the first completes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from faulttools import (
    Counting, assert_converged, cli_argv, lmdb_table_children, local_sync, make_sme8_world, record, start_cli,
    statuses, wait_for_lock,
)  # fmt: skip
from maildirsync import engine, local
from maildirsync.index import StateDir
from maildirsync.lab.corpus import CorpusSpec, generate
from maildirsync.lab.scenarios import apply as mutate
from maildirsync.ssh import open_source
from maildirsync.transport import LocalSource
from mdtools import cli


def _truncate(to):
    def damage(index: Path) -> None:
        data = index / "data.mdb"
        os.truncate(data, to(data.stat().st_size))

    return damage


def _garbage_header(index: Path) -> None:
    with open(index / "data.mdb", "r+b") as f:
        f.write(os.urandom(2 * os.sysconf("SC_PAGE_SIZE")))


# name -> (damage done to <state>/<key>/index, whether the run must say it set a broken index aside)
DAMAGES = {
    "index-directory-deleted": (shutil.rmtree, False),
    "data-file-deleted": (lambda i: (i / "data.mdb").unlink(), False),
    "lock-and-data-deleted": (lambda i: [(i / n).unlink() for n in ("data.mdb", "lock.mdb")], False),
    "truncated-to-zero": (_truncate(lambda n: 0), True),
    "truncated-to-one-page": (_truncate(lambda n: os.sysconf("SC_PAGE_SIZE")), True),
    "truncated-to-half": (_truncate(lambda n: n // 2), True),
    "header-overwritten": (_garbage_header, True),
}
CASES = [(d, "local") for d in DAMAGES] + [(d, "ssh") for d in ("index-directory-deleted", "truncated-to-half",
                                                                  "header-overwritten")]


@pytest.fixture
def world(tmp_path, request):
    """(jobs, a fresh source for a run, the pairs to compare, the state dir) for a local or SSH sync."""
    kind = request.param
    if kind == "local":
        src, dst = tmp_path / "src", tmp_path / "dst"
        generate(src, CorpusSpec(users=2, folders=3, messages=12, seed=31, layout="plain"), processes=1)
        jobs, _key, _notes = local.jobs(src, dst, [], create=True)
        yield jobs, LocalSource, [(src, dst)], tmp_path / "state" / "local"
        return
    server = request.getfixturevalue("sshd_server")
    w = make_sme8_world(tmp_path, CorpusSpec(users=2, folders=3, messages=12, seed=32, layout="sme8"))
    jobs = [engine.UserJob(u, os.fsencode(s), os.fsencode(d)) for u, (s, d) in zip(w.users, w.pairs())]
    opened = []

    def source():
        s = open_source(server.host, server.port, "root", server.client_key, server.known_hosts)
        opened.append(s)
        return s

    yield jobs, source, w.pairs(), w.state / "ssh"
    for s in opened:
        s.close()


def run(jobs, source, state: Path) -> engine.RunResult:
    return engine.run(jobs, source, StateDir(state), engine.RunOptions(owner=None))


@pytest.mark.parametrize("world, damage", [(t, d) for d, t in CASES], indirect=["world"],
                         ids=[f"{t}-{d}" for d, t in CASES])
def test_damaged_index_is_rebuilt_by_adopting_without_download(world, damage):
    jobs, source, pairs, state = world
    first = run(jobs, source(), state)
    assert set(statuses(first)) == {"changed"}
    messages = sum(u.counts()["new"] for u in first.users)
    hurt, says_so = DAMAGES[damage]
    hurt(state / "index")

    counting = Counting(source())
    r = run(jobs, counting, state)
    assert counting.fetched == [] and counting.bytes == 0  # nothing downloaded again
    assert sum(u.counts()["adopted"] for u in r.users) == messages
    assert "failed" not in statuses(r)
    if says_so:
        assert any("rebuilt" in n and "index.broken-" in n for n in r.notes), r.notes
        assert list(state.glob("index.broken-*"))  # set aside, not deleted: it may be looked at
    assert_converged(pairs)
    assert set(statuses(run(jobs, source(), state))) == {"ok"}  # and the rebuilt index is whole
    record(f"index {damage} ({'local' if source is LocalSource else 'ssh'}): rebuilt by adopting "
           f"{messages} messages, 0 bytes downloaded")


def test_truncated_index_through_the_cli_is_one_note_and_no_download(tmp_path, sshd_server):
    world = make_sme8_world(tmp_path, CorpusSpec(users=2, folders=2, messages=10, seed=33, layout="sme8"))
    args = world.args(sshd_server, "--json")
    assert cli(*args).returncode == 0
    data = next(world.state.glob("*/index/data.mdb"))
    os.truncate(data, data.stat().st_size // 2)
    p = cli(*world.args(sshd_server))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    notes = [ln for ln in p.stdout.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 1 and "truncated" in notes[0] and "rebuilt from the destination" in notes[0], p.stdout
    rep = json.loads(cli(*args).stdout)
    assert {u["status"] for u in rep["users"]} == {"ok"}
    assert_converged(world.pairs())


@pytest.mark.parametrize("stamp_put_back", [False, True], ids=["as-written", "mtime-put-back"])
def test_index_with_a_damaged_page_is_set_aside_and_rebuilt(tmp_path, stamp_put_back):
    """Found here (fixed in 5e965ce): one zeroed page of the message table made LMDB abort the process
    (SIGABRT, an mdb.c assertion) or raise lmdb.CorruptedError (a traceback) on every run, because only
    the main table was read at open; the index was never set aside. An index as its last run closed it
    is not walked again: a change with its mtime put back still is (its ctime moved)."""
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=2, folders=3, messages=100, seed=34, layout="plain"), processes=1)
    base = ["sync", src, dst, "--state-dir", state, "--create", "--owner", "keep"]
    assert cli(*base).returncode == 0
    data = next(state.glob("*/index/data.mdb"))
    pages = lmdb_table_children(data, b"msgs")
    assert pages, "the msgs table fits in one page: make the corpus larger"
    before = data.stat()
    with open(data, "r+b") as f:  # one page of the message table zeroed, as a bad disk block would
        f.seek(pages[-1] * os.sysconf("SC_PAGE_SIZE"))
        f.write(bytes(os.sysconf("SC_PAGE_SIZE")))
    if stamp_put_back:
        os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    p = cli(*base)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr[-500:]}"
    assert "Traceback" not in p.stderr and "rebuilt" in p.stdout
    assert_converged([(src, dst)])


def test_after_a_lost_index_the_next_runs_have_nothing_to_do(tmp_path):
    """Found here (fixed in 5e965ce): after a lost index, a user whose destination dovecot-uidlist
    differed from the source's was 'changed' on every run for ever, its control file re-checked."""
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=1, folders=2, messages=6, seed=35, layout="plain"), processes=1)
    local_sync(src, dst, state)
    mutate("flags", src, "plain", seed=1, fraction=0.5)  # the source's dovecot-uidlist changes too
    shutil.rmtree(state)
    assert "failed" not in statuses(local_sync(src, dst, state))
    again = local_sync(src, dst, state)
    assert statuses(again) == ["ok"], [a for u in again.users for a in u.plan.changes()]


# --- two runs at once --------------------------------------------------------------------------------


def _two_runs(args, state: Path, pairs, logs: Path) -> None:
    """Start a run; once it holds the index, freeze it (SIGSTOP) so that it is certainly still running,
    start a second: it exits 4 naming the first. Thaw the first: it completes."""
    logs.mkdir(exist_ok=True)
    first = start_cli(args, logs / "first.log")
    try:
        assert wait_for_lock(state, first), (logs / "first.log").read_text()
        first.send_signal(signal.SIGSTOP)
        second = subprocess.run(cli_argv(*args), capture_output=True, text=True, timeout=120, check=False)
    finally:
        first.send_signal(signal.SIGCONT)
        rc = first.wait(timeout=300)
    assert second.returncode == 4, second.stdout + second.stderr
    assert f"pid {first.pid} " in second.stderr and "in use by" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert rc == 0, (logs / "first.log").read_text()
    assert_converged(pairs)


def test_two_local_runs_at_once(tmp_path):
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=2, folders=3, messages=20, seed=36, layout="plain"), processes=1)
    _two_runs(["sync", src, dst, "--state-dir", state, "--create", "--owner", "keep"], state, [(src, dst)],
              tmp_path / "logs")


def test_two_ssh_runs_at_once(tmp_path, sshd_server):
    world = make_sme8_world(tmp_path, CorpusSpec(users=2, folders=3, messages=20, seed=37, layout="sme8"))
    _two_runs(world.args(sshd_server), world.state, world.pairs(), tmp_path / "logs")

"""A source that changes under the run (issue 6 "a source file that vanishes between listing and
transfer", "a source that changes while it is being synced").

The first is made deterministic: a Source wrapper whose listing is followed, before any transfer, by the
change a concurrent IMAP client makes (a flag change, a first read, an expunge, a move). The run reports
the message it could not fetch, syncs the rest, and the next run converges. The second is a thread
mutating the source (flags, deliveries, moves, expunges) for as long as runs last: once it stops, a
re-run converges. Every transport: local, SFTP and find/tar over a real sshd.
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest

from faulttools import Truth, assert_converged, local_sync, make_sme8_world, record, statuses
from maildirsync import engine
from maildirsync.index import StateDir
from maildirsync.lab.corpus import CorpusSpec
from maildirsync.lab.scenarios import apply as mutate
from maildirsync.ssh import open_source
from maildirsync.transport import LocalSource
from mdtools import T0, mkmaildir, put

TRANSPORTS = ["local", "sftp", "exec"]


@pytest.fixture
def open_src(request):
    """transport -> a fresh Source of that kind reading this host (closed at teardown)."""
    opened = []

    def make(kind: str):
        if kind == "local":
            return LocalSource()
        s = request.getfixturevalue("sshd_server")
        src = open_source(s.host, s.port, "root", s.client_key, s.known_hosts, transport=kind)
        assert src.transport == kind
        opened.append(src)
        return src

    yield make
    for s in opened:
        s.close()


class ChangedAfterListing:
    """A real source; right after its listing, and before any transfer, the source changes as a
    concurrent IMAP client would change it."""

    def __init__(self, inner, change):
        self.inner, self.change = inner, change
        self.transport = getattr(inner, "transport", "local")

    def scan(self, root, known):
        raw = self.inner.scan(root, known)
        self.change()
        return raw

    def fetch(self, root, rels):
        return self.inner.fetch(root, rels)

    def read(self, root, rel):
        return self.inner.read(root, rel)

    def exists(self, root):
        return self.inner.exists(root)

    def close(self):
        pass


VICTIM = "1001.M2P1.host,S=7"
CHANGES = {  # what a concurrent client does to the victim: (path before, path after or None)
    "flag-change": ("cur/" + VICTIM + ":2,S", "cur/" + VICTIM + ":2,FS"),
    "first-read": ("new/" + VICTIM, "cur/" + VICTIM + ":2,S"),
    "expunge": ("cur/" + VICTIM + ":2,S", None),
    "move-to-another-folder": ("cur/" + VICTIM + ":2,S", ".Archive/cur/" + VICTIM + ":2,S"),
}


def small_maildir(root: Path, victim: str) -> Path:
    src = mkmaildir(root, ".Sent", ".Archive")
    put(src, "cur/1000.M1P1.host,S=6:2,S", b"first\n", T0)
    put(src, victim, b"second\n", T0 + 1)
    put(src, "cur/1002.M3P1.host,S=6:2,RS", b"third\n", T0 + 2)
    put(src, "new/1003.M4P1.host,S=7", b"fourth\n", T0 + 3)
    put(src, ".Sent/cur/2000.M5P1.host,S=5:2,S", b"sent\n", T0 + 4)
    put(src, "dovecot-uidlist", b"3 V1 N5\n1 :1000.M1P1.host,S=6:2,S\n", T0)
    return src


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("change", list(CHANGES))
def test_file_gone_between_listing_and_transfer(tmp_path, open_src, transport, change):
    before, after = CHANGES[change]
    src = small_maildir(tmp_path / "src", before)
    dst, state = tmp_path / "dst", tmp_path / "state"
    truth = Truth().learn(src)

    def concurrent_client():
        if after is None:
            os.unlink(src / before)
        else:
            os.rename(src / before, src / after)

    r = local_sync(src, dst, state, source=ChangedAfterListing(open_src(transport), concurrent_client))
    u = r.users[0]
    assert u.status == "failed" and "1 action(s) failed" in u.reason, (u.status, u.reason)
    [(action, why)] = u.outcome.failed
    assert action.base == VICTIM.encode() and why, why  # the victim, and what went wrong with it
    assert not truth.partials(dst)
    assert sum(1 for _ in (dst / "cur").iterdir()) + sum(1 for _ in (dst / "new").iterdir()) == 3  # the rest
    again = local_sync(src, dst, state, source=open_src(transport))
    assert statuses(again) in (["changed"], ["ok"])
    assert_converged([(src, dst)], seconds=transport == "sftp")  # SFTP v3: whole-second mtimes
    record(f"source file gone between listing and transfer ({change}, {transport}): reported as "
           f"'{why[:60]}', the rest synced, the next run converged")


class Mutator(threading.Thread):
    """Changes the source the way a live Dovecot does, as fast as it can, until stopped."""

    def __init__(self, root: Path, layout: str, seed: int):
        super().__init__(daemon=True)
        self.root, self.layout = root, layout
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.steps = 0
        self.error: BaseException | None = None

    def run(self):
        try:
            while not self.halt.is_set():
                scenario = self.rng.choice(("flags", "flags", "new", "moved", "deleted"))
                mutate(scenario, self.root, self.layout, seed=self.rng.randrange(1 << 30), step=self.steps + 1,
                       fraction=0.02)
                self.steps += 1
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def stop(self) -> int:
        self.halt.set()
        self.join(60)
        if self.error is not None:
            raise self.error
        return self.steps


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_source_changing_during_the_sync(tmp_path, open_src, transport):
    world = make_sme8_world(tmp_path, CorpusSpec(users=2, folders=3, messages=40, seed=61, layout="sme8"))
    jobs = [engine.UserJob(u, os.fsencode(s), os.fsencode(d)) for u, (s, d) in zip(world.users, world.pairs())]
    state = StateDir(world.state / "race")
    opts = engine.RunOptions(owner=None, jobs=2)
    source = open_src(transport)
    mutator = Mutator(world.src, "sme8", seed=62)
    mutator.start()
    try:
        for _ in range(3):  # the first sync and two incremental ones, all under a changing source
            r = engine.run(jobs, source, state, opts)
            assert all(u.status in ("changed", "ok", "failed") for u in r.users)
    finally:
        steps = mutator.stop()
    assert steps > 0
    truth = Truth().learn(world.src)
    engine.run(jobs, source, state, opts)  # the source is still now: one re-run
    assert not truth.partials(world.dest)
    assert_converged(world.pairs(), seconds=transport == "sftp")
    assert set(statuses(engine.run(jobs, source, state, opts))) == {"ok"}
    record(f"source changing during the sync ({transport}): {steps} concurrent mutations over 3 runs; "
           "one re-run converged, 0 lost, 0 duplicates")

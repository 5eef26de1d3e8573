"""A user's run is let go when it ends (issue 10: memory flat at every size). What a run builds for a user
(listings, records, plan, UID contexts) must be freed by reference counting the moment the user is done:
held in a reference cycle, it waits for the interpreter's cycle collector, which may come by only after
a dozen more users, so a run's peak memory grew with the size of its mailboxes."""

from __future__ import annotations

import gc

import pytest

from maildirsync import engine, local
from maildirsync.lab.corpus import CorpusSpec, generate
from maildirsync.lab.scenarios import apply as mutate

# Where a run's objects live: none of them may be found only by the cycle collector.
OURS = ("maildirsync.",)


def _sync(src, dst, state):
    jobs, key, _notes = local.jobs(src, dst, [], create=True)
    # As the CLI runs without -v: only counts are kept of a user, so all the rest is to be freed.
    ro = engine.RunOptions(dry_run=False, plan=engine.Options(), owner=None, jobs=1, keep_actions=False)
    return engine.run(jobs, local.LocalSource(), engine.state_dir_for(state, key), ro)


def _cyclic_garbage_of_ours(fn) -> tuple:
    """Run ``fn`` with the cycle collector off: what it returned, and the objects of ours (type name ->
    count) that only the collector would have freed."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        got = fn()
        gc.collect()
        found: dict = {}
        for o in gc.garbage:
            mod = type(o).__module__ or ""
            if mod.startswith(OURS):
                found[type(o).__qualname__] = found.get(type(o).__qualname__, 0) + 1
        return got, found
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()


@pytest.mark.parametrize("scenario", ["initial", "nochange", "new", "flags", "moved", "deleted", "churn"])
def test_a_users_run_is_freed_without_the_cycle_collector(tmp_path, scenario):
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=3, folders=3, messages=20, seed=11, layout="plain"), processes=1)
    if scenario != "initial":
        _sync(src, dst, state)
        if scenario != "nochange":
            # Lists changed as Dovecot changes them, so that some are carried verbatim (the path of uidplan's
            # lazily worked-out contexts) and others merged.
            mutate(scenario, src, "plain", seed=5, step=1, uidlists="dovecot")
    run, left = _cyclic_garbage_of_ours(lambda: _sync(src, dst, state))
    assert all(u.status in ("ok", "changed") for u in run.users), [(u.user, u.reason) for u in run.users]
    assert left == {}

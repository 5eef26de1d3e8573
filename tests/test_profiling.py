"""MAILDIRSYNC_PROFILE's per-thread profiles: every thread is in the file, and with
MAILDIRSYNC_PROFILE_CLOCK=cpu a thread that waits is charged nothing for the wait."""

from __future__ import annotations

import pstats
import threading
import time

import pytest

from maildirsync.profiling import ThreadProfiles


def _waits_in_a_thread() -> None:
    time.sleep(0.3)


@pytest.mark.parametrize("clock, charged", [(None, True), ("cpu", False)])
def test_a_wait_in_another_thread_is_charged_by_the_wall_clock_only(tmp_path, monkeypatch, clock, charged):
    if clock:
        monkeypatch.setenv("MAILDIRSYNC_PROFILE_CLOCK", clock)
    else:
        monkeypatch.delenv("MAILDIRSYNC_PROFILE_CLOCK", raising=False)
    tp = ThreadProfiles()
    with tp:
        t = threading.Thread(target=_waits_in_a_thread)
        t.start()
        t.join()
    tp.dump(str(tmp_path / "p.pstats"))
    stats = pstats.Stats(str(tmp_path / "p.pstats")).stats
    (key,) = [k for k in stats if k[2] == "_waits_in_a_thread"]
    cumulative = stats[key][3]
    assert (cumulative >= 0.3) if charged else (cumulative < 0.1)

"""``--profile FILE``: where a run's time goes, every thread included (the engine's workers and the SSH
loop thread do most of the work, and cProfile alone sees only the thread that starts it).

Each thread gets its own ``cProfile.Profile``; at the end they are merged into one pstats file:
``python -m pstats FILE`` then ``sort cumulative`` / ``stats 30``. Times are summed over threads.

By default a thread's time is wall time: a thread waiting for the GIL is charged to the call it waits
in, and on a busy run that is mostly some other thread's work. With MAILDIRSYNC_PROFILE_CLOCK=cpu each
thread is timed by its own CPU clock instead, which shows what the work costs (and nothing of waits).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import threading
import time
from typing import List


class ThreadProfiles:
    def __init__(self) -> None:
        self.profiles: List[cProfile.Profile] = []
        self._lock = threading.Lock()
        cpu = os.environ.get("MAILDIRSYNC_PROFILE_CLOCK") == "cpu"
        self._make = (lambda: cProfile.Profile(time.thread_time)) if cpu else cProfile.Profile

    def _start_here(self, *_args) -> None:
        # Called as the profile hook of each new thread: replace ourselves by a real profiler.
        p = self._make()
        with self._lock:
            self.profiles.append(p)
        sys.setprofile(None)
        p.enable()

    def __enter__(self) -> "ThreadProfiles":
        threading.setprofile(self._start_here)
        main = self._make()
        self.profiles.append(main)
        main.enable()
        return self

    def __exit__(self, *exc) -> None:
        threading.setprofile(None)
        for p in self.profiles:
            p.disable()

    def dump(self, path: str) -> None:
        stats = None
        for p in self.profiles:
            try:
                stats = pstats.Stats(p) if stats is None else stats.add(p)
            except TypeError:  # a thread that never ran any Python code
                continue
        if stats is not None:
            stats.dump_stats(path)

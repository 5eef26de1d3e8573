"""When a destination directory's mtime can stand for its contents.

A run records the mtimes of the cur/ and new/ it left, and the next run trusts a folder whose mtimes are
the same. That holds only if a change made after the mtime was read would show as another mtime. The
kernel stamps a change with its coarse clock (the time of the last tick, 1-10 ms apart), or, since
Linux 6.13, with a finer one once the old stamp has been read; a filesystem may keep whole seconds only.
So a change in the same tick as the stamp we read could leave it as it was: a stamp is *settled* only
once the coarse clock has moved past it (past its second, where the filesystem keeps seconds). Reading
that clock, rather than waiting a fixed margin, costs a run at most one tick per mailbox it wrote in.
"""

from __future__ import annotations

import sys
import time

SECOND = 1_000_000_000
# Where the coarse clock cannot be read (not Linux): a margin longer than any tick.
FALLBACK_MARGIN_NS = 20_000_000
# Linux's CLOCK_REALTIME_COARSE, which the time module does not name: what file times are taken from.
_COARSE = 5 if sys.platform.startswith("linux") else None


def _coarse_clock():
    if _COARSE is None:
        return None
    try:
        tick = time.clock_getres(_COARSE)
        time.clock_gettime_ns(_COARSE)
    except (OSError, AttributeError):
        return None
    return tick


_TICK = _coarse_clock()
TICK_NS = int(_TICK * SECOND) if _TICK else FALLBACK_MARGIN_NS


def fs_now_ns() -> int:
    """No change made from now on can be stamped earlier than this: the coarse clock, as the kernel reads
    it for file times (where it cannot be read, our clock less a margin)."""
    if _TICK:
        return time.clock_gettime_ns(_COARSE)
    return time.time_ns() - FALLBACK_MARGIN_NS


def settled(mtime_ns: int, now_ns: int | None = None) -> bool:
    """Would any change made from ``now_ns`` on (default: now) give the directory another mtime?"""
    now = fs_now_ns() if now_ns is None else now_ns
    if mtime_ns % SECOND == 0:  # a filesystem keeping whole seconds: the whole second must be over
        return now >= mtime_ns + SECOND
    return now > mtime_ns


def wait_settled(mtime_ns: int, longest_ns: int = 2 * FALLBACK_MARGIN_NS) -> bool:
    """Sleep until ``mtime_ns`` is settled: a tick at most, as the coarse clock passes it. False, at once,
    where that would take longer than ``longest_ns`` (a whole-second stamp, a clock set back)."""
    whole = mtime_ns % SECOND == 0
    due = mtime_ns + (SECOND if whole else 0) + TICK_NS + 50_000  # by our clock, the coarse one past it
    for _ in range(8):
        if settled(mtime_ns):
            return True
        wait = due - time.time_ns()
        if wait > longest_ns:
            return False
        time.sleep(max(wait, TICK_NS // 8) / SECOND)
    return settled(mtime_ns)

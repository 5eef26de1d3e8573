"""``--bwlimit``: one byte budget for every stream of the connection, as rsync's option is.

Reading no faster than the budget is enough: SSH's flow control stops the source's find, tar or SFTP
server once the channel's window is full, so the link carries the budget plus at most one window.
"""

from __future__ import annotations

import asyncio
import time


class Throttle:
    """Bytes per second across all channels. Used from the connection's event loop only (no lock)."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("a bandwidth limit must be above zero")
        self.rate = float(rate)
        self._free_at = 0.0  # when the bytes read so far will have been paid for

    async def take(self, n: int) -> None:
        """Account for ``n`` bytes just read; sleep until the budget allows them."""
        now = time.monotonic()
        # Idle time is not saved up: after a pause the budget starts again from now, no burst.
        self._free_at = max(self._free_at, now) + n / self.rate
        delay = self._free_at - now
        if delay > 0.001:
            await asyncio.sleep(delay)


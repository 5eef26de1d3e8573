"""The two worlds: an asyncio loop in a background thread (asyncssh) and synchronous engine threads.

``LoopThread.run`` hands a coroutine over and waits for its result; ``Pipe`` streams items from a
producer coroutine to a consuming thread with bounded memory, without one cross-thread future per
chunk (which would cost more than the SFTP request it carries).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "maildirsync-ssh") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def make(self, factory: Callable[[], T]) -> T:
        """Build asyncio locks and events on the loop: before Python 3.10 they bind, when made, to the
        loop current in the making thread, which is not this one."""

        async def build() -> T:
            return factory()

        return self.run(build())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except BaseException:
            # Ctrl-C or a timeout in the calling thread: do not leave the coroutine running.
            fut.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.stop() called from its own loop")

        async def _drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(_drain(), self.loop).result(10)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


class Abandoned(Exception):
    """The consumer went away; the producer stops."""


END = object()  # what Pipe.get returns once the producer has finished cleanly


class Pipe:
    """Bounded stream from the loop thread (``put``/``finish``) to one consumer thread (``get``).

    ``limit``: bytes queued before the producer waits. A worker writes messages faster than one stream
    brings them, so a few MiB keep it busy; 8 MiB a stream, with asyncssh's window before it
    (execsrc.WINDOW), held most of the initial sync's peak memory."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = 2 << 20) -> None:
        self._loop = loop
        self._limit = limit
        self._items: deque = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._room: asyncio.Event | None = None  # made and touched on the loop only (see LoopThread.make)
        self._abandoned = False
        self._waiting = False  # the producer waits for room: only then is a wake-up worth sending

    # -- loop side
    async def put(self, item: Any, size: int = 0) -> None:
        while True:
            with self._cond:
                if self._abandoned:
                    raise Abandoned()
                # An item larger than the limit still passes when the pipe is empty.
                if self._bytes + size <= self._limit or not self._items:
                    self._items.append((item, size))
                    self._bytes += size
                    self._cond.notify()
                    return
                if self._room is None:
                    self._room = asyncio.Event()
                self._room.clear()
                self._waiting = True
            await self._room.wait()

    def finish(self, exc: BaseException | None = None) -> None:
        with self._cond:
            self._items.append((END, exc))
            self._cond.notify()

    # -- consumer side
    def get(self) -> Any:
        """The next item; at the end, :data:`END`, or the producer's exception raised."""
        with self._cond:
            while not self._items:
                self._cond.wait()
            item, size = self._items.popleft()
            if item is END:
                exc = size
                self._items.appendleft((item, exc))  # stays the answer to every later get()
                if exc is not None:
                    raise exc
                return END
            self._bytes -= size
            wake = self._waiting and self._bytes <= self._limit // 2
            if wake:
                self._waiting = False
        if wake:
            self._loop.call_soon_threadsafe(self._wake)
        return item

    def _wake(self) -> None:
        if self._room is not None:
            self._room.set()

    def abandon(self) -> None:
        with self._cond:
            self._abandoned = True
            self._items.clear()
            self._bytes = 0
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:
            pass  # loop already closed

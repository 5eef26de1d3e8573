"""The engine-side half of a fetch: turn a :class:`~.bridge.Pipe` of items into ``Fetched`` objects.

Producers (SFTP, tar) put, in request order, for each file either
``("err", rel, message)``, ``("whole", rel, data)``, or ``("open", rel)`` followed by ``("data", bytes)``
items and ``("eof",)`` (or ``("ferr", OSError)`` when the file broke off mid-way).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future

from ..transport import Fetched
from .bridge import END, Pipe
from .errors import ProtocolError


class _Chunks:
    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe
        self.done = False

    def __iter__(self) -> Iterator[bytes]:
        while not self.done:
            item = self._pipe.get()
            if item is END:
                self.done = True
                raise ProtocolError("the source stream ended in the middle of a file")
            tag = item[0]
            if tag == "data":
                yield item[1]
            elif tag == "eof":
                self.done = True
            elif tag == "ferr":
                self.done = True
                raise item[1]
            else:
                self.done = True
                raise ProtocolError(f"unexpected {tag!r} inside a file")

    def drain(self) -> None:
        # The engine moved on without reading the whole file (it gave up on it): skip its rest.
        try:
            for _ in self:
                pass
        except OSError:
            pass


def fetched_from(pipe: Pipe, fut: Future) -> Iterator[Fetched]:
    current: _Chunks | None = None
    try:
        while True:
            if current is not None and not current.done:
                current.drain()
            item = pipe.get()
            if item is END:
                return
            tag = item[0]
            if tag == "err":
                yield Fetched(item[1], (), error=item[2])
            elif tag == "whole":
                yield Fetched(item[1], (item[2],) if item[2] else ())
            elif tag == "open":
                current = _Chunks(pipe)
                yield Fetched(item[1], current)
            else:
                raise ProtocolError(f"unexpected {tag!r} between files")
    finally:
        pipe.abandon()
        fut.cancel()

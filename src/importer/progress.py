"""Progress by bytes: a rich progress bar on a terminal, plain lines otherwise.

Plain lines (a log file, a pipe, ``nohup``) are printed at every 10 % step so
that a long extraction leaves a readable trace without flooding the log.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def human(n: float) -> str:
    """Bytes as a short human string: ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


class Progress:
    """Interface: ``start(label, total)``, ``update(done)``, ``finish()``."""

    def start(self, label: str, total: int) -> None:  # pragma: no cover - interface
        pass

    def update(self, done: int) -> None:  # pragma: no cover - interface
        pass

    def finish(self) -> None:  # pragma: no cover - interface
        pass

    def abort(self) -> None:
        """Stop showing progress after an error (no "100%" line)."""


class NullProgress(Progress):
    pass


class PlainProgress(Progress):
    def __init__(self, stream: TextIO, step: int = 10) -> None:
        self.stream = stream
        self.step = step
        self.label = ""
        self.total = 0
        self.next_pct = 0
        self.t0 = 0.0

    def start(self, label: str, total: int) -> None:
        self.label, self.total, self.next_pct = label, max(total, 0), self.step
        self.t0 = time.monotonic()
        print(f"{label}: 0% of {human(self.total)}", file=self.stream, flush=True)

    def update(self, done: int) -> None:
        if self.total <= 0:
            return
        pct = done * 100 // self.total
        if pct >= self.next_pct and pct < 100:
            print(
                f"{self.label}: {pct}% ({human(done)} of {human(self.total)})",
                file=self.stream,
                flush=True,
            )
            self.next_pct = (pct // self.step + 1) * self.step

    def finish(self) -> None:
        dt = time.monotonic() - self.t0
        print(f"{self.label}: 100% of {human(self.total)} in {dt:.1f}s", file=self.stream, flush=True)


class RichProgress(Progress):  # pragma: no cover - needs a terminal
    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress as _RP,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._p = _RP(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self._task = None

    def start(self, label: str, total: int) -> None:
        if self._task is None:
            self._p.start()
        else:
            self._p.stop_task(self._task)
        self._task = self._p.add_task(label, total=max(total, 1))

    def update(self, done: int) -> None:
        if self._task is not None:
            self._p.update(self._task, completed=done)

    def abort(self) -> None:
        self._p.stop()
        self._task = None

    def finish(self) -> None:
        if self._task is not None:
            t = self._p.tasks[-1]
            self._p.update(self._task, completed=t.total)
            self._p.stop_task(self._task)
        self._p.stop()
        self._task = None


def make_progress(stream: TextIO | None = None, quiet: bool = False) -> Progress:
    stream = stream or sys.stderr
    if quiet:
        return NullProgress()
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if tty:
        try:
            return RichProgress(stream)
        except ImportError:  # pragma: no cover - rich comes with typer
            pass
    return PlainProgress(stream)

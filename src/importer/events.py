"""Run the ``migration-import`` event on an exploded backup.

Two runners with the same result type (:class:`EventRun`):

* :func:`run_signal_event` -- on NethServer, ``/sbin/e-smith/signal-event -j
  migration-import DIR``. With ``-j`` it prints one JSON object per line (event
  start, action start, action done with its exit code and time, event done);
  they are followed as they come. The reader is tolerant: it takes the action
  from ``action``/``name``, the exit code from ``exit``/``exit_code``/``status``,
  the time from ``time``/``elapsed``/``duration``, and keeps every line that is
  not JSON as the event's own output.
* :func:`run_builtin` -- elsewhere, the same semantics over an events
  directory (default ``/etc/e-smith/events``): the entries of ``<event>/``
  in name order; each executable file is run as ``handler <event> DIR`` with
  its standard output and error captured together; every handler runs, even
  after one failed; a handler killed by a signal is reported with the signal;
  a file that is not executable is reported and skipped (as e-smith does);
  sub-directories (``templates2expand``, ``services2adjust``) are not handlers.

The event fails if any handler did; :mod:`importer.report` builds the report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from importer.errors import BadInputError, ImporterError

EVENT = "migration-import"
SIGNAL_EVENT = "/sbin/e-smith/signal-event"
DEFAULT_EVENTS_DIR = "/etc/e-smith/events"

# statuses of an action
OK, FAILED, ERROR, SKIPPED, UNKNOWN = "ok", "failed", "error", "skipped", "unknown"


@dataclass
class Message:
    level: str  # ERROR, WARNING, FAILED
    line: str
    source: str  # "output" or the system log path


@dataclass
class ActionResult:
    name: str
    path: str | None = None
    status: str = UNKNOWN
    exit_code: int | None = None
    signal: str | None = None
    seconds: float = 0.0
    started: float = 0.0  # epoch
    reason: str | None = None
    output: str = ""
    messages: list[Message] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in (FAILED, ERROR, UNKNOWN)


@dataclass
class EventRun:
    event: str
    dir: str
    runner: str  # "signal-event" or "builtin"
    source: str  # the program or the events directory
    started: float = 0.0
    finished: float = 0.0
    actions: list[ActionResult] = field(default_factory=list)
    exit_code: int | None = None  # signal-event's own
    output: str = ""  # signal-event's lines that were not JSON


OnAction = Callable[[ActionResult, int, int], None]


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _finish_status(a: ActionResult, rc: int) -> None:
    if rc < 0:
        a.signal = _signame(-rc)
        a.exit_code = None
        a.status = FAILED
        a.reason = f"killed by {a.signal}"
    else:
        a.exit_code = rc
        a.status = OK if rc == 0 else FAILED
        if rc:
            a.reason = f"exit status {rc}"


# --------------------------------------------------------------------------- built-in


def list_handlers(events_dir: str | os.PathLike, event: str = EVENT) -> list[Path]:
    d = Path(events_dir) / event
    if not d.is_dir():
        raise BadInputError(
            f"no handlers for the event {event}: {d} is not a directory",
            "on NethServer install nethserver-base (it provides the event); or give --events-dir",
        )
    return [d / n for n in sorted(os.listdir(d)) if not (d / n).is_dir()]


def run_builtin(
    dir: str,
    events_dir: str | os.PathLike = DEFAULT_EVENTS_DIR,
    event: str = EVENT,
    on_action: OnAction | None = None,
) -> EventRun:
    handlers = list_handlers(events_dir, event)
    run = EventRun(event=event, dir=dir, runner="builtin", source=str(Path(events_dir) / event))
    run.started = time.time()
    for i, h in enumerate(handlers, 1):
        a = ActionResult(name=h.name, path=str(h), started=time.time())
        if not h.exists():
            a.status, a.reason = SKIPPED, "broken symbolic link"
        elif not h.is_file():
            a.status, a.reason = SKIPPED, "not a regular file"
        elif not os.access(h, os.X_OK):
            a.status, a.reason = SKIPPED, "not executable"
        else:
            t0 = time.monotonic()
            try:
                proc = subprocess.run(
                    [str(h), event, dir],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
                a.output = proc.stdout.decode("utf-8", "replace")
                _finish_status(a, proc.returncode)
            except OSError as e:
                a.status, a.reason = FAILED, f"cannot execute: {e.strerror or e}"
            a.seconds = time.monotonic() - t0
        run.actions.append(a)
        if on_action:
            on_action(a, i, len(handlers))
    run.finished = time.time()
    return run


# --------------------------------------------------------------------------- signal-event


def _first(obj: dict, *keys):
    for k in keys:
        if k in obj and obj[k] not in (None, ""):
            return obj[k]
    return None


_WORDS = {"success": 0, "ok": 0, "succeeded": 0, "failed": 1, "fail": 1, "failure": 1, "error": 1}


def _as_int(v) -> int | None:
    """An exit code from a JSON value: a number, a numeric string, or a word
    such as ``success``/``failed``."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            return _WORDS.get(v.strip().lower())
    return None


def _as_float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class JsonFollower:
    """Folds ``signal-event -j`` lines into :class:`ActionResult` records."""

    def __init__(self, on_action: OnAction | None = None) -> None:
        self.actions: dict[str, ActionResult] = {}
        self.order: list[str] = []
        self.other: list[str] = []
        self.total: int = 0
        self.done = 0
        self.on_action = on_action

    def feed(self, line: str) -> None:
        text = line.rstrip("\n")
        if not text.strip():
            return
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            self.other.append(text)
            return
        steps = _as_int(_first(obj, "steps", "total"))
        if steps:
            self.total = max(self.total, steps)
        action = _first(obj, "action", "name", "handler")
        if not action:
            return
        action = str(action)
        a = self.actions.get(action)
        if a is None:
            a = ActionResult(name=os.path.basename(action), path=action, started=time.time(), status="running")
            self.actions[action] = a
            self.order.append(action)
        rc = _as_int(_first(obj, "exit", "exit_code", "exitcode", "status"))
        if rc is None:
            return
        secs = _as_float(_first(obj, "time", "elapsed", "duration"))
        a.seconds = secs if secs is not None else time.time() - a.started
        _finish_status(a, rc)
        self.done += 1
        if self.on_action:
            self.on_action(a, self.done, max(self.total, self.done))

    def results(self, exit_code: int) -> list[ActionResult]:
        out = []
        for key in self.order:
            a = self.actions[key]
            if a.status == "running":
                a.status = UNKNOWN
                a.reason = "signal-event reported no result for this action"
            out.append(a)
        return out


def run_signal_event(
    dir: str,
    program: str = SIGNAL_EVENT,
    event: str = EVENT,
    on_action: OnAction | None = None,
) -> EventRun:
    run = EventRun(event=event, dir=dir, runner="signal-event", source=program)
    follower = JsonFollower(on_action)
    run.started = time.time()
    try:
        proc = subprocess.Popen(
            [program, "-j", event, dir],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as e:
        raise ImporterError(f"cannot run {program}: {e.strerror or e}") from None
    assert proc.stdout is not None
    for raw in proc.stdout:
        follower.feed(raw.decode("utf-8", "replace"))
    run.exit_code = proc.wait()
    run.finished = time.time()
    run.actions = follower.results(run.exit_code)
    run.output = "\n".join(follower.other)
    return run


def choose_and_run(
    dir: str,
    events_dir: str | None = None,
    signal_event: str = SIGNAL_EVENT,
    event: str = EVENT,
    on_action: OnAction | None = None,
) -> EventRun:
    """``signal-event`` when it is installed and no ``events_dir`` was given,
    the built-in runner otherwise."""
    if events_dir is None and os.access(signal_event, os.X_OK) and os.path.isfile(signal_event):
        return run_signal_event(dir, signal_event, event, on_action)
    return run_builtin(dir, events_dir or DEFAULT_EVENTS_DIR, event, on_action)

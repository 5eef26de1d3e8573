"""Run the ``migration-import`` event on an exploded backup.

Whatever runs the event, the record of the run is the JSON-lines format of NethServer's
``signal-event -j`` (DESIGN.md section 5), one object per line, keys in any order:

* at the start ``{"event", "args", "steps", "pid"}``;
* per action ``{"event", "action", "state": "running", "step", "pid"}``, then
  ``{"event", "action", "state": "done", "step", "exit", "time", "progress", "pid"}``
  where ``exit`` is the **raw wait status** (exit code 1 reads 256; a signal is
  in the low 7 bits, 0x80 the core dump flag) and ``time`` the seconds it took;
* at the end ``{"event", "status": "success"|"failed", "pid"}``.

Two runners write it to a file (``import.jsonl`` in the tree's state directory,
:mod:`importer.state`), and :class:`EventLog` reads it back into an :class:`EventRun`:

* :func:`start_signal_event` -- on NethServer, ``/sbin/e-smith/signal-event -j
  migration-import DIR``, started in a session of its own with its standard output
  going to that file, not to a pipe: a Ctrl-C, a lost SSH session or a killed
  ``maildirsync-import`` must not kill the event half-way (SIGINT, SIGHUP, or
  SIGPIPE on its next JSON line). :func:`follow` reads the file as it grows; a
  later run can follow the same process to its end, or read how it ended.
* :func:`run_builtin` -- elsewhere, the same semantics over an events directory
  (default ``/etc/e-smith/events``): the entries of ``<event>/`` in name order;
  each executable file is run as ``handler <event> DIR`` with its standard output
  and error captured together; every handler runs, even after one failed; a file
  that is not executable is reported and skipped; sub-directories
  (``templates2expand``, ``services2adjust``) are not handlers. It writes the same
  records, plus each action's captured output and PID (keys of its own).

The actions' own lines are in the system log for ``signal-event``;
:mod:`importer.report` attributes them and builds the report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from importer.errors import BadInputError, ImporterError

EVENT = "migration-import"
SIGNAL_EVENT = "/sbin/e-smith/signal-event"
DEFAULT_EVENTS_DIR = "/etc/e-smith/events"
POLL = 0.2  # seconds between two reads of a growing JSON-lines file

# statuses of an action
OK, FAILED, ERROR, SKIPPED, UNKNOWN = "ok", "failed", "error", "skipped", "unknown"


@dataclass
class Message:
    level: str  # ERROR, WARNING, FAILED
    line: str
    pid: int | None = None  # set when the line is from another PID than the event's (an event the action signalled)
    note: str | None = None  # e.g. "expected: copied by maildirsync-import mailboxes"


@dataclass
class ActionResult:
    name: str
    path: str | None = None
    step: int | None = None
    status: str = UNKNOWN
    exit_code: int | None = None
    signal: str | None = None
    core: bool = False
    raw_status: int | None = None
    seconds: float = 0.0
    reason: str | None = None
    output: str = ""  # built-in runner: what it printed (stdout and stderr)
    pid: int | None = None  # built-in runner: its PID
    lines: list[str] = field(default_factory=list)  # signal-event: its own lines of the system log
    nested: list[list] = field(default_factory=list)  # [pid, line] of the events it signalled itself
    messages: list[Message] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in (FAILED, ERROR, UNKNOWN)

    def output_lines(self) -> list[str]:
        return self.output.splitlines() + self.lines


@dataclass
class EventRun:
    event: str
    dir: str
    runner: str  # "signal-event" or "builtin"
    source: str  # the program or the events directory
    started: float = 0.0
    finished: float = 0.0
    actions: list[ActionResult] = field(default_factory=list)
    exit_code: int | None = None  # signal-event's own; None while unknown
    pid: int | None = None  # the PID the event's lines are tagged with
    status: str | None = None  # the event's final "success"/"failed", None if it never said
    steps: int = 0
    stderr: str = ""  # what signal-event printed on its standard error
    other: list[str] = field(default_factory=list)  # lines of its standard output that were not JSON records
    interrupted: bool = False  # it stopped before its end record (killed, or this program was)

    @property
    def complete(self) -> bool:
        return self.status is not None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EventRun:
        d = dict(d)
        acts = [ActionResult(**{**a, "messages": [Message(**m) for m in a.get("messages", [])]})
                for a in d.pop("actions", [])]  # fmt: skip
        return cls(**d, actions=acts)


OnAction = Callable[[ActionResult, int, int], None]


def signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def decode_wait_status(a: ActionResult, raw: int) -> None:
    """Set the exit code or the signal from a raw wait status, as Perl's ``$?`` holds it."""
    a.raw_status = raw
    if raw < 0:  # Perl's -1: the program could not be started or waited for
        a.status, a.reason = FAILED, f"could not be run (status {raw})"
        return
    sig, core, code = raw & 0x7F, bool(raw & 0x80), (raw >> 8) & 0xFF
    if sig == 0x7F:  # stopped, not ended: nothing a finished action reports
        a.status, a.reason = FAILED, f"stopped by {signame(code)} (status {raw})"
    elif sig:
        a.signal, a.core, a.exit_code = signame(sig), core, None
        a.status = FAILED
        a.reason = f"killed by {a.signal}" + (" (core dumped)" if core else "")
    else:
        a.exit_code = code
        a.status = OK if code == 0 else FAILED
        a.reason = f"exit code {code}" if code else None


def raw_status(returncode: int) -> int:
    """Python's returncode (minus the signal when killed) back to a raw wait status."""
    return -returncode if returncode < 0 else returncode << 8


def _num(v) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class EventLog:
    """Folds the JSON-lines records of a run into an :class:`EventRun`."""

    def __init__(self, run: EventRun, on_action: OnAction | None = None) -> None:
        self.run = run
        self.on_action = on_action
        self.by_step: dict[int, ActionResult] = {}
        self.done = 0

    def _action(self, obj: dict) -> ActionResult:
        path = str(obj.get("action"))
        step = obj.get("step") if isinstance(obj.get("step"), int) and not isinstance(obj.get("step"), bool) else None
        name = os.path.basename(path.rstrip("/")) or path
        a = self.by_step.get(step) if step is not None else None
        if a is None:  # the running record may name it otherwise (a path vs a name): fall back on the name
            a = next((x for x in reversed(self.run.actions) if x.name == name and x.status == "running"), None)
        if a is None:
            a = ActionResult(name=name, path=path, step=step, status="running")
            self.run.actions.append(a)
            if step is not None:
                self.by_step[step] = a
        elif "/" in path:
            a.path = path
        return a

    def feed_line(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            self.run.other.append(text)
            return
        self.feed(obj)

    def feed(self, obj: dict) -> None:
        run = self.run
        pid = obj.get("pid")
        if isinstance(pid, int) and not isinstance(pid, bool) and run.pid is None:
            run.pid = pid
        if "action" not in obj:
            if obj.get("status") in ("success", "failed"):
                run.status = obj["status"]
            elif _num(obj.get("steps")) is not None:
                run.steps = int(_num(obj["steps"]) or 0)
            return
        a = self._action(obj)
        state = obj.get("state")
        if state == "skipped":  # the built-in runner's record of a handler it did not run
            a.status, a.reason = SKIPPED, str(obj.get("reason") or "skipped")
        elif state == "done":
            raw = obj.get("exit")
            if isinstance(raw, int) and not isinstance(raw, bool):
                decode_wait_status(a, raw)
            else:
                a.status, a.reason = UNKNOWN, f"signal-event reported no exit status ({raw!r})"
            secs = _num(obj.get("time"))
            a.seconds = secs if secs is not None else 0.0
            if isinstance(obj.get("output"), str):
                a.output = obj["output"]
            if isinstance(obj.get("action_pid"), int):
                a.pid = obj["action_pid"]
        else:
            return
        self.done += 1
        if self.on_action:
            self.on_action(a, self.done, max(run.steps, self.done))

    def finish(self) -> EventRun:
        for a in self.run.actions:
            if a.status == "running":
                a.status = UNKNOWN
                a.reason = "no result: the event stopped during this action" if not self.run.complete else \
                    "signal-event reported no result for this action"  # fmt: skip
        return self.run


# --------------------------------------------------------------------------- built-in


def list_handlers(events_dir: str | os.PathLike, event: str = EVENT) -> list[Path]:
    d = Path(events_dir) / event
    if not d.is_dir():
        raise BadInputError(
            f"no handlers for the event {event}: {d} is not a directory",
            "on NethServer install nethserver-base (it provides the event); or give --events-dir",
        )
    return [d / n for n in sorted(os.listdir(d)) if not (d / n).is_dir()]


def _record(out, run: EventRun, log: EventLog, obj: dict) -> None:
    obj = {"event": run.event, **obj, "pid": run.pid}
    if out is not None:
        out.write(json.dumps(obj) + "\n")
        out.flush()
    log.feed(obj)


def run_builtin(
    dir: str,
    events_dir: str | os.PathLike = DEFAULT_EVENTS_DIR,
    event: str = EVENT,
    on_action: OnAction | None = None,
    jsonl: str | os.PathLike | None = None,
) -> EventRun:
    handlers = list_handlers(events_dir, event)
    run = EventRun(event=event, dir=dir, runner="builtin", source=str(Path(events_dir) / event), pid=os.getpid())
    log = EventLog(run, on_action)
    run.started = time.time()
    out = open(jsonl, "a", encoding="utf-8") if jsonl is not None else None
    try:
        _record(out, run, log, {"args": dir, "steps": len(handlers)})
        failed = False
        for i, h in enumerate(handlers):
            skip = None
            if not h.exists():
                skip = "broken symbolic link"
            elif not h.is_file():
                skip = "not a regular file"
            elif not os.access(h, os.X_OK):
                skip = "not executable"
            if skip:
                _record(out, run, log, {"action": str(h), "state": "skipped", "step": i, "reason": skip})
                continue
            _record(out, run, log, {"action": str(h), "state": "running", "step": i})
            t0 = time.monotonic()
            pid, output = None, ""
            try:
                proc = subprocess.Popen([str(h), event, dir], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)  # fmt: skip
                pid = proc.pid
                output = proc.communicate()[0].decode("utf-8", "replace")
                status = raw_status(proc.returncode)
            except OSError as e:
                status, output = -1, f"cannot execute {h}: {e.strerror or e}\n"
            failed = failed or status != 0
            _record(out, run, log, {"action": str(h), "state": "done", "step": i, "exit": status,
                                    "time": round(time.monotonic() - t0, 6), "progress": f"{i / len(handlers):.2f}",
                                    "output": output, "action_pid": pid})  # fmt: skip
        _record(out, run, log, {"status": "failed" if failed else "success"})
    finally:
        if out is not None:
            out.close()
    run.finished = time.time()
    run.exit_code = 1 if run.status == "failed" else 0
    return log.finish()


# --------------------------------------------------------------------------- signal-event


def process_start(pid: int) -> str | None:
    """The start time of a process (``/proc/PID/stat`` field 22), to tell it from a later one with its PID."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0")]
    except OSError:
        return []


def alive(pid: int | None, start: str | None, args: tuple[str, ...] = ()) -> bool:
    """Is ``pid`` still the process we started: same start time, and ``args`` among its arguments
    (``-j``, the event, the tree), so that neither a reused PID nor a state file we did not write makes us
    wait on an unrelated process."""
    if not pid:
        return False
    now = process_start(pid)
    if now is None:
        return False
    if args and not set(args) <= set(_cmdline(pid)):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().decode("ascii", "replace")
        if state[state.rfind(")") + 2:].startswith("Z"):
            return False  # a zombie has ended; its parent has not collected it yet
    except OSError:
        return False
    return start is None or now == start


def start_signal_event(dir: str, program: str, event: str, jsonl: str | os.PathLike,
                       stderr: str | os.PathLike) -> subprocess.Popen:  # fmt: skip
    """Start ``program -j event dir`` detached, its stdout appended to ``jsonl``."""
    try:
        with open(jsonl, "ab") as out, open(stderr, "ab") as err:
            return subprocess.Popen([program, "-j", event, dir], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)  # fmt: skip
    except OSError as e:
        raise ImporterError(f"cannot run {program}: {e.strerror or e}",
                            "check that nethserver-base is installed, or give --signal-event") from None  # fmt: skip


class Tail:
    """The complete lines appended to a file since the last read."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self, final: bool = False) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = b"" if final else lines.pop()
        return [ln.decode("utf-8", "replace") for ln in lines if ln]


def follow(
    run: EventRun,
    jsonl: str | os.PathLike,
    *,
    proc: subprocess.Popen | None = None,
    pid: int | None = None,
    pid_start: str | None = None,
    stderr: str | os.PathLike | None = None,
    on_action: OnAction | None = None,
) -> EventRun:
    args = ("-j", run.event, run.dir)
    """Read ``jsonl`` as it grows, until its writer ends: ``proc`` (a child) or ``pid`` (a process a previous
    run started). Raises ``KeyboardInterrupt`` on Ctrl-C, leaving the event running."""
    log = EventLog(run, on_action)
    tail = Tail(jsonl)
    while True:
        for line in tail.read():
            log.feed_line(line)
        if proc is not None:
            if proc.poll() is not None:
                run.exit_code = proc.returncode
                break
        elif not alive(pid, pid_start, args):
            break
        time.sleep(POLL)
    for line in tail.read(final=True):
        log.feed_line(line)
    if proc is None and run.exit_code is None and run.complete:
        run.exit_code = 0 if run.status == "success" else 1  # not our child: its exit status is lost; its record says
    run.finished = time.time()
    run.interrupted = not run.complete
    if stderr is not None:
        try:
            run.stderr = Path(stderr).read_text(encoding="utf-8", errors="replace")
        except OSError:
            pass
    return log.finish()


def read_record(run: EventRun, jsonl: str | os.PathLike) -> EventRun:
    """What a finished (or dead) run left in its JSON-lines file."""
    log = EventLog(run)
    for line in Tail(jsonl).read(final=True):
        log.feed_line(line)
    run.interrupted = not run.complete
    return log.finish()


def choose(events_dir: str | None, signal_event: str) -> tuple[str, str]:
    """``("signal-event", program)`` when it is installed and no ``events_dir`` was given, else
    ``("builtin", events_dir)``."""
    if events_dir is None and os.path.isfile(signal_event) and os.access(signal_event, os.X_OK):
        return "signal-event", signal_event
    return "builtin", events_dir or DEFAULT_EVENTS_DIR

"""The report of a ``migration-import`` run: what failed, and why.

For each action: its status, its time, and its ``[ERROR]``, ``[WARNING]`` and
``FAILED`` lines -- from the output captured per handler, and from the system
log (``/var/log/messages``) for the run's time window when that log is
readable. A system-log line naming an action goes under that action; the
others are listed under the system log.

The run failed (exit 1) when any action failed (non-zero exit, killed by a
signal, no result reported), when an action that exited 0 printed an
``[ERROR]`` or ``FAILED`` line (status ``error``), when signal-event itself
exited non-zero, or when the system log holds ``[ERROR]``/``FAILED`` lines for
the window. ``[WARNING]`` lines are shown and do not fail the run.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

from importer import EXIT_FAILED, EXIT_OK
from importer.events import ERROR, FAILED, OK, SKIPPED, EventRun, Message

SYSLOG = "/var/log/messages"
_LEVEL = re.compile(r"\[(ERROR|WARNING)\]|\bFAIL(?:ED)?\b")
_RFC3164 = re.compile(r"^([A-Z][a-z]{2})\s+(\d{1,2}) (\d\d):(\d\d):(\d\d)\s")
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s")
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
SLACK = 2.0  # seconds around the run's window
TAIL_LINES = 5  # output shown for a failed action that printed no tagged line


def classify(line: str) -> str | None:
    """``ERROR``, ``WARNING``, ``FAILED`` or ``None`` for a line of output."""
    m = _LEVEL.search(line)
    if not m:
        return None
    if m.group(1):
        return m.group(1)
    return "FAILED"


def messages_of(text: str, source: str = "output") -> list[Message]:
    out = []
    for line in text.splitlines():
        level = classify(line)
        if level:
            out.append(Message(level, line.rstrip(), source))
    return out


# --------------------------------------------------------------------------- system log


@dataclass
class SyslogMark:
    """Where the system log was when the run started, to read only what follows."""

    path: str
    inode: int | None = None
    size: int = 0


def mark_syslog(path: str = SYSLOG) -> SyslogMark:
    try:
        st = os.stat(path)
        return SyslogMark(path, st.st_ino, st.st_size)
    except OSError:
        return SyslogMark(path)


def parse_time(line: str, year: int) -> float | None:
    m = _RFC3339.match(line)
    if m:
        try:
            dt = datetime.fromisoformat(m.group(1).replace(" ", "T").replace("Z", "+00:00"))
        except ValueError:
            return None
        return dt.timestamp()
    m = _RFC3164.match(line)
    if m and m.group(1) in _MONTHS:
        try:
            dt = datetime(year, _MONTHS[m.group(1)], int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)))
        except ValueError:
            return None
        return dt.timestamp()
    return None


def read_syslog(mark: SyslogMark, start: float, end: float) -> tuple[list[str], str]:
    """Lines of the system log stamped within ``[start, end]`` (with slack).

    Returns ``(lines, note)``; ``note`` says why nothing could be read."""
    path = mark.path
    if not os.path.exists(path):
        return [], f"{path} does not exist"
    try:
        st = os.stat(path)
        offset = mark.size if (mark.inode == st.st_ino and st.st_size >= mark.size) else 0
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError as e:
        return [], f"{path} is not readable ({e.strerror or e})"
    year = time.localtime(start).tm_year
    lines = []
    inside = False
    for raw in data.decode("utf-8", "replace").splitlines():
        ts = parse_time(raw, year)
        if ts is None:
            if inside:  # continuation of a stamped line
                lines.append(raw)
            continue
        inside = start - SLACK <= ts <= end + SLACK
        if inside:
            lines.append(raw)
    return lines, f"read {path}"


# --------------------------------------------------------------------------- report


@dataclass
class Report:
    run: EventRun
    syslog: str
    syslog_note: str
    general: list[Message] = field(default_factory=list)  # system-log lines naming no action
    failed: list[str] = field(default_factory=list)  # names of the actions that failed
    exit_code: int = EXIT_OK

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK


def build_report(run: EventRun, mark: SyslogMark | None = None) -> Report:
    mark = mark or SyslogMark(SYSLOG)
    log_lines, note = read_syslog(mark, run.started, run.finished)
    rep = Report(run=run, syslog=mark.path, syslog_note=note)
    for a in run.actions:
        a.messages = messages_of(a.output, "output")
    if run.output:
        rep.general.extend(messages_of(run.output, "signal-event"))
    for line in log_lines:
        level = classify(line)
        if not level:
            continue
        msg = Message(level, line, mark.path)
        owner = next((a for a in run.actions if a.name and a.name in line), None)
        if owner is not None:
            owner.messages.append(msg)
        else:
            rep.general.append(msg)
    for a in run.actions:
        if a.status == OK and any(m.level in ("ERROR", "FAILED") for m in a.messages):
            a.status = ERROR
            a.reason = "exited 0 but reported an error"
    rep.failed = [a.name for a in run.actions if a.failed]
    bad = bool(rep.failed)
    if run.exit_code not in (None, 0):
        bad = True
    if any(m.level in ("ERROR", "FAILED") for m in rep.general):
        bad = True
    rep.exit_code = EXIT_FAILED if bad else EXIT_OK
    return rep


def _fmt_status(a) -> str:
    return {OK: "ok", FAILED: "FAILED", ERROR: "ERROR", SKIPPED: "skipped"}.get(a.status, a.status.upper())


def render_text(rep: Report) -> str:
    run = rep.run
    out: list[str] = []
    w = out.append
    took = run.finished - run.started
    n_skipped = sum(1 for a in run.actions if a.status == SKIPPED)
    w(
        f"{run.event} on {run.dir} ({run.runner}: {run.source}): {len(run.actions)} actions, "
        f"{len(rep.failed)} failed, {n_skipped} skipped, {took:.1f}s"
    )
    width = max([len(a.name) for a in run.actions] + [10])
    for a in run.actions:
        detail = f"  {a.reason}" if a.reason else ""
        w(f"  {_fmt_status(a):<8} {a.name:<{width}} {a.seconds:7.1f}s{detail}")
        for m in a.messages:
            src = "" if m.source == "output" else f"  ({m.source})"
            w(f"             {m.line}{src}")
        if a.failed and not a.messages and a.output.strip():
            tail = a.output.rstrip().splitlines()[-TAIL_LINES:]
            w(f"             last {len(tail)} lines of its output:")
            for line in tail:
                w(f"             | {line}")
    if run.exit_code not in (None, 0):
        w(f"  signal-event itself exited with status {run.exit_code}")
    w("")
    start = time.strftime("%H:%M:%S", time.localtime(run.started))
    end = time.strftime("%H:%M:%S", time.localtime(run.finished))
    w(f"System log {rep.syslog} ({start}-{end}): {rep.syslog_note}")
    for m in rep.general:
        w(f"  {m.line}")
    if not rep.general:
        w("  no [ERROR], [WARNING] or FAILED line outside the actions above")
    w("")
    if rep.ok:
        w("Result: OK" + (f" ({n_skipped} skipped, see above)" if n_skipped else ""))
    else:
        why = f"{len(rep.failed)} of {len(run.actions)} actions failed" if rep.failed else "errors were reported"
        w(f"Result: FAILED ({why})")
    return "\n".join(out) + "\n"


def to_dict(rep: Report) -> dict:
    d = asdict(rep.run)
    return {
        "event": d.pop("event"),
        "dir": d.pop("dir"),
        "runner": d.pop("runner"),
        "source": d.pop("source"),
        "started": d.pop("started"),
        "finished": d.pop("finished"),
        "signal_event_exit": d.pop("exit_code"),
        "actions": d.pop("actions"),
        "syslog": {"path": rep.syslog, "note": rep.syslog_note, "messages": [asdict(m) for m in rep.general]},
        "failed": rep.failed,
        "ok": rep.ok,
        "exit_code": rep.exit_code,
    }


def to_json(rep: Report) -> str:
    return json.dumps(to_dict(rep), indent=2)

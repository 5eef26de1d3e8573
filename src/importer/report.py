"""The report of a ``migration-import`` run: each action's status, time and messages.

Lines are attributed exactly, never by matching words in them:

* ``signal-event``: its actions' output is in the system log, tagged
  ``esmith::event[PID]`` with the PID its JSON records carry. The run spans from
  its ``Event: migration-import DIR`` line to its ``Event: migration-import
  SUCCESS|FAILED`` line; each ``Action: PATH SUCCESS|FAILED: N [secs]`` line of that
  PID closes one action, so an action's lines are those of that PID between the
  previous ``Action:`` line and its own. A line tagged ``esmith::event`` with
  another PID inside the span is from an event the running action signalled itself
  (it logs under the action's PID): it goes to that action, marked with its PID.
* the built-in runner captures each action's output itself, and knows each
  action's PID: the ``esmith::event`` lines of that PID in the system log (events
  it signalled) go to it the same way. Both give the same report.

Lines of other programs never enter the report (a postfix ``[ERROR]`` written in
the same second is not the import's). Per action the report gives its status
(``ok``; ``failed``: a non-zero exit code or a signal; ``error``: exited 0 but
printed an ``[ERROR]`` or ``FAILED`` line; ``skipped``; ``unknown``: no result),
its time, its ``[ERROR]``/``[WARNING]``/``FAILED`` lines, and its last lines when it
failed without one. The run failed (exit 1) when an action did, when the event's
final status is ``failed``, when signal-event exited non-zero, or when it never
finished. ``[WARNING]`` lines alone do not fail it.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field

from importer import EXIT_FAILED, EXIT_OK, systemlog
from importer.events import ERROR, FAILED, OK, SKIPPED, UNKNOWN, ActionResult, EventRun, Message, signame
from importer.systemlog import TAG, LogLine, SyslogMark

_LEVEL = re.compile(r"\[(ERROR|WARNING)\]|\bFAIL(?:ED)?\b")
_ACTION = re.compile(r"^Action: (?P<path>\S+) (?P<result>SUCCESS|FAILED(?:: (?P<n>-?\d+))?)(?: \[(?P<secs>[\d.]+)\])?\s*$")
TAIL_LINES = 5  # output shown for a failed action that printed no tagged line
SETTLE = 5.0  # seconds to wait for rsyslog to write the event's last line after signal-event ended


def classify(line: str) -> str | None:
    """``ERROR``, ``WARNING``, ``FAILED`` or ``None`` for a line of output."""
    m = _LEVEL.search(line)
    if not m:
        return None
    return m.group(1) or "FAILED"


def messages_of(lines, pid: int | None = None) -> list[Message]:
    out = []
    for line in lines:
        level = classify(line)
        if level:
            out.append(Message(level, line.rstrip(), pid))
    return out


# --------------------------------------------------------------------------- reading the log


def _ours(lines: list[LogLine] | None, pid: int | None) -> bool:
    return bool(lines) and pid is not None and any(ln.tag == TAG and ln.pid == pid for ln in lines)


def _ended(lines: list[LogLine], run: EventRun) -> bool:
    return any(ln.tag == TAG and ln.pid == run.pid and re.match(rf"Event: {re.escape(run.event)} (SUCCESS|FAILED)\b",
                                                                ln.msg) for ln in lines)  # fmt: skip


def collect(run: EventRun, mark: SyslogMark, settle: float = SETTLE,
            journalctl: str = "journalctl") -> tuple[list[LogLine] | None, str, str]:  # fmt: skip
    """The log lines of the run's time: ``(lines, source, note)``. ``/var/log/messages`` when it can be read
    and holds the run's lines, else the journal; ``lines`` is ``None`` when neither could be read."""
    year = time.localtime(run.started or time.time()).tm_year
    raw, note = systemlog.read_since(mark)
    lines = [systemlog.parse_line(r, year) for r in raw] if raw is not None else None
    want_pid = run.runner == "signal-event" and run.pid is not None
    if lines is not None and want_pid and run.complete and _ours(lines, run.pid):
        deadline = time.monotonic() + settle
        while not _ended(lines, run) and time.monotonic() < deadline:
            time.sleep(0.2)  # rsyslog writes asynchronously: the event's last lines may still be on their way
            raw, note = systemlog.read_since(mark)
            lines = [systemlog.parse_line(r, year) for r in raw or []]
    if lines is not None and (not want_pid or _ours(lines, run.pid)):
        return lines, mark.path, note
    why = note if lines is None else f"{mark.path} holds no line of this run (esmith::event[{run.pid}])"
    jlines, jnote = systemlog.read_journal(run.started, run.finished or time.time(), journalctl)
    if jlines is not None:
        return jlines, "journal", f"{why}; {jnote}"
    return lines, mark.path if lines is not None else "", f"{why}; {jnote}"


def attribute(run: EventRun, lines: list[LogLine]) -> tuple[list[str], list[str]]:
    """Give each action its lines of the log. Returns the event's own lines outside any action, and notes."""
    notes: list[str] = []
    for ln in lines:
        d = systemlog.dropped_note(ln)
        if d:
            notes.append(f"the logging system dropped messages during the run ({ln.tag}: {d}): "
                         "some of the actions' lines may be missing")  # fmt: skip
    ev = [ln for ln in lines if ln.tag == TAG]
    if run.runner == "builtin":
        by_pid = {a.pid: a for a in run.actions if a.pid}
        lo, hi = run.started - systemlog.SLACK, (run.finished or time.time()) + systemlog.SLACK
        for ln in ev:
            a = by_pid.get(ln.pid)
            if a is not None and (ln.ts is None or lo <= ln.ts <= hi):
                a.nested.append([ln.pid, ln.msg])
        return [], notes
    main = run.pid
    idx = [i for i, ln in enumerate(ev) if ln.pid == main]
    if not idx:
        return [], notes
    end_re = re.compile(rf"Event: {re.escape(run.event)} (SUCCESS|FAILED)$")
    end = next((i for i in idx if end_re.match(ev[i].msg)), len(ev) - 1)
    acts = [a for a in run.actions if a.status != SKIPPED]
    k = 0  # the next action to end
    started = False  # before its "Event: EVENT ARGS" line, the event's lines are its own (skipped handlers...)
    outside: list[str] = []
    seg: list[str] = []  # the event's lines since the last Action: line
    segn: list[list] = []  # and those of events signalled meanwhile
    for ln in ev[idx[0]:end + 1]:
        if ln.pid != main:
            if started:
                segn.append([ln.pid, ln.msg])
            continue
        if ln.msg.startswith("Event: "):
            started = started or not end_re.match(ln.msg)
            continue
        m = _ACTION.match(ln.msg) if started else None
        if m is None:
            (seg if started else outside).append(ln.msg)
            continue
        # the segment is the action this line names: the next one, or a later one if records were lost
        path = m.group("path")
        name = os.path.basename(path)
        j = next((j for j in range(k, len(acts)) if acts[j].name == name), None)
        if j is None:  # no record of it at all: the log alone tells of it
            a = ActionResult(name=name, path=path, status=UNKNOWN)
            run.actions.insert(run.actions.index(acts[k]) if k < len(acts) else len(run.actions), a)
            acts.insert(k, a)
            j = k
        a = acts[j]
        if a.status == UNKNOWN:
            _status_from_log(a, m)
        a.lines += seg
        a.nested += segn
        seg, segn = [], []
        k = j + 1
    if k < len(acts):  # the event stopped during this action
        acts[k].lines += seg
        acts[k].nested += segn
    else:
        outside += seg
    return outside, notes


def _status_from_log(a, m: re.Match) -> None:
    """The JSON record of this action is missing: its ``Action:`` line says how it ended (an exit code or a
    signal number: the line does not tell which)."""
    if m.group("result") == "SUCCESS":
        a.status, a.reason, a.exit_code = OK, None, 0
    else:
        a.status, a.reason = FAILED, f"FAILED: {m.group('n')} (from the system log)"
    if m.group("secs"):
        a.seconds = float(m.group("secs"))


# --------------------------------------------------------------------------- the report


@dataclass
class Report:
    run: EventRun
    log: str  # where the lines were read: a path, "journal", or ""
    log_note: str
    event_lines: list[Message] = field(default_factory=list)  # the event's own marked lines, outside actions
    notes: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # names of the actions that failed
    exit_code: int = EXIT_OK

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def to_dict(self) -> dict:
        d = asdict(self)
        d["run"] = self.run.to_dict()
        d["ok"] = self.ok
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Report:
        d = {k: v for k, v in d.items() if k != "ok"}
        return cls(**{**d, "run": EventRun.from_dict(d["run"]),
                      "event_lines": [Message(**m) for m in d.get("event_lines", [])]})  # fmt: skip


def build(run: EventRun, mark: SyslogMark | None, settle: float = SETTLE, journalctl: str = "journalctl") -> Report:
    if mark is None:
        lines, src, note = None, "", "no system log was read"
    else:
        lines, src, note = collect(run, mark, settle, journalctl)
    rep = Report(run=run, log=src, log_note=note)
    outside: list[str] = []
    if lines is not None:
        outside, rep.notes = attribute(run, lines)
        if run.runner == "signal-event" and run.pid is not None and not _ours(lines, run.pid):
            rep.notes.append(f"no line tagged esmith::event[{run.pid}] was found: the actions' messages are unknown")
    for a in run.actions:
        a.messages = messages_of(a.output_lines()) + [
            m for pid, text in a.nested for m in messages_of([text], pid)
        ]
        if a.status == OK and any(m.level in ("ERROR", "FAILED") for m in a.messages):
            a.status = ERROR
            a.reason = "exited 0 but reported an error"
    outside = _skipped_handlers(run, outside)
    rep.event_lines = messages_of(outside)
    rep.failed = [a.name for a in run.actions if a.failed]
    bad = bool(rep.failed) or run.status == "failed" or not run.complete
    bad = bad or run.exit_code not in (None, 0) or any(m.level != "WARNING" for m in rep.event_lines)
    rep.exit_code = EXIT_FAILED if bad else EXIT_OK
    return rep


_SKIPPING = re.compile(r"^Skipping non-executable event-handler (\S+)$")


def _skipped_handlers(run: EventRun, outside: list[str]) -> list[str]:
    """signal-event logs the handlers it leaves out (not executable) and reports nothing of them in JSON:
    they become skipped actions, in name order, as the built-in runner reports them."""
    rest = []
    for text in outside:
        m = _SKIPPING.match(text)
        if not m:
            rest.append(text)
            continue
        a = ActionResult(name=m.group(1), status=SKIPPED, reason="not executable")
        at = next((i for i, x in enumerate(run.actions) if x.name > a.name), len(run.actions))
        run.actions.insert(at, a)
    return rest


def annotate_expected(rep: Report, expected: dict[str, str]) -> None:
    """Mark the ``destination already exists`` warnings of users whose Maildir is there on purpose
    (``expected``: user -> why), so the administrator sees they are not a problem."""
    for a in rep.run.actions:
        for m in a.messages:
            if "destination already exists" not in m.line:
                continue
            for user, why in expected.items():
                if re.search(rf"(?<![\w.-]){re.escape(user)}(?![\w.-])", m.line):
                    m.note = why
                    break


def _fmt_status(a) -> str:
    return {OK: "ok", FAILED: "FAILED", ERROR: "ERROR", SKIPPED: "skipped"}.get(a.status, a.status.upper())


def _exit_text(code: int) -> str:
    return f"was killed by {signame(-code)}" if code < 0 else f"exited with code {code}"


def render_text(rep: Report) -> str:
    run = rep.run
    out: list[str] = []
    w = out.append
    took = (run.finished or run.started) - run.started
    n_skipped = sum(1 for a in run.actions if a.status == SKIPPED)
    w(f"{run.event} on {run.dir} ({run.runner}: {run.source}): {len(run.actions)} actions, "
      f"{len(rep.failed)} failed, {n_skipped} skipped, {took:.1f}s")  # fmt: skip
    width = max([len(a.name) for a in run.actions] + [10])
    for a in run.actions:
        detail = f"  {a.reason}" if a.reason else ""
        w(f"  {_fmt_status(a):<8} {a.name:<{width}} {a.seconds:7.1f}s{detail}")
        for m in a.messages:
            extra = f"  (esmith::event[{m.pid}]: an event it signalled)" if m.pid is not None else ""
            extra += f"  -- {m.note}" if m.note else ""
            w(f"             {m.line}{extra}")
        own = a.output_lines()
        if a.failed and not a.messages and own:
            tail = own[-TAIL_LINES:]
            w(f"             last {len(tail)} lines of its output:")
            for line in tail:
                w(f"             | {line}")
    for m in rep.event_lines:
        w(f"  event: {m.line}")
    if run.exit_code not in (None, 0) and run.runner == "signal-event":
        w(f"  signal-event itself {_exit_text(run.exit_code)}")
    if run.stderr.strip():
        w("  signal-event printed on its standard error:")
        for line in run.stderr.strip().splitlines()[-TAIL_LINES:]:
            w(f"  | {line}")
    if not run.complete:
        w("  the event did not finish: it was interrupted or killed before its last action ended")
        ran = sum(1 for a in run.actions if a.status != SKIPPED)
        if run.steps > ran:
            w(f"  {run.steps - ran} of its {run.steps} actions never started")
    elif run.status:
        w(f"  event status: {run.status}")
    w("")
    w(f"System log: {rep.log_note}")
    for n in rep.notes:
        w(f"  note: {n}")
    w("")
    if rep.ok:
        w("Result: OK" + (f" ({n_skipped} skipped, see above)" if n_skipped else ""))
    else:
        why = f"{len(rep.failed)} of {len(run.actions)} actions failed" if rep.failed else (
            "the event did not finish" if not run.complete else "errors were reported")  # fmt: skip
        w(f"Result: FAILED ({why})")
    return "\n".join(out) + "\n"


def to_dict(rep: Report) -> dict:
    return rep.to_dict()


def to_json(rep: Report) -> str:
    return json.dumps(to_dict(rep), indent=2)

"""Run ``migration-import`` on a tree once, and report on it: the core of ``run`` and of ``all``.

The import is recorded in the tree's state (:mod:`importer.state`) *before* the
event starts, and the event's records go to a file there, so that whatever
happens to this process:

* a second import on the same tree is refused (:class:`AlreadyImported`):
  ``migration-import`` moves files out of the tree, a second one would import
  what the first left;
* a run interrupted while ``signal-event`` works (Ctrl-C, a lost session,
  ``kill -9``) leaves the event running in its own session; the next ``run`` or
  ``all`` finds it still running and follows it to its end, or finds how it
  ended in its records, and reports;
* the report is built from the records and the system log read from the mark
  taken before the start, at any later time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from importer import events, predict, report, systemlog
from importer.errors import BadInputError, ImporterError
from importer.events import EVENT, EventRun, OnAction
from importer.state import TreeState, when


class AlreadyImported(BadInputError):
    """migration-import was run on this tree before: exit 2, nothing done."""


class StillRunning(ImporterError):
    """Ctrl-C while following signal-event: it goes on; exit 130."""

    exit_code = 130


@dataclass
class ImportOptions:
    events_dir: str | None = None
    signal_event: str = events.SIGNAL_EVENT
    syslog: str = systemlog.SYSLOG
    journalctl: str = "journalctl"
    settle: float = report.SETTLE
    passwd: str | None = None  # for the check after the import


def checks(inv, predictions_only: bool = False) -> list[str]:
    """The lines shown before the import: every pitfall and custom template (unless ``predictions_only``:
    ``all`` showed them at its inspect step), then what the import will skip and the Maildirs it leaves."""
    out = []
    if not predictions_only:
        out += [f"{'BLOCKING' if p.blocking else 'WARNING'} [{p.kind}] {p.subject}: {p.message}"
                for p in inv.pitfalls]  # fmt: skip
        out += [f"WARNING {t.path}: {t.warning}" for t in inv.templates]
    else:
        out += [f"{'BLOCKING' if p.blocking else 'WARNING'} [{p.kind}] {p.subject}: {p.message}"
                for p in inv.pitfalls if p.kind == "orphan_maildir" and "(--maildir)" not in p.message]  # fmt: skip
    for sk in inv.skips:
        if not sk.blocking or predictions_only:  # (the blocking ones are pitfalls already)
            tag = "EXPECTED" if sk.expected else ("BLOCKING" if sk.blocking else "SKIP")
            out.append(f"{tag} [{sk.kind}] {sk.user}: {sk.message}")
    return out


def expectations(inv) -> dict:
    """What the report and the check after the import need to know of the tree before it is consumed."""
    return {
        "users": [{"name": u.name, "system": u.system, "messages": u.mailbox.messages, "exists": u.mailbox.exists}
                  for u in inv.users],  # fmt: skip
        "domain": inv.domain,
        "dest_root": inv.dest_root,
        "expected": {s.user: "expected: the mailbox was copied before the import" for s in inv.skips if s.expected},
    }


def refuse_if_imported(st: TreeState) -> None:
    imp = st.imported
    if imp and imp.get("finished"):
        res = "interrupted" if imp.get("interrupted") else (imp.get("status") or "unknown")
        raise AlreadyImported(
            f"migration-import already ran on {st.tree} (started {when(imp.get('started'))}, result: {res}); "
            "it is not run twice on the same tree: the first run moved the files out of it",
            f"its report is in {st.report_txt}; to import again, explode the archive into a new empty directory",
        )


def _run_record(st: TreeState, imp: dict) -> EventRun:
    return EventRun(event=EVENT, dir=str(st.tree), runner=imp["runner"], source=imp["source"],
                    started=imp.get("started") or 0.0)  # fmt: skip


def do_import(st: TreeState, opts: ImportOptions, inv=None, on_action: OnAction | None = None, say=None) -> EventRun:
    """Start the import (``inv``: the inventory taken just before), or pick up the one a previous run started.
    Returns the run once it has ended; raises :class:`AlreadyImported` if it was reported already."""
    say = say or (lambda _m: None)
    refuse_if_imported(st)
    imp = st.imported
    if imp is None:
        runner, source = events.choose(opts.events_dir, opts.signal_event)
        if runner == "builtin":
            events.list_handlers(source)  # a missing events directory is refused before anything is recorded
        mark = systemlog.mark(opts.syslog)
        for p in (st.jsonl, st.stderr):
            if p.exists():
                p.unlink()
        imp = st.set_import(runner=runner, source=source, started=time.time(), mark=asdict(mark), finished=None,
                            pid=None, pid_start=None, **(expectations(inv) if inv is not None else {}))  # fmt: skip
        run = _run_record(st, imp)
        if runner == "builtin":
            st.set_import(pid=os.getpid(), pid_start=events.process_start(os.getpid()))
            run = events.run_builtin(str(st.tree), source, EVENT, on_action, jsonl=st.jsonl)
        else:
            proc = None
            try:
                with _ctrl_c_deferred():  # not between its start and the record of its PID: see _ctrl_c_deferred
                    proc = events.start_signal_event(str(st.tree), source, EVENT, st.jsonl, st.stderr)
                    st.set_import(pid=proc.pid, pid_start=events.process_start(proc.pid))
                run = events.follow(run, st.jsonl, proc=proc, stderr=st.stderr, on_action=on_action)
            except KeyboardInterrupt:
                if proc is None:
                    raise
                raise _still_running(st, proc.pid) from None
    else:
        run = _run_record(st, imp)
        if imp["runner"] == "signal-event" and events.alive(imp.get("pid"), imp.get("pid_start"),
                                                            ("-j", EVENT, str(st.tree))):  # fmt: skip
            say(f"migration-import started {when(imp.get('started'))} is still running (signal-event pid "
                f"{imp['pid']}): following it to its end")  # fmt: skip
            try:
                run = events.follow(run, st.jsonl, pid=imp["pid"], pid_start=imp.get("pid_start"), stderr=st.stderr,
                                    on_action=on_action)  # fmt: skip
            except KeyboardInterrupt:
                raise _still_running(st, imp["pid"]) from None
        else:
            run = events.read_record(run, st.jsonl)
            run.finished = run.finished or time.time()
            if st.stderr.exists():
                run.stderr = st.stderr.read_text(encoding="utf-8", errors="replace")
            if run.complete:
                run.exit_code = 0 if run.status == "success" else 1
                say(f"migration-import started {when(imp.get('started'))} had ended: reading its records")
            else:
                say(f"migration-import started {when(imp.get('started'))} was interrupted before its end: it is not "
                    "run again on this tree")  # fmt: skip
    st.set_import(finished=run.finished or time.time(), exit_code=run.exit_code, status=run.status,
                  interrupted=not run.complete, run=run.to_dict())  # fmt: skip
    st.set_step("import", "done", summary=f"{len(run.actions)} actions, status {run.status or 'interrupted'}")
    return run


@contextlib.contextmanager
def _ctrl_c_deferred():
    """Hold a Ctrl-C back until the block has run, then raise it. Around the start of signal-event and the record
    of its PID: a KeyboardInterrupt in between would leave the event running with no PID in the state (the next
    run would take it for interrupted instead of following it) and say nothing of it going on. Only in the main
    thread, and only where SIGINT has a Python handler (an ignored SIGINT stays ignored)."""
    old = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(old):
        yield
        return
    got = []
    signal.signal(signal.SIGINT, lambda signum, frame: got.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if got:
        old(signal.SIGINT, got[-1])  # Python's own handler raises KeyboardInterrupt


def _still_running(st: TreeState, pid: int) -> StillRunning:
    return StillRunning(
        f"interrupted: migration-import goes on running in the background (signal-event pid {pid}): stopping it "
        "half-way would leave the import half done",
        f"run `maildirsync-import run {st.tree}` (or the same `all` command) again: it follows the event to its end "
        "and reports",
    )


def make_report(st: TreeState, run: EventRun, opts: ImportOptions) -> tuple[report.Report, list[str]]:
    """Build, annotate and save the report, and check the accounts and mailboxes after the import."""
    imp = st.imported or {}
    mark = systemlog.SyslogMark(**imp["mark"]) if imp.get("mark") else None
    rep = report.build(run, mark, opts.settle, opts.journalctl)
    report.annotate_expected(rep, imp.get("expected") or {})
    after = after_import(imp, opts.passwd)
    st.write_file(st.report_json, json.dumps({"report": rep.to_dict(), "after_import": after}, indent=1))
    st.write_file(st.report_txt, report.render_text(rep) + "".join(f"after the import: {a}\n" for a in after))
    st.set_step("report", "done", exit_code=rep.exit_code, summary=f"result {'OK' if rep.ok else 'FAILED'}")
    return rep, after


def after_import(imp: dict, passwd: str | None) -> list[str]:
    if not imp.get("users"):
        return []
    try:
        lookup = predict.passwd_lookup(passwd)
    except OSError:
        return [f"cannot read {passwd}: the accounts were not checked"]
    dest_root = imp.get("dest_root") or ""
    # no mailboxes root on this host: only the accounts can be checked
    domain = imp.get("domain") if Path(dest_root).is_dir() else None
    return predict.after_import(imp["users"], domain, dest_root, lookup)

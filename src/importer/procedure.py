"""``maildirsync-import all ARCHIVE [DIR]``: the whole procedure of migration.rst, resumable.

The steps, in the order of the procedure:

1. **explode** the archive into DIR;
2. **inspect** it; stop on blocking problems (mail that would be lost, a missing
   database or feature, no ``--source-host``) unless ``--go-on``;
3. **mailboxes**: copy every mailbox into the NethServer layout and seed the
   index of ``maildirsync -s HOST`` (admin's and the ``--maildir`` ones included),
   while the tree still holds the mail;
4. **import**: ``migration-import`` on DIR, once (:mod:`importer.importing`);
5. **report** on it, then say what to do next: ``maildirsync setup -s HOST``
   again (the import replaced ``/root/.ssh``), then ``maildirsync -s HOST``.

Each finished step is recorded in DIR's state file (:mod:`importer.state`); a
run after a failure, a Ctrl-C or a ``kill -9`` continues from the first unfinished
step, and a run on a finished tree refuses to import again. ``--stop-after STEP``
stops cleanly after a step (to look at the inventory before going on, say).
Progress goes to the terminal (standard error), plain timestamped lines to the log
(``DIR/.maildirsync-import/all.log``), results to standard output, or one JSON
object with ``--json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from importer import archive as archive_mod
from importer import importing
from importer import inspect as inspect_mod
from importer import mailboxes as mailboxes_mod
from importer import report
from importer.errors import BadInputError, DirNotEmptyError, ImporterError
from importer.events import EventRun
from importer.progress import NullProgress, PlainProgress, Progress, human, make_progress
from importer.state import STATE_DIRNAME, TreeState, archive_identity, when

STEPS = ("explode", "inspect", "mailboxes", "import", "report")


@dataclass
class AllOptions:
    archive: str
    dir: str
    source_host: str | None = None
    port: int = 22
    go_on: bool = False
    stop_after: str | None = None
    dest_root: str = inspect_mod.DEFAULT_DEST_ROOT
    domain: str | None = None
    state_dir: str | None = None
    owner: str | None = None
    passwd: str | None = None
    maildirs: list[str] = field(default_factory=list)
    skip_unsafe_links: bool = False
    json: bool = False
    log: str | None = None
    imp: importing.ImportOptions = field(default_factory=importing.ImportOptions)


class TeeProgress(Progress):
    def __init__(self, *ps: Progress) -> None:
        self.ps = ps

    def start(self, label: str, total: int) -> None:
        for p in self.ps:
            p.start(label, total)

    def update(self, done: int) -> None:
        for p in self.ps:
            p.update(done)

    def finish(self) -> None:
        for p in self.ps:
            p.finish()

    def abort(self) -> None:
        for p in self.ps:
            p.abort()


class UI:
    """Progress on standard error (none with --json), results on standard output, everything in the log."""

    def __init__(self, json_out: bool, log_path: Path) -> None:
        self.json = json_out
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.logf = open(log_path, "a", encoding="utf-8")
        self.log_path = log_path

    def _log(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for line in text.splitlines() or [""]:
            self.logf.write(f"{stamp} {line}\n")
        self.logf.flush()

    def line(self, text: str) -> None:
        if not self.json:
            print(text, file=sys.stderr, flush=True)
        self._log(text)

    def out(self, text: str) -> None:
        if not self.json:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()
        self._log(text.rstrip("\n"))

    def step(self, name: str, text: str) -> None:
        self.line(f"[{STEPS.index(name) + 1}/{len(STEPS)}] {name}: {text}")

    def progress(self) -> Progress:
        return TeeProgress(NullProgress() if self.json else make_progress(sys.stderr), PlainProgress(self.logf))

    def action(self, a, i: int, n: int) -> None:
        self.line(f"  [{i}/{n}] {progress_word(a)} in {a.seconds:.1f}s")

    def close(self) -> None:
        self.logf.close()


def progress_word(a) -> str:
    """An action as its record comes: how it ended, not yet what its lines say (the report tells)."""
    return f"{a.name}: " + (a.reason or ("exit code 0" if a.status == "ok" else a.status))


class _Indented:
    """Plain progress lines of the mailboxes step, indented under the step's own line."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write("".join("  " + ln if ln.strip() else ln for ln in text.splitlines(True)))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def next_steps(host: str | None, port: int) -> list[str]:
    h = (host or "HOST") + (f" -p {port}" if port != 22 else "")
    return [
        f"maildirsync setup -s {h}   # again: migration-import replaced /root/.ssh with the source's; setup checks "
        "that maildirsync's own key (kept in /var/lib/maildirsync) still logs in, and installs it if not",
        f"maildirsync -s {h} -n   # what the sync would change since the backup was taken",
        f"maildirsync -s {h}      # the sync: repeat it until the MX record is switched, then once more",
    ]


def _nonempty(tree: Path) -> bool:
    try:
        return any(e.name != STATE_DIRNAME for e in os.scandir(tree))
    except OSError as e:
        raise BadInputError(f"cannot read {tree}: {e.strerror or e}") from None


def _start(o: AllOptions) -> tuple[Path, Path, TreeState]:
    archive = Path(o.archive)
    if not archive.exists():
        raise BadInputError(f"{archive}: no such file or directory", "give the full backup of the source")
    tree = Path(o.dir).absolute()
    if tree.exists() and not tree.is_dir():
        raise BadInputError(f"{tree} exists and is not a directory")
    st = TreeState(tree)
    if tree.is_dir() and not st.exists() and _nonempty(tree):
        raise DirNotEmptyError(str(tree))
    try:
        tree.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise BadInputError(f"cannot create {tree}: {e.strerror or e}", "run as root, or choose another DIR") from None
    return archive, tree, st


def _check_archive(st: TreeState, archive: Path) -> None:
    ident = archive_identity(archive)
    had = st.data.get("archive")
    if had is None:
        if st.imported:
            importing.refuse_if_imported(st)
            raise BadInputError(f"{st.tree} was imported with `maildirsync-import run`, not `all`",
                                f"follow it with `maildirsync-import run {st.tree}`")  # fmt: skip
        if st.steps:
            raise BadInputError(f"{st.path} names no archive", "explode the archive into a new empty directory")
        st.data["archive"] = ident
        st.save()
    elif (had.get("size"), had.get("mtime_ns")) != (ident["size"], ident["mtime_ns"]):
        raise BadInputError(
            f"{st.tree} holds what `all` made of another archive ({had.get('path')}), not of {ident['path']}",
            f"give that archive again to continue, or explode {archive} into a new empty directory",
        )


def run_all(o: AllOptions) -> int:
    archive, tree, st = _start(o)
    with st.locked("maildirsync-import all"):
        st.load()
        _check_archive(st, archive)
        ui = UI(o.json, Path(o.log) if o.log else st.log)
        try:
            ui._log(f"maildirsync-import all {archive} {tree} (pid {os.getpid()})")
            return _Run(o, archive, tree, st, ui).go()
        finally:
            ui.close()


class _Run:
    def __init__(self, o: AllOptions, archive: Path, tree: Path, st: TreeState, ui: UI) -> None:
        self.o, self.archive, self.tree, self.st, self.ui = o, archive, tree, st, ui
        self.out: dict = {"dir": str(tree), "archive": str(archive), "steps": st.steps, "log": str(ui.log_path)}
        self.exit = 0
        self._inv = None

    # ------------------------------------------------------------------ helpers

    def inv(self):
        """A fresh inventory of the tree (read-only; the tree is intact until the import)."""
        if self._inv is None:
            o = self.o
            from maildirsync import remote

            domain = o.domain or remote.host_domain()
            self._inv = inspect_mod.inspect_tree(self.tree, dest_root=o.dest_root, domain=domain, passwd=o.passwd)
            mapped = {m.partition("=")[0].strip(): m.partition("=")[2].strip() for m in o.maildirs}
            for p in self._inv.pitfalls:
                name = p.subject.split("/")[-2] if p.kind == "orphan_maildir" else None
                if name in mapped:  # not lost: the mailboxes step copies it
                    p.blocking = False
                    p.message += f" -- copied into {mapped[name]}'s mailbox (--maildir)"
            if not o.source_host:
                self._inv.pitfalls.append(inspect_mod.Pitfall(
                    "no_source_host", "--source-host",
                    "without --source-host the mailboxes step cannot seed the index of `maildirsync -s HOST`, and "
                    "after the import it is too late (the tree is consumed): the first sync then adopts the mail "
                    "without knowing it, and mail expunged on the source since the backup stays here",
                    blocking=True))  # fmt: skip
        return self._inv

    def finish(self, code: int) -> int:
        self.out["exit_code"] = code
        if self.o.json:
            for name, f in (("inventory", "inventory.json"), ("mailboxes", "mailboxes.json"), ("import", "report.json")):
                p = self.st.dir / f
                if p.is_file() and name not in self.out:
                    self.out[name] = json.loads(p.read_text(encoding="utf-8"))
            print(json.dumps(self.out, indent=1, default=str))
        return code

    def earlier(self, name: str) -> None:
        rec = self.st.step(name) or {}
        self.ui.out(f"{name}: done {when(rec.get('finished'))}: {rec.get('summary', '')}")

    def stopped_after(self, name: str) -> bool:
        if self.o.stop_after != name:
            return False
        self.ui.out(f"stopped after {name}, as asked: run the same command without --stop-after to go on")
        self.out["stopped_after"] = name
        return True

    # ------------------------------------------------------------------ the steps

    def go(self) -> int:
        st = self.st
        if st.done("report"):
            self.ui.out(f"every step is done on {self.tree}:")
            for name in STEPS:
                self.earlier(name)
            self._next()
            importing.refuse_if_imported(st)
        for name in STEPS:
            if name in ("explode", "inspect", "mailboxes") and st.imported and not st.done(name):
                continue  # the import started: the tree is consumed, what came before it is what it was
            code = getattr(self, "step_" + name)()
            if code is not None:
                return self.finish(code)
            if self.stopped_after(name):
                return self.finish(0)
        self._next()
        return self.finish(self.exit)

    def step_explode(self) -> int | None:
        st, ui = self.st, self.ui
        if st.done("explode"):
            self.earlier("explode")
            return None
        resumed = st.step("explode") is not None
        ui.step("explode", f"{self.archive} into {self.tree}" + (" (again: the last one did not finish)" if resumed else ""))
        st.set_step("explode", "started")
        try:
            r = archive_mod.explode(self.archive, self.tree, force=resumed, skip_unsafe_links=self.o.skip_unsafe_links,
                                    progress=ui.progress(), say=ui.line)  # fmt: skip
        except ImporterError as e:
            st.set_step("explode", "failed", error=e.message)
            raise
        if r.kind == "dar":
            summary = f"restored {len(r.steps)} dar archives: {', '.join(r.steps)}"
        else:
            summary = f"{r.files} files ({human(r.bytes)}), {r.dirs} directories, {r.links} links ({r.kind})"
        warnings = [f"skipped {m}: {why}" for m, why in r.skipped] + list(r.warnings)
        st.set_step("explode", "done", summary=summary, warnings=warnings)
        ui.out(f"explode: {summary}")
        for w in warnings:
            ui.out(f"  WARNING {w}")
        return None

    def step_inspect(self) -> int | None:
        st, ui = self.st, self.ui
        if st.done("inspect"):
            self.earlier("inspect")
            return None
        ui.step("inspect", str(self.tree))
        inv = self.inv()
        st.write_file(st.dir / "inventory.txt", inspect_mod.render_text(inv))
        st.write_file(st.dir / "inventory.json", inspect_mod.to_json(inv))
        summary = (f"{len(inv.users)} users ({inv.total_messages} messages, {human(inv.total_bytes)}), "
                   f"{len(inv.groups)} groups, {len(inv.pseudonyms)} pseudonyms, {len(inv.orphans)} Maildirs no user "
                   f"owns, {len(inv.pitfalls)} pitfalls ({len(inv.blocking)} blocking)")  # fmt: skip
        ui.out(f"inspect: {summary}; the whole inventory: {st.dir / 'inventory.txt'}")
        for line in inspect_mod.render_skips(inv):
            ui.out("  " + line)
        for p in inv.pitfalls:
            ui.out("  " + inspect_mod.pitfall_line(p))
        blocking = [inspect_mod.pitfall_line(p) for p in inv.blocking]
        if blocking and not self.o.go_on:
            st.set_step("inspect", "blocked", summary=summary, blocking=blocking)
            ui.out(f"stopped: {len(blocking)} blocking problems (above); fix them and run the same command again, "
                   "or add --go-on to go on anyway")  # fmt: skip
            self.out["blocked"] = blocking
            return 1
        st.set_step("inspect", "done", summary=summary, blocking=blocking, went_on=bool(blocking))
        return None

    def step_mailboxes(self) -> int | None:
        st, ui, o = self.st, self.ui, self.o
        if st.done("mailboxes"):
            self.earlier("mailboxes")
            return None
        from maildirsync import report as sync_report
        from maildirsync.cli import interruptible, parse_owner
        from maildirsync.errors import MaildirsyncError

        ui.step("mailboxes", f"copy the mailboxes into {o.dest_root}" +
                (f", seeding the index of {o.source_host}" if o.source_host else ""))  # fmt: skip
        try:
            owner = parse_owner(o.owner)
        except MaildirsyncError as e:
            raise BadInputError(e.message, "give --owner USER:GROUP of this host, numbers, or 'keep'") from None
        st.set_step("mailboxes", "started")
        seeding = mailboxes_mod.prepare(
            self.tree, dest_root=o.dest_root, domain=self.inv().domain, source_host=o.source_host, port=o.port,
            state_base=o.state_dir or mailboxes_mod.DEFAULT_STATE, maildirs=o.maildirs,
        )  # fmt: skip
        tty = sys.stderr.isatty() and not o.json
        progress = sync_report.Progress(max(len(seeding.jobs), 1), stream=sys.stderr if tty else _Indented(sys.stderr),
                                        enabled=tty)  # fmt: skip

        def on_user(u) -> None:
            if not o.json:
                progress.user_done(u)  # a bar on a terminal, a plain line per user elsewhere
            c = u.counts()
            ui._log(f"  mailboxes: {u.user}: {u.status}{' (' + u.reason + ')' if u.reason else ''} "
                    f"new={c['new']} adopted={c['adopted']} bytes={c['bytes']}")  # fmt: skip

        with interruptible() as stop:
            result = mailboxes_mod.run(seeding, owner=owner, stop=stop, progress=progress.advance, on_user=on_user)
        progress.close()
        st.write_file(st.dir / "mailboxes.json", mailboxes_mod.to_json(seeding, result))
        counts = [u.counts() for u in result.users]
        failed = [u.user for u in result.users if u.status == "failed"]
        summary = (f"{len(result.users)} mailboxes: {sum(c['new'] for c in counts)} messages copied "
                   f"({human(sum(c['bytes'] for c in counts))}), {sum(c['adopted'] for c in counts)} already there, "
                   f"{len(failed)} failed; index of {seeding.source_label}")  # fmt: skip
        if not o.json:
            sync_report.print_summary(result, sys.stdout)
        ui._log(f"mailboxes: {summary}")
        if result.interrupted:
            st.set_step("mailboxes", "interrupted", summary=summary)
            ui.out("interrupted: what was copied is recorded; run the same command again to finish the mailboxes")
            return 130
        if failed:
            st.set_step("mailboxes", "failed", summary=summary, failed=failed)
            if not o.go_on:
                ui.out(f"stopped: the mailboxes of {', '.join(failed)} failed (reasons above); migration-import would "
                       "skip a half-copied mailbox: fix the cause and run the same command again, or add --go-on")  # fmt: skip
                return 1
            self.exit = 1
        st.set_step("mailboxes", "done", summary=summary, source_host=o.source_host, port=o.port, failed=failed)
        ui.out(f"mailboxes: {summary}")
        return None

    def step_import(self) -> int | None:
        st, ui = self.st, self.ui
        imp = st.imported
        if imp and imp.get("finished"):
            if not st.done("import"):
                st.set_step("import", "done", summary=f"status {imp.get('status') or 'interrupted'}")
            self.earlier("import")
            self._run = EventRun.from_dict(imp["run"])
            return None
        inv = None
        if imp is None:
            self._inv = None  # after the mailboxes step: the destination changed
            inv = self.inv()
            ui.out("Checks before the import (what it will skip, now that the mailboxes are copied):")
            for line in importing.checks(inv, predictions_only=True) or ["nothing: every mailbox will be imported"]:
                ui.out(f"  {line}")
        ui.step("import", f"migration-import on {self.tree}")
        self._run = importing.do_import(st, self.o.imp, inv, on_action=ui.action, say=ui.line)
        return None

    def step_report(self) -> int | None:
        ui = self.ui
        ui.step("report", "reading the system log")
        rep, after = importing.make_report(self.st, self._run, self.o.imp)
        text = report.render_text(rep)
        for a in after:
            text += f"after the import: {a}\n"
        ui.out(text)
        if rep.exit_code or after:
            self.exit = max(self.exit, 1)
        self.out["import"] = {"report": rep.to_dict(), "after_import": after}
        return None

    def _next(self) -> None:
        rec = self.st.step("mailboxes") or {}
        seeded = (rec.get("source_host"), rec.get("port") or 22) if self.st.done("mailboxes") else None
        if seeded and seeded[0] and self.o.source_host and seeded != (self.o.source_host, self.o.port):
            self.ui.out(f"note: the mailboxes step seeded the index of {seeded[0]} port {seeded[1]}, not of "
                        f"{self.o.source_host} port {self.o.port}: `maildirsync -s` finds its records only under the "
                        "host and port it was seeded for")  # fmt: skip
        host = self.o.source_host or rec.get("source_host")
        port = self.o.port if self.o.source_host else rec.get("port") or 22
        steps = next_steps(host, port)
        self.out["next"] = steps
        self.ui.out("Next:\n" + "".join(f"  {i}. {s}\n" for i, s in enumerate(steps, 1)))

"""What a person (or a program, with ``--json``) is told about a run."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable, TextIO

from .engine import RunResult, UserResult
from .maildir import folder_display, show
from .plan import INDEX_ONLY, Action

COLUMNS = ("new", "renamed", "moved", "deleted", "conflicts", "adopted", "skipped", "failed")

# What each sigil of the -v output means, in the order a reader meets them (README.md says the same).
LEGEND = (
    ("+", "download"),
    ("*", "download again (content changed on the source)"),
    ("!", "conflict: both kept"),
    ("~", "rename (flags changed)"),
    (">", "local move between folders"),
    ("c", "local copy"),
    ("=", "adopted (already there)"),
    ("-", "delete"),
    ("d", "create a folder"),
    ("C", "control file (dovecot-uidlist, dovecot-keywords, subscriptions, ...)"),
    (".", "index only (-vv)"),
)


def legend() -> str:
    return "; ".join(f"{sigil} {meaning}" for sigil, meaning in LEGEND)


def describe(a: Action) -> str:
    """One line for an action: sigil, folder, what happens."""
    where = folder_display(a.folder)
    if a.kind == "mkdir":
        return f"{a.sigil} {where}/ (create folder)"
    if a.kind == "control":
        return f"{a.sigil} {where}/{show(a.base)} ({a.note})"
    if a.kind in ("move", "copy"):
        return f"{a.sigil} {folder_display(a.from_folder)}/{_w(a.old)} -> {where}/{_w(a.dst)}"
    if a.kind == "rename":
        extra = " (flags merged)" if a.note else ""
        return f"{a.sigil} {where}/{_w(a.old)} -> {where}/{_w(a.dst)}{extra}"
    if a.kind == "adopt":
        tail = f" -> {where}/{_w(a.dst)}" if a.dst != a.old else ""
        return f"{a.sigil} {where}/{_w(a.old)}{tail} (already there, adopted)"
    if a.kind == "delete":
        return f"{a.sigil} {where}/{_w(a.old)}"
    if a.kind in ("record", "forget"):
        return f"{a.sigil} {where}/{show(a.base)} (index only: {a.kind})"
    label = {"fetch": "", "refetch": " (content changed on the source)", "conflict": " (conflict: both kept)"}[a.kind]
    return f"{a.sigil} {where}/{_w(a.dst)}{label}"


def _w(w) -> str:
    return f"{w[0].decode()}/{show(w[1])}" if w else "?"


def action_json(a: Action) -> dict:
    def w(x):
        return None if x is None else [x[0].decode(), x[1].decode("utf-8", "surrogateescape")]

    d = {
        "kind": a.kind,
        "sigil": a.sigil,
        "folder": a.folder.decode("utf-8", "surrogateescape"),
        "base": a.base.decode("utf-8", "surrogateescape"),
        "src": w(a.src),
        "dst": w(a.dst),
        "old": w(a.old),
        "size": a.size,
    }
    if a.from_folder is not None:
        d["from_folder"] = a.from_folder.decode("utf-8", "surrogateescape")
    if a.note:
        d["note"] = a.note
    return d


def user_actions(u: UserResult) -> list[Action]:
    """A dry run lists the plan; a real run lists what it did."""
    if u.outcome is not None:
        return u.outcome.done
    return u.plan.actions if u.plan is not None else []


def to_json(result: RunResult) -> str:
    users = []
    for u in result.users:
        users.append(
            {
                "user": u.user,
                "status": u.status,
                "reason": u.reason,
                "seconds": round(u.seconds, 3),
                "counts": u.counts(),
                "warnings": u.warnings,
                "actions": [action_json(a) for a in user_actions(u)],
                "failures": [
                    {"action": action_json(a), "error": err} for a, err in (u.outcome.failed if u.outcome else [])
                ],
            }
        )
    return json.dumps(
        {
            "dry_run": result.dry_run,
            "interrupted": result.interrupted,
            "exit_code": result.exit_code,
            "notes": result.notes,
            "users": users,
        },
        indent=1,
    )


def print_actions(u: UserResult, out: TextIO, verbose: int) -> None:
    for a in user_actions(u):
        if a.kind in INDEX_ONLY and verbose < 2:
            continue
        print(f"{u.user}: {describe(a)}", file=out)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def print_summary(result: RunResult, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    for note in result.notes:
        print(f"note: {note}", file=out)
    head = ["user", *COLUMNS, "bytes", "time", "status"]
    rows = []
    for u in result.users:
        c = u.counts()
        rows.append([u.user, *(str(c[k]) for k in COLUMNS), human_bytes(c["bytes"]), f"{u.seconds:.1f}s", u.status])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(("DRY RUN — nothing was changed. " if result.dry_run else "") + f"{len(rows)} user(s):", file=out)
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))), file=out)
    for u in result.users:
        if u.reason:
            print(f"{u.user}: {u.status}: {u.reason}", file=out)
        for a, err in u.outcome.failed if u.outcome is not None else ():
            print(f"{u.user}: FAILED {describe(a)}: {err}", file=out)
        for w in u.warnings:
            print(f"{u.user}: warning: {w}", file=out)
    if result.interrupted:
        print("interrupted: work done so far is recorded; run again to finish", file=out)


class Progress:
    """Progress on a terminal (users done, messages, bytes, rate, ETA); a quiet no-op elsewhere, where
    per-user log lines are printed instead.

    On a terminal the line is redrawn in place: carriage return, the text, then erase to the end of the
    line, so nothing of a longer earlier redraw is left behind; and the text always fits in one column
    less than the terminal is wide, so it never wraps (a wrapped line would scroll at every redraw)."""

    def __init__(
        self,
        total_users: int,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total = total_users
        self.stream = stream = stream or sys.stderr
        self.enabled = stream.isatty() if enabled is None else enabled
        self.clock = clock
        self.users_done = 0
        self.files = 0
        self.bytes = 0
        self.t0 = clock()
        self._last = 0.0
        self._drawn = False

    def advance(self, user: str, files: int, nbytes: int) -> None:
        self.files += files
        self.bytes += nbytes
        now = self.clock()
        if self.enabled and now - self._last > 0.2:
            self._last = now
            self._draw()

    def user_done(self, u: UserResult) -> None:
        self.users_done += 1
        if self.enabled:
            self._draw()
        else:
            c = u.counts()
            print(
                f"[{self.users_done}/{self.total}] {u.user}: {u.status}"
                + (f" ({u.reason})" if u.reason else "")
                + f" new={c['new']} renamed={c['renamed']} moved={c['moved']} deleted={c['deleted']}"
                f" bytes={c['bytes']} {u.seconds:.1f}s",
                file=self.stream,
                flush=True,
            )

    def line(self, width: int) -> str:
        """The progress text for a terminal ``width`` columns wide: the fullest form that fits in
        ``width - 1`` columns (the last column is left free: writing there makes some terminals wrap)."""
        el = max(self.clock() - self.t0, 1e-6)
        rate = f"{human_bytes(int(self.bytes / el))}/s"
        users = f"{self.users_done}/{self.total}"
        eta = ""
        if self.users_done and self.users_done < self.total:
            eta = f"{el / self.users_done * (self.total - self.users_done):.0f}s"
        size = human_bytes(self.bytes)
        forms = [
            [f"users {users}", f"messages {self.files}", size, rate, eta and f"ETA {eta}"],
            [f"users {users}", f"msgs {self.files}", size, rate, eta and f"ETA {eta}"],
            [users, str(self.files), size, rate, eta],
            [users, size, eta],
            [users],
        ]
        room = max(width - 1, 0)
        for parts in forms:
            text = " " + "  ".join(p for p in parts if p)
            if len(text) <= room:
                return text
        return text[:room]

    def _width(self) -> int:
        # Asked at every redraw: the terminal may have been resized since the last one.
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (AttributeError, OSError, ValueError):
            return 80

    def _draw(self) -> None:
        self.stream.write("\r" + self.line(self._width()) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

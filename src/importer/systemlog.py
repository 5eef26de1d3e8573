"""The system log of a ``migration-import`` run: ``/var/log/messages``, or the journal.

NethServer's ``signal-event`` sends its actions' output to syslog (facility
local1), each line tagged ``esmith::event[PID]`` with its own PID; rsyslog
writes it to ``/var/log/messages`` in the traditional format::

    Mar  5 10:11:12 host esmith::event[4242]: [ERROR] bob skipped: not found in passwd database

(or with an RFC 3339 stamp when rsyslog is told so). Everything here turns
those lines into :class:`LogLine` records with the tag and PID parsed, so that
:mod:`importer.report` can attribute them by PID and never by matching words in
the text: a line of another program that happens to mention an action is not
that action's.

* :func:`mark` notes where the log ends before the run (inode and size), and
  :func:`read_since` reads what was appended after it, following a rotation
  (the old file is found again by its inode).
* :func:`read_journal` reads ``journalctl -t esmith::event`` for the run's time
  window, for hosts where ``/var/log/messages`` cannot be read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime

SYSLOG = "/var/log/messages"
TAG = "esmith::event"
SLACK = 2.0  # seconds around the run's window: syslog stamps are whole seconds
_RFC3164 = re.compile(r"^([A-Z][a-z]{2})\s+(\d{1,2}) (\d\d):(\d\d):(\d\d)\s+")
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s+")
# The tag may hold colons ("esmith::event"): it ends at its "[PID]:" or at the first ": ".
_REST = re.compile(r"^(?P<host>\S+)\s+(?P<tag>[^\s\[\]]+?)(?:\[(?P<pid>\d+)\])?:(?:\s|$)(?P<msg>.*)$", re.S)
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
# What rsyslog and journald write when they drop messages: the report must say its lines may be incomplete.
_DROPPED = re.compile(r"rate-?limit|[Ss]uppressed \d+ messages|messages lost")


@dataclass
class LogLine:
    raw: str
    ts: float | None
    tag: str | None
    pid: int | None
    msg: str


def parse_time(line: str, year: int) -> float | None:
    m = _RFC3339.match(line)
    if m:
        stamp = m.group(1).replace(" ", "T").replace("Z", "+00:00")
        if re.search(r"[+-]\d\d\d\d$", stamp):  # fromisoformat of 3.8-3.10 wants +HH:MM
            stamp = stamp[:-2] + ":" + stamp[-2:]
        try:
            return datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            return None
    m = _RFC3164.match(line)
    if m and m.group(1) in _MONTHS:
        try:
            dt = datetime(year, _MONTHS[m.group(1)], int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)))
        except ValueError:
            return None
        return dt.timestamp()
    return None


def parse_line(raw: str, year: int) -> LogLine:
    """Split a syslog line into stamp, tag, PID and message; a line of another
    shape keeps only its text (and is never anyone's)."""
    m = _RFC3339.match(raw) or _RFC3164.match(raw)
    if m:
        rest = _REST.match(raw[m.end():])
        if rest:
            pid = rest.group("pid")
            return LogLine(raw, parse_time(raw, year), rest.group("tag"), int(pid) if pid else None, rest.group("msg"))
    return LogLine(raw, None, None, None, raw)


def dropped_note(line: LogLine) -> str | None:
    """A line in which the logging system says it dropped messages."""
    if line.tag in ("rsyslogd", "journal", "systemd-journald", "systemd-journal") and _DROPPED.search(line.msg):
        return line.msg.strip()
    return None


# --------------------------------------------------------------------------- /var/log/messages


@dataclass
class SyslogMark:
    """Where the system log was when the run started, to read only what follows."""

    path: str
    inode: int | None = None
    size: int = 0
    time: float = 0.0


def mark(path: str = SYSLOG) -> SyslogMark:
    now = time.time()
    try:
        st = os.stat(path)
        return SyslogMark(path, st.st_ino, st.st_size, now)
    except OSError:
        return SyslogMark(path, None, 0, now)


def _rotated(m: SyslogMark) -> str | None:
    """The file that was ``m.path`` when the mark was taken, after logrotate renamed it."""
    d, base = os.path.split(m.path)
    try:
        names = sorted(os.listdir(d or "."))
    except OSError:
        return None
    for n in names:
        if n != base and n.startswith(base):
            p = os.path.join(d, n)
            try:
                if os.stat(p).st_ino == m.inode:
                    return p
            except OSError:
                continue
    return None


def read_since(m: SyslogMark) -> tuple[list[str] | None, str]:
    """The lines appended to the log since the mark: ``(lines, note)``; ``lines`` is
    ``None`` when the log cannot be read (the note says why)."""
    path = m.path
    if not os.path.exists(path):
        return None, f"{path} does not exist"
    chunks: list[bytes] = []
    try:
        st = os.stat(path)
        if m.inode is not None and st.st_ino != m.inode:
            old = _rotated(m)
            if old is not None:
                with open(old, "rb") as f:
                    f.seek(m.size)
                    chunks.append(f.read())
            offset = 0
        else:
            offset = m.size if st.st_size >= m.size else 0  # truncated: read it all
        with open(path, "rb") as f:
            f.seek(offset)
            chunks.append(f.read())
    except OSError as e:
        return None, f"{path} is not readable ({e.strerror or e})"
    text = b"".join(c if c.endswith(b"\n") or not c else c + b"\n" for c in chunks).decode("utf-8", "replace")
    return text.splitlines(), f"read {path}"


# --------------------------------------------------------------------------- the journal


def _journal_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _journal_message(v) -> str:
    if isinstance(v, list):  # journald gives non-UTF-8 messages as a list of bytes
        try:
            return bytes(v).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return ""
    return v if isinstance(v, str) else ""


def read_journal(start: float, end: float, program: str = "journalctl") -> tuple[list[LogLine] | None, str]:
    """``journalctl -t esmith::event`` for ``[start, end]`` (with slack), as JSON: ``(lines, note)``."""
    exe = shutil.which(program)
    if exe is None:
        return None, f"{program} is not installed"
    argv = [exe, "-t", TAG, "--since", _journal_time(start - SLACK), "--until", _journal_time(end + SLACK + 1),
            "-o", "json", "--no-pager", "-q"]  # fmt: skip
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=120)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{program} failed: {e}"
    if proc.returncode != 0:
        why = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return None, f"{program} failed (exit {proc.returncode}{': ' + why[-1] if why else ''})"
    out: list[LogLine] = []
    for raw in proc.stdout.decode("utf-8", "replace").splitlines():
        try:
            e = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(e, dict):
            continue
        try:
            ts = int(e.get("__REALTIME_TIMESTAMP", "0")) / 1e6
        except (TypeError, ValueError):
            ts = None
        pid_s = e.get("SYSLOG_PID") or e.get("_PID")
        pid = int(pid_s) if isinstance(pid_s, str) and pid_s.isdigit() else None
        tag = e.get("SYSLOG_IDENTIFIER") if isinstance(e.get("SYSLOG_IDENTIFIER"), str) else None
        msg = _journal_message(e.get("MESSAGE"))
        stamp = time.strftime("%b %e %H:%M:%S", time.localtime(ts)) if ts else "-"
        host = e.get("_HOSTNAME") if isinstance(e.get("_HOSTNAME"), str) else "-"
        out.append(LogLine(f"{stamp} {host} {tag}[{pid}]: {msg}", ts, tag, pid, msg))
    return out, f"read the journal ({program} -t {TAG}, {_journal_time(start - SLACK)} to {_journal_time(end + SLACK + 1)})"

"""The ways to pull the source's mail, each measured the same way.

* ``script``: what ``sync_maildirs.sh`` does: one ``rsync -r -l -t --delete`` per user, each with its
  own ssh connection, into ``<dest>/<user>@<domain>/Maildir``.
* ``rsync``: one rsync of the whole tree (users' directory and admin's Maildir in one connection) with the
  same flags: the strongest rsync. It mirrors the source layout (``users/<user>/Maildir``, ``Maildir``),
  since one rsync cannot rename ``<user>`` to ``<user>@<domain>``.
* ``maildirsync``: the SSH sync CLI into ``<dest>/<user>@<domain>/Maildir``.
* ``doveadm``: Dovecot's own ``doveadm backup -R``, user by user over the same sshd, a throwaway Dovecot
  configuration on each side (:mod:`bench.dovecot`): a reference, with no goal.

A run is measured from the outside: wall clock, CPU and peak RSS of the client's process tree (ssh,
rsync's receiver included) by ``launch.py``, bytes from the wire counters.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import dovecot
from bench.netlab import Network
from bench.verify import DOVEADM_POLICY, MAILDIRSYNC_POLICY, RSYNC_POLICY, Policy

RSYNC_FLAGS = ["-r", "-l", "-t", "--delete"]
LAUNCHER = Path(__file__).with_name("launch.py")


@dataclass
class Exec:
    returncode: int
    wall_s: float
    cpu_s: float
    maxrss_kib: int
    stdout: str
    stderr: str


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> Exec:
    """Run ``argv`` through the launcher and account for its whole process tree (ssh, rsync's receiver...).
    ``env``: variables added to the bench's environment for it."""
    with tempfile.TemporaryDirectory(prefix="msb-run-") as tmp:
        stats = Path(tmp) / "usage.json"
        with open(Path(tmp) / "out", "w+b") as out, open(Path(tmp) / "err", "w+b") as err:
            subprocess.run([sys.executable, "-I", "-S", str(LAUNCHER), str(stats), *argv],
                           stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                           env={**os.environ, **env} if env else None)
            out.seek(0)
            err.seek(0)
            text_out, text_err = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        try:
            u = json.loads(stats.read_text())
        except (OSError, ValueError):
            return Exec(127, 0.0, 0.0, 0, text_out, "launcher failed: " + text_err)
        return Exec(u["returncode"], u["wall_s"], u["cpu_s"], u["maxrss_kib"], text_out, text_err)


@dataclass
class Outcome:
    ok: bool
    wall_s: float
    cpu_s: float
    maxrss_kib: int
    app_bytes: int | None = None  # what the tool says it moved (rsync --stats sent+received)
    files_transferred: int | None = None
    error: str = ""
    extra: dict = field(default_factory=dict)


_STATS = {
    "files": re.compile(r"Number of regular files transferred:\s*([\d,]+)"),
    "sent": re.compile(r"Total bytes sent:\s*([\d,]+)"),
    "received": re.compile(r"Total bytes received:\s*([\d,]+)"),
}


def rsync_stats(text: str) -> dict[str, int]:
    return {k: int(m.group(1).replace(",", "")) for k, rx in _STATS.items() if (m := rx.search(text))}


def make_empty_maildir(path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)


class Contender:
    key = ""
    label = ""
    policy: Policy = RSYNC_POLICY

    def __init__(self, net: Network, source: dict[str, Path], users_dir: Path, domain: str, work: Path):
        self.net, self.source, self.users_dir, self.domain, self.work = net, source, users_dir, domain, Path(work)
        self.dest = self.work / f"dst-{self.key}"

    def unavailable(self) -> str | None:
        """Why this contender cannot run here, or None."""
        return None

    def dest_maildirs(self) -> dict[str, Path]:
        return {u: self.dest / f"{u}@{self.domain}" / "Maildir" for u in self.source}

    def reset(self) -> None:
        """A fresh destination with the empty mailboxes NethServer would have created."""
        if self.dest.exists():
            subprocess.run(["rm", "-rf", str(self.dest)], check=True)
        for md in self.dest_maildirs().values():
            make_empty_maildir(md)

    def remote(self, path: Path) -> str:
        return f"root@{self.net.host}:{path}"

    def rsync_argv(self, sources: list[str], dest: Path) -> list[str]:
        return self.net.wrap(["rsync", *RSYNC_FLAGS, "--stats", "-e", shlex.join(self.net.ssh_command()),
                              *sources, str(dest)])

    def run(self) -> Outcome:
        raise NotImplementedError


class ScriptLoop(Contender):
    key, label = "script", "(a) rsync per user"

    def run(self) -> Outcome:
        total = Outcome(True, 0.0, 0.0, 0, 0, 0)
        t0 = time.perf_counter()
        for user in sorted(self.source):
            e = run_measured(self.rsync_argv([self.remote(self.source[user]) + "/"],
                                             self.dest_maildirs()[user]))
            stats = rsync_stats(e.stdout)
            total.cpu_s += e.cpu_s
            total.maxrss_kib = max(total.maxrss_kib, e.maxrss_kib)
            total.app_bytes += stats.get("sent", 0) + stats.get("received", 0)
            total.files_transferred += stats.get("files", 0)
            if e.returncode != 0 and total.ok:
                total.ok, total.error = False, f"rsync for {user} exited {e.returncode}: {e.stderr.strip()[-500:]}"
        total.wall_s = time.perf_counter() - t0
        return total


class WholeTree(Contender):
    key, label = "rsync", "(b) rsync whole tree"

    def dest_maildirs(self) -> dict[str, Path]:
        return {u: (self.dest / "Maildir" if u == "admin" else self.dest / "users" / u / "Maildir")
                for u in self.source}

    def run(self) -> Outcome:
        sources = [self.remote(self.users_dir)]
        if "admin" in self.source:
            sources.append(self.remote(self.source["admin"]))
        e = run_measured(self.rsync_argv(sources, self.dest))
        stats = rsync_stats(e.stdout)
        out = Outcome(e.returncode == 0, e.wall_s, e.cpu_s, e.maxrss_kib,
                      stats.get("sent", 0) + stats.get("received", 0), stats.get("files"))
        if e.returncode != 0:
            out.error = f"rsync exited {e.returncode}: {e.stderr.strip()[-500:]}"
        return out


def byte_compile(python: Path) -> None:
    """Compile the installed packages' bytecode, as pip does when it installs a wheel: an editable
    install under PYTHONDONTWRITEBYTECODE (as on these machines) would otherwise compile every module of
    maildirsync at every start, a fifth of a second a run that no installed copy pays."""
    code = "import importer, maildirsync, os; print(os.path.dirname(maildirsync.__file__), os.path.dirname(importer.__file__))"
    r = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if r.returncode == 0:
        subprocess.run([str(python), "-m", "compileall", "-q", *r.stdout.split()], capture_output=True)


class Maildirsync(Contender):
    key, label = "maildirsync", "(c) maildirsync"
    policy = MAILDIRSYNC_POLICY

    def __init__(self, *args, jobs: int | None = None, **kw):
        super().__init__(*args, **kw)
        self.state = self.work / "state-maildirsync"
        self.jobs = jobs
        self.exe = Path(sys.executable).with_name("maildirsync")
        self.profile_to: Path | None = None  # the next run writes its cProfile pstats there (MAILDIRSYNC_PROFILE)

    def unavailable(self) -> str | None:
        if not self.exe.exists():
            return f"{self.exe} not installed"
        try:
            r = subprocess.run([str(self.exe), "--help"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"maildirsync --help failed: {exc}"
        text = r.stdout + r.stderr
        if r.returncode != 0 or "--users-dir" not in text:
            last = (text.strip().splitlines() or ["no output"])[-1]
            return f"the SSH sync CLI is not there yet (maildirsync --help: exit {r.returncode}, {last[:200]})"
        byte_compile(self.exe.with_name("python"))
        return None

    def reset(self) -> None:
        super().reset()
        if self.state.exists():
            subprocess.run(["rm", "-rf", str(self.state)], check=True)
        self.state.mkdir(parents=True)

    def run(self) -> Outcome:
        n = self.net
        argv = [str(self.exe), "-s", n.host, "-p", str(n.port), "-i", str(n.server.client_key),
                "--known-hosts", str(n.known_hosts), "--state-dir", str(self.state), "--dest-root", str(self.dest),
                "--domain", self.domain, "--users-dir", str(self.users_dir), "--json"]
        # Ownership is left out of the comparison: the rsync contenders do not chown either.
        argv += ["--owner", "keep"]
        if "admin" in self.source:
            argv += ["--admin-maildir", str(self.source["admin"])]
        if self.jobs:
            argv += ["-j", str(self.jobs)]
        code = code_fingerprint()
        e = run_measured(n.wrap(argv), {"MAILDIRSYNC_PROFILE": str(self.profile_to)} if self.profile_to else None)
        totals, statuses = _totals(_last_json(e.stdout))
        out = Outcome(e.returncode == 0, e.wall_s, e.cpu_s, e.maxrss_kib, totals.get("bytes"),
                      sum(totals.get(k, 0) for k in ("new", "refetched", "conflicts")) if totals else None)
        out.extra = {"counts": totals, "user_statuses": statuses, "code": code}
        if e.returncode != 0:
            out.error = f"maildirsync exited {e.returncode}: {(e.stderr.strip() or e.stdout.strip())[-800:]}"
        return out


class DoveadmBackup(Contender):
    """``doveadm backup -R`` per user: the destination's doveadm pulls through ssh from a ``doveadm
    dsync-server`` that sshd starts on the source, each with its own throwaway configuration."""

    key, label = "doveadm", "(d) doveadm backup"
    policy = DOVEADM_POLICY

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.lab = dovecot.Lab(self.work / "doveadm")

    def unavailable(self) -> str | None:
        why = dovecot.unavailable()
        if why:
            return why
        pw = dovecot.mail_user()
        blocked = dovecot.unsearchable([self.work, *self.source.values()], pw)
        if blocked is not None:
            return (f"{blocked} is not searchable by {pw.pw_name}, the user doveadm runs as: give --work a "
                    "directory that every user can traverse (the default under /var/tmp is)")
        return None

    def reset(self) -> None:
        # doveadm backup creates the mailboxes itself: into an existing empty Maildir (as NethServer makes
        # them) its first run stops at "INBOX can't be deleted", the INBOX there having another GUID. So
        # the users' directories exist and their Maildirs do not.
        if self.dest.exists():
            subprocess.run(["rm", "-rf", str(self.dest)], check=True)
        for md in self.dest_maildirs().values():
            md.parent.mkdir(parents=True, exist_ok=True)
        self.lab.reset()

    def run(self) -> Outcome:
        total = Outcome(True, 0.0, 0.0, 0)
        ssh = self.net.ssh_command() + ["-F", "/dev/null", self.net.host]
        t0 = time.perf_counter()
        for user in sorted(self.source):
            argv = self.lab.backup_argv(user, self.dest_maildirs()[user], ssh, self.source[user])
            e = run_measured(self.net.wrap(argv))
            total.cpu_s += e.cpu_s
            total.maxrss_kib = max(total.maxrss_kib, e.maxrss_kib)
            if e.returncode != 0 and total.ok:
                total.ok, total.error = False, f"doveadm backup for {user} exited {e.returncode}: {e.stderr.strip()[-500:]}"
        total.wall_s = time.perf_counter() - t0
        return total


def _last_json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def code_fingerprint() -> str:
    """A hash of maildirsync's source as it is now: the package is installed editable, so a run uses the
    working tree of the moment, which may change between repetitions of a long bench."""
    import xxhash

    pkg = Path(__file__).resolve().parent.parent / "src" / "maildirsync"
    h = xxhash.xxh64()
    for path in sorted(pkg.rglob("*.py")):
        h.update(str(path.relative_to(pkg)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _totals(report) -> tuple[dict[str, int], dict[str, int]]:
    """Sum of the per-user counts of ``maildirsync --json`` (new, renamed, moved, deleted, bytes...), and
    how many users ended in each status."""
    totals: dict[str, int] = {}
    statuses: dict[str, int] = {}
    if isinstance(report, dict):
        for u in report.get("users", []):
            statuses[u.get("status", "?")] = statuses.get(u.get("status", "?"), 0) + 1
            for k, v in (u.get("counts") or {}).items():
                if isinstance(v, int):
                    totals[k] = totals.get(k, 0) + v
    return totals, statuses


CONTENDERS = {"script": ScriptLoop, "rsync": WholeTree, "maildirsync": Maildirsync, "doveadm": DoveadmBackup}

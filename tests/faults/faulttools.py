"""What every fault test needs: the ground truth of message contents, the invariants checked after a
fault and after the re-run, the real CLI started and killed, crash points injected into a forked run,
and a record of the counts (printed at the end of the pytest run, see conftest.py)."""

from __future__ import annotations

import ast
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from maildirsync.compat import exit_code
from maildirsync import engine, executor, local, maildir
from maildirsync.index import Batch, StateDir
from maildirsync.lab.corpus import SME8_ADMIN, SME8_USERS, CorpusSpec, generate
from maildirsync.lab.sshd import start_sshd
from mdtools import mkmaildir, snapshot

# --- the record ------------------------------------------------------------------------------------

RECORD: list[str] = []


def record(line: str) -> None:
    """A line for the end-of-run summary ("faults: ..."), so the counts can be quoted."""
    RECORD.append(line)
    print(line)


# --- ground truth ----------------------------------------------------------------------------------


def message_files(root: Path) -> Iterable[tuple[bytes, bytes, int, str]]:
    """Every message file under ``root`` (any layout: a Maildir or a tree of them), as
    (rel, base, size, xxh3-128) — a message is a non-dot file in a ``cur`` or ``new`` directory."""
    broot = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(broot):
        dirnames[:] = [d for d in dirnames if d != b"tmp"]
        if os.path.basename(dirpath) not in maildir.SUBDIRS:
            continue
        for n in filenames:
            if not maildir.is_message_name(n):
                continue
            p = os.path.join(dirpath, n)
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            base = maildir.parse_name(n, maildir.detect_separator([n])).base
            yield os.path.relpath(p, broot), base, len(data), xxhash.xxh3_128_hexdigest(data)


class Truth:
    """Every version of every message the source ever held, by base. A file on the destination whose
    content is not one of them is a partial (or foreign) message."""

    def __init__(self) -> None:
        self.by_base: dict[bytes, set[tuple[int, str]]] = {}

    def learn(self, root: Path) -> Truth:
        for _rel, base, size, h in message_files(root):
            self.by_base.setdefault(base, set()).add((size, h))
        return self

    def partials(self, dst: Path) -> list[str]:
        bad = []
        for rel, base, size, h in message_files(dst):
            if (size, h) not in self.by_base.get(base, ()):
                bad.append(f"{maildir.show(rel)}: {size} bytes, not a complete version of {maildir.show(base)}")
        return bad


def bases(root: Path) -> dict[bytes, int]:
    """base -> how many files carry it."""
    out: dict[bytes, int] = {}
    for _rel, base, _size, _h in message_files(root):
        out[base] = out.get(base, 0) + 1
    return out


def whole_seconds(snap: dict) -> dict:
    return {k: (v[0], v[1] // 10**9 if v[1] is not None else None, v[2]) for k, v in snap.items()}


@dataclass
class Verdict:
    lost: int = 0
    duplicates: int = 0
    diff: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.diff


def compare(pairs: Iterable[tuple[Path, Path]], seconds: bool = False, controls: bool = True) -> Verdict:
    """Destination against source, per (source Maildir or tree, destination): names, sizes, mtimes and
    bytes (cache files and tmp/ excluded; control files too unless ``controls``); messages lost (a source
    base missing on the destination) and duplicated (a base more often on the destination than on the
    source)."""
    v = Verdict()
    for src, dst in pairs:
        s, d = snapshot(src), snapshot(dst)
        if not controls:
            s, d = ({k: x for k, x in snap.items() if k.split(b"/")[-2:-1] in ([b"cur"], [b"new"])} for snap in (s, d))
        if seconds:
            s, d = whole_seconds(s), whole_seconds(d)
        for k in sorted(set(s) | set(d)):
            if s.get(k) != d.get(k):
                v.diff.append(f"{maildir.show(k)}: source {s.get(k)} destination {d.get(k)}")
        sb, db = bases(src), bases(dst)
        v.lost += sum(1 for b in sb if b not in db)
        v.duplicates += sum(max(0, n - max(sb.get(b, 0), 1)) for b, n in db.items())
    return v


def assert_converged(pairs, seconds: bool = False) -> Verdict:
    v = compare(list(pairs), seconds)
    assert v.lost == 0, f"{v.lost} message(s) lost"
    assert v.duplicates == 0, f"{v.duplicates} duplicate(s)"
    assert v.equal, "destination differs from the source:\n" + "\n".join(v.diff[:20])
    return v


def our_tmp_leftovers(dst: Path) -> list[bytes]:
    """Files an interrupted or failed run of ours left in a tmp/ (the next run removes them)."""
    return [
        os.path.join(d, n)
        for d, _dirs, files in os.walk(os.fsencode(dst))
        if os.path.basename(d) == b"tmp"
        for n in files
        if n.startswith(b"maildirsync.")
    ]


# --- the real CLI, started and killed ----------------------------------------------------------------


def cli_argv(*args) -> list[str]:
    return [sys.executable, "-m", "maildirsync.cli", *map(str, args)]


def start_cli(args, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cli_argv(*args), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_for_lock(state: Path, p: subprocess.Popen, timeout: float = 60.0) -> bool:
    """Wait until ``p`` holds the index lock (its pid is written in ``<state>/<key>/lock``); False if it
    exited first."""
    needle = f"pid {p.pid} ".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for lock in state.glob("*/lock"):
            try:
                if needle in lock.read_bytes():
                    return True
            except OSError:
                pass
        if p.poll() is not None:
            return False
        time.sleep(0.002)
    raise AssertionError(f"pid {p.pid} never took the index lock in {state}")


def timed_run(args, state: Path, log: Path) -> tuple[int, float]:
    """Run the CLI to completion; returns its exit code and the seconds it held the lock."""
    p = start_cli(args, log)
    wait_for_lock(state, p)
    t0 = time.monotonic()
    rc = p.wait(timeout=600)
    return rc, time.monotonic() - t0


@dataclass
class KillStats:
    rounds: int = 0
    kills: int = 0  # SIGKILLs delivered while the run held the index lock
    finished_first: int = 0  # the run completed before its kill moment
    partial: int = 0
    lost: int = 0
    duplicates: int = 0

    def line(self, what: str) -> str:
        return (f"{what}: {self.rounds} kill rounds, {self.kills} SIGKILLs mid-run ({self.finished_first} runs "
                f"finished before their kill moment); {self.lost} lost, {self.partial} partial, "
                f"{self.duplicates} duplicates")


def kill_at_random(args, state: Path, log: Path, rng: random.Random, span: float, stats: KillStats) -> None:
    """Start the CLI, and SIGKILL it a random moment (uniform in [0, span] s) after it took the lock."""
    p = start_cli(args, log)
    try:
        if not wait_for_lock(state, p):
            stats.finished_first += 1
            return
        time.sleep(rng.uniform(0, span))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            stats.kills += 1
        else:
            stats.finished_first += 1
    finally:
        p.wait(timeout=60)


# --- crash points in a forked run -------------------------------------------------------------------

# Every call that changes the destination or the index: a crash "at point k" is a SIGKILL just before
# the k-th of them, i.e. just after the (k-1)-th.
CRASH_CALLS = ("mkdir", "link", "unlink", "replace", "rename", "utime", "fsync", "fchown", "chown")


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple

    def path(self, i: int = 0) -> bytes:
        a = self.args[i] if len(self.args) > i else b""
        return os.fsencode(a) if isinstance(a, (str, bytes, os.PathLike)) else b""

    def __str__(self) -> str:
        return f"os.{self.name}({', '.join(maildir.show(self.path(i)) or repr(a) for i, a in enumerate(self.args))})"


@dataclass(frozen=True)
class Crash:
    """Where a forked run was killed: just before ``call``, after the calls of ``history``."""

    k: int
    call: Call
    history: tuple[Call, ...]

    @property
    def prev(self) -> Call | None:
        return self.history[-1] if self.history else None

    def since_commit(self) -> tuple[Call, ...]:
        """The calls made since the index was last committed (their effects are not in the index)."""
        i = max((i for i, c in enumerate(self.history) if c.name == "index-commit"), default=-1)
        return self.history[i + 1:]

    def __str__(self) -> str:
        return f"crash point {self.k}: after {self.prev or 'the start'}, before {self.call}"


def killed_at(k: int, fn: Callable[[], object], trace: Path) -> Crash | None:
    """Run ``fn`` in a forked child that SIGKILLs itself just before its k-th destination change (see
    CRASH_CALLS) or index commit. Returns where it was killed, or None if it completed (k is past the
    end)."""
    trace.unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            history: list = []

            def wrap(name, f):
                def w(*a, **kw):
                    call = (name, tuple(os.fsencode(x) if isinstance(x, os.PathLike) else x for x in a))
                    if len(history) + 1 == k:
                        trace.write_text(repr((call, history)))
                        os.kill(os.getpid(), signal.SIGKILL)
                    history.append(call)
                    return f(*a, **kw)

                return w

            for name in CRASH_CALLS:
                if hasattr(os, name):
                    setattr(os, name, wrap(name, getattr(os, name)))
            # A message renamed in place goes through renameat2(2) by ctypes, which os.rename's wrapper
            # never sees; without this, a flags run would have almost no crash points.
            executor.rename_noreplace = wrap("rename", executor.rename_noreplace)
            commit = Batch.commit
            Batch.commit = lambda self, **kw: wrap("index-commit", lambda: commit(self, **kw))()
            fn()
        except BaseException:  # noqa: BLE001 - the child reports whatever stopped it
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        call, history = ast.literal_eval(trace.read_text())
        return Crash(k, Call(*call), tuple(Call(*c) for c in history))
    assert exit_code(status) == 0, "the forked run failed (see captured stderr)"
    return None


def local_sync(src: Path, dst: Path, state: Path, source=None, **plan) -> engine.RunResult:
    jobs, _key, _notes = local.jobs(src, dst, [], create=True)
    opts = engine.RunOptions(plan=engine.Options(**plan), owner=None)
    return engine.run(jobs, source or local.LocalSource(), StateDir(state), opts)


def statuses(r: engine.RunResult) -> list[str]:
    return [u.status for u in r.users]


# --- the sshd of the fault tests ------------------------------------------------------------------


def start_fault_sshd(workdir: Path, port: int | None = None):
    """A throwaway OpenSSH sshd (maildirsync.lab.sshd) whose sessions get an empty HOME. These tests kill
    sessions and clients at any instant; with this host's HOME, a session killed while root's .bashrc
    runs (pyenv rehash, here) can leave a stale lock that stalls every later login on this host by 60 s.
    Sessions also start faster without it."""
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    if not shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin"):
        import pytest

        pytest.skip("OpenSSH server not installed")
    return start_sshd(workdir, port=port, no_dac_override=True, extra_config=f"SetEnv HOME={home}")


# --- an SME 8 source and a NethServer destination -------------------------------------------------

DOMAIN = "example.org"


@dataclass
class Sme8World:
    """An SME 8 source tree and the NethServer destination whose (empty) mailboxes exist."""

    src: Path
    dest: Path
    state: Path
    users: list[str]

    def source_maildir(self, user: str) -> Path:
        return self.src / (SME8_ADMIN if user == "admin" else SME8_USERS / user / "Maildir")

    def dest_maildir(self, user: str) -> Path:
        return self.dest / f"{user}@{DOMAIN}" / "Maildir"

    def pairs(self) -> list[tuple[Path, Path]]:
        return [(self.source_maildir(u), self.dest_maildir(u)) for u in self.users]

    def reset_destination(self) -> None:
        """Empty mailboxes and no index, as before the first sync."""
        shutil.rmtree(self.dest, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)
        for u in self.users:
            mkmaildir(self.dest_maildir(u))

    def args(self, server, *extra) -> list:
        return [
            "-s", server.host, "-p", server.port, "-i", server.client_key, "--known-hosts", server.known_hosts,
            "--state-dir", self.state, "--dest-root", self.dest, "--domain", DOMAIN, "--owner", "keep",
            "--users-dir", self.src / SME8_USERS, "--admin-maildir", self.src / SME8_ADMIN, *extra,
        ]  # fmt: skip


def make_sme8_world(tmp: Path, spec: CorpusSpec) -> Sme8World:
    generate(tmp / "sme", spec, processes=1)
    users = sorted(p.name for p in (tmp / "sme" / SME8_USERS).iterdir()) + ["admin"]
    w = Sme8World(tmp / "sme", tmp / "vmail", tmp / "state", users)
    w.reset_destination()
    return w


# --- sources that count, sources that change under the run -------------------------------------------


class Counting:
    """Any Source, counting what is downloaded through it (to prove what a run did not download)."""

    def __init__(self, inner):
        self.inner = inner
        self.transport = getattr(inner, "transport", "local")
        self.fetched: list[bytes] = []
        self.bytes = 0

    def scan(self, root, known):
        return self.inner.scan(root, known)

    def fetch(self, root, rels):
        it = self.inner.fetch(root, rels)
        try:
            for f in it:
                self.fetched.append(f.rel)
                f.chunks = self._count(f.chunks)
                yield f
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _count(self, chunks):
        for c in chunks:
            self.bytes += len(c)
            yield c

    def read(self, root, rel):
        return self.inner.read(root, rel)

    def exists(self, root):
        return self.inner.exists(root)

    def close(self):
        pass  # the inner source belongs to whoever opened it


# --- LMDB pages ------------------------------------------------------------------------------------

PAGE = os.sysconf("SC_PAGE_SIZE")


def _lmdb_nodes(buf: bytes, pg: int):
    """(lo, hi, flags, key, data offset) of each node of page ``pg`` (LMDB's on-disk page layout)."""
    base = pg * PAGE
    lower = struct.unpack_from("<H", buf, base + 12)[0]
    for i in range((lower - 16) >> 1):
        off = base + struct.unpack_from("<H", buf, base + 16 + 2 * i)[0]
        lo, hi, flags, ksize = struct.unpack_from("<HHHH", buf, off)
        yield lo, hi, flags, bytes(buf[off + 8 : off + 8 + ksize]), off + 8 + ksize


def lmdb_table_children(data: Path, table: bytes) -> list[int]:
    """The pages the root of LMDB table ``table`` points to (empty if the table fits in its root page):
    live pages of that table, to corrupt precisely."""
    buf = data.read_bytes()
    metas = []
    for m in (16, PAGE + 16):  # meta: magic, version, address, mapsize, dbs[2] (free, main), last_pg, txnid
        metas.append((struct.unpack_from("<Q", buf, m + 128)[0], struct.unpack_from("<Q", buf, m + 24 + 48 + 40)[0]))
    main = max(metas)[1]
    for _lo, _hi, _flags, key, d in _lmdb_nodes(buf, main):
        if key == table:
            depth, root = struct.unpack_from("<H", buf, d + 6)[0], struct.unpack_from("<Q", buf, d + 40)[0]
            if depth < 2:
                return []
            return [lo | hi << 16 | flags << 32 for lo, hi, flags, _k, _d in _lmdb_nodes(buf, root)]
    raise AssertionError(f"no table {table!r} in {data}")

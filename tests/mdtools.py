"""Helpers shared by the engine tests: build Maildirs, snapshot trees, run the CLI for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import xxhash

from maildirsync.compat import exit_code
from maildirsync import maildir
from maildirsync.transport import LocalSource

T0 = 1_600_000_000


def mkmaildir(root: Path, *folders: str) -> Path:
    for f in ("", *folders):
        for sub in ("cur", "new", "tmp"):
            (root / f / sub).mkdir(parents=True, exist_ok=True)
        if f:
            (root / f / "maildirfolder").touch()
    return root


def put(root: Path, rel: str | bytes, data: bytes = b"hello\n", mtime: int = T0) -> Path:
    p = Path(os.fsdecode(os.path.join(os.fsencode(root), os.fsencode(rel))))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    os.utime(p, (mtime, mtime))
    return p


def snapshot(root: Path, with_inodes: bool = False) -> dict[bytes, tuple]:
    """Every file under root that a sync is responsible for: name -> (size, mtime_ns, hash[, inode]).
    Cache files and tmp/ are left out: they are never copied. A dovecot-uidlist is written afresh, never
    given an old mtime (Dovecot would take it for unchanged): its mtime counts only with inodes."""
    out = {}
    broot = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(broot):
        rel_dir = os.path.relpath(dirpath, broot)
        if os.path.basename(dirpath) == b"tmp":
            dirnames[:] = []
            continue
        for n in filenames:
            if maildir.classify(n) is maildir.FileKind.CACHE:
                continue
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            with open(p, "rb") as f:
                h = xxhash.xxh3_64_hexdigest(f.read())
            rel = os.path.normpath(os.path.join(rel_dir, n))
            mtime = st.st_mtime_ns if with_inodes or n != b"dovecot-uidlist" else None
            out[rel] = (st.st_size, mtime, h) + ((st.st_ino,) if with_inodes else ())
    return out


def raw_bytes(root: Path) -> dict[str, bytes]:
    """Every byte of every file under root (to prove a dry run changed nothing, the index included)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = p.read_bytes()
        elif p.is_dir():
            out[str(p.relative_to(root)) + "/"] = b""
    return out


def messages(root: Path) -> dict[bytes, list[bytes]]:
    """base -> the paths it appears at (to prove there are no duplicates and nothing is lost)."""
    out: dict[bytes, list[bytes]] = {}
    for rel in snapshot(root):
        parts = rel.split(b"/")
        if len(parts) >= 2 and parts[-2] in (b"cur", b"new"):
            out.setdefault(maildir.parse_name(parts[-1]).base, []).append(rel)
    return out


def cli(*args: str | os.PathLike, input: str | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "maildirsync.cli", *map(str, args)],
        capture_output=True,
        text=True,
        input=input,
        timeout=kw.pop("timeout", 300),
        **kw,
    )


def cli_as(uid: int, gid: int, *args, workdir: Path) -> subprocess.CompletedProcess:
    """Run the CLI in a forked child that dropped root, so that file permissions bite. The interpreter
    lives under /root here, out of an unprivileged user's reach, hence fork rather than exec."""
    out, err = workdir / "stdout", workdir / "stderr"
    # Whatever the CLI imports lazily must be loaded before root is dropped (typer >= 0.21 only has it).
    try:
        import typer._adapters  # noqa: F401
    except ImportError:
        pass

    from maildirsync.cli import app

    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        app(["sync", "--help"], prog_name="maildirsync", standalone_mode=False)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 70
        try:
            fo, fe = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fo, 1)
            os.dup2(fe, 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            from maildirsync.cli import app

            try:
                app(list(map(str, args)), prog_name="maildirsync")
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return subprocess.CompletedProcess(args, exit_code(status), out.read_text(), err.read_text())


class CountingSource(LocalSource):
    """A real local source that counts what is read from it, to prove what a run did not download."""

    def __init__(self):
        self.fetched: list[bytes] = []
        self.bytes = 0

    def fetch(self, root, rels):
        for f in super().fetch(root, rels):
            self.fetched.append(f.rel)
            f.chunks = self._count(f.chunks)
            yield f

    def _count(self, chunks):
        for c in chunks:
            self.bytes += len(c)
            yield c

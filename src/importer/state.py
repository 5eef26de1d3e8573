"""What ``maildirsync-import`` has done to an exploded tree: ``DIR/.maildirsync-import/``.

* ``state.json`` -- the archive the tree came from, the steps of ``all`` that
  finished, and the import: when it started, which runner, the PID of
  ``signal-event`` (with its start time, to tell it from a later process with the
  same PID), where the system log was, how it ended. Once an import has started
  on a tree it is never started again there (``migration-import`` moves the files
  out of the tree: a second run would import half a tree).
* ``import.jsonl``, ``import.stderr`` -- the event's JSON records and its
  standard error, written by the event itself (:mod:`importer.events`).
* ``report.json``, ``report.txt`` -- the report, to show again.
* ``all.log`` -- the plain log of ``all``.
* ``lock`` -- one ``run`` or ``all`` at a time on a tree.

The file is replaced atomically (write, fsync, rename, fsync of the directory),
so a crash leaves the previous state or the new one. The directory name is
reserved: an archive member under it is refused by ``explode``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from importer.errors import BadInputError, BusyError

STATE_DIRNAME = ".maildirsync-import"
VERSION = 1


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "?"


class TreeState:
    def __init__(self, tree: str | os.PathLike) -> None:
        self.tree = Path(tree)
        self.dir = self.tree / STATE_DIRNAME
        self.path = self.dir / "state.json"
        self.jsonl = self.dir / "import.jsonl"
        self.stderr = self.dir / "import.stderr"
        self.report_json = self.dir / "report.json"
        self.report_txt = self.dir / "report.txt"
        self.log = self.dir / "all.log"
        self.data: dict = {"version": VERSION, "archive": None, "steps": {}, "import": None}

    # ------------------------------------------------------------------ file

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> TreeState:
        if not self.path.is_file():
            return self
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BadInputError(
                f"cannot read {self.path}: {e}",
                "it records what maildirsync-import did to this tree; if the import never ran here, remove it",
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("steps"), dict):
            raise BadInputError(f"{self.path} is not a state file of maildirsync-import",
                                "if the import never ran on this tree, remove it")  # fmt: skip
        self.data = data
        return self

    def make_dir(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise BadInputError(f"cannot create {self.dir}: {e.strerror or e}", "run as root") from None

    def save(self) -> None:
        self.make_dir()
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(self.data, indent=1, sort_keys=True))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            raise BadInputError(f"cannot write {self.path}: {e.strerror or e}", "check the disk holding the tree") from None
        _fsync_dir(self.dir)

    def write_file(self, path: Path, text: str) -> None:
        self.make_dir()
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @contextlib.contextmanager
    def locked(self, what: str):
        """Hold the tree's lock: a second ``run`` or ``all`` on the same tree waits for nothing, it exits 4."""
        self.make_dir()
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                raise BusyError(f"{self.tree} is in use by {holder}",
                                "wait for it to finish, then run this command again") from None  # fmt: skip
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{what} (pid {os.getpid()}, since {when(time.time())})\n".encode(), 0)
            yield self
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ records

    @property
    def steps(self) -> dict:
        return self.data.setdefault("steps", {})

    def step(self, name: str) -> dict | None:
        return self.steps.get(name)

    def done(self, name: str) -> bool:
        return (self.steps.get(name) or {}).get("status") == "done"

    def set_step(self, name: str, status: str, **info) -> dict:
        rec = self.steps.setdefault(name, {})
        if status == "started":
            rec.clear()
            rec["started"] = time.time()
        else:
            rec["finished"] = time.time()
        rec["status"] = status
        rec.update(info)
        self.save()
        return rec

    @property
    def imported(self) -> dict | None:
        """The import record, once an import was started on this tree."""
        return self.data.get("import")

    def set_import(self, **info) -> dict:
        rec = self.data.get("import") or {}
        rec.update(info)
        self.data["import"] = rec
        self.save()
        return rec


def archive_identity(path: str | os.PathLike) -> dict:
    p = Path(path).absolute()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}

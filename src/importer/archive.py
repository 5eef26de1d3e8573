"""Explode a backup archive safely into a directory.

Formats: gzip, bzip2, xz or plain tar (SME's "backup to desktop"
``smeserver.tgz`` is a gzip'd tar), and SME workstation backups made with
``dar`` (``full-*.dar`` plus its incrementals, restored in order) when the
``dar`` program is installed.

Safety, for tar archives, in two passes over the archive:

1. **check**: every member is read and checked before anything is written.
   Refused: absolute paths, ``..`` components, paths that go through a
   symbolic link of the archive, symbolic links whose target resolves outside
   DIR (resolved against the archive's own links, as the kernel would), hard
   links to anything but an earlier regular file of the archive, device
   nodes, fifos and unknown member types. A truncated or corrupt archive is
   found here too, and named by the member where it broke. The same pass
   sums the sizes for the free-space check.
2. **extract**: each member is checked again, this time against the real
   filesystem (``realpath`` of its parent, existing entries are unlinked
   rather than written through), then extracted with owners, modes and
   mtimes kept -- the mtimes are the mail's dates. Directories get their
   mode and mtime at the end, as ``tar`` does.

Progress is by bytes of the archive file, in both passes.
"""

from __future__ import annotations

import bz2
import grp
import gzip
import io
import lzma
import os
import pwd
import re
import shutil
import subprocess
import tarfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from importer.errors import (
    BadInputError,
    CorruptArchiveError,
    DirNotEmptyError,
    ExtractionFailedError,
    ImporterError,
    NotEnoughSpaceError,
    ToolMissingError,
    UnsafeArchiveError,
)
from importer.progress import NullProgress, Progress, human
from importer.state import STATE_DIRNAME, TreeState, when

DEFAULT_DIR = "/var/lib/migration"
BLOCK = 4096  # filesystem allocation unit assumed by the free-space estimate
MAX_LINK_HOPS = 40  # as the kernel's MAXSYMLINKS

_MAGIC = [
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
]


Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


@dataclass
class ExplodeResult:
    archive: str
    dest: str
    kind: str  # gzip, bzip2, xz, tar, dar
    members: int = 0
    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0  # payload of regular files
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (member, reason)
    warnings: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # dar: the archives restored, in order


# --------------------------------------------------------------------------- helpers


class _ReadFailure(Exception):
    """Reading/decompressing the archive failed (as opposed to writing DIR)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Counter(io.RawIOBase):
    """A read-only file wrapper that counts bytes and turns read errors into
    :class:`_ReadFailure`, so they are told apart from write errors."""

    def __init__(self, raw, on_read: Callable[[int], None] | None = None) -> None:
        self.raw = raw
        self.count = 0
        self.on_read = on_read

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.raw.read(n)
        except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as e:
            raise _ReadFailure(_describe(e)) from None
        self.count += len(data)
        if self.on_read is not None:
            self.on_read(self.count)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def _describe(e: BaseException) -> str:
    if isinstance(e, EOFError):
        return "the archive ends too early (truncated)"
    msg = str(e) or type(e).__name__
    return msg


def detect_kind(path: Path) -> str:
    """``gzip``, ``bzip2``, ``xz``, ``tar`` or ``dar``; :class:`BadInputError` otherwise."""
    if path.is_dir() or path.name.endswith(".dar"):
        return "dar"
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise BadInputError(f"cannot read {path}: {e.strerror or e}") from None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            if kind == "zstd":
                raise BadInputError(
                    f"{path} is compressed with zstd, which is not supported",
                    "decompress it first (unzstd), then explode the .tar",
                )
            return kind
    if len(head) == 0:
        raise BadInputError(f"{path} is empty")
    if len(head) == 512 and (head[257:262] == b"ustar" or _v7_checksum_ok(head)):
        return "tar"
    if head.startswith(b"SARTAR") or head[:4] == b"\x00\x00\x00\x7b":  # dar slice header
        return "dar"
    raise BadInputError(
        f"{path} is not a backup archive this tool knows (gzip, bzip2, xz or plain tar; dar)",
        "SME's 'backup to desktop' gives smeserver.tgz; a workstation backup gives full-*.dar files",
    )


def _v7_checksum_ok(block: bytes) -> bool:
    try:
        stored = int(block[148:156].replace(b"\x00", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return stored == unsigned


def _open_decompressed(kind: str, raw) -> io.IOBase:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    if kind == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    return raw


def _parts(name: str) -> list[str]:
    return [p for p in name.split("/") if p not in ("", ".")]


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# --------------------------------------------------------------------------- checker


class _Checker:
    """The member rules, on names only (pass 1) and against the disk (pass 2)."""

    def __init__(self, skip_unsafe_links: bool = False) -> None:
        self.skip_unsafe_links = skip_unsafe_links
        self.links: dict[str, str] = {}  # symlink member -> its target
        self.files: set[str] = set()  # regular file members seen so far
        self.symlinks: list[tuple[str, str]] = []  # (member name, target), in order
        self._parents: dict[str, str] = {}  # pass 2: directory -> its realpath

    def _resolve(self, parts: list[str]) -> list[str] | None:
        """Resolve a relative path against the archive's symlinks, as the
        kernel would inside DIR. ``None`` if it leaves DIR."""
        out: list[str] = []
        todo = list(parts)
        hops = 0
        while todo:
            p = todo.pop(0)
            if p in ("", "."):
                continue
            if p == "..":
                if not out:
                    return None
                out.pop()
                continue
            out.append(p)
            target = self.links.get("/".join(out))
            if target is not None:
                hops += 1
                if hops > MAX_LINK_HOPS:
                    return None
                out.pop()
                if target.startswith("/"):
                    return None
                todo = target.split("/") + todo
        return out

    def check(self, m: tarfile.TarInfo) -> tuple[str | None, str | None]:
        """Return ``(normalised name, skip reason)``; raise on an unsafe member.

        A ``None`` name means the member is the archive root itself (``./``).
        """
        name = m.name
        if name.startswith("/"):
            raise UnsafeArchiveError(name, "absolute path")
        parts = _parts(name)
        if ".." in parts:
            raise UnsafeArchiveError(name, "path contains '..'")
        if m.ischr() or m.isblk():
            raise UnsafeArchiveError(name, "device node")
        if m.isfifo():
            raise UnsafeArchiveError(name, "fifo (named pipe)")
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
            raise UnsafeArchiveError(name, f"unsupported member type {m.type!r}")
        if not parts:
            if m.isdir():
                return None, None
            raise UnsafeArchiveError(name, "member has no name")
        if parts[0] == STATE_DIRNAME:
            raise UnsafeArchiveError(name, f"the name {STATE_DIRNAME} is reserved for maildirsync-import's own "
                                     "record of what it did to the tree")  # fmt: skip
        norm = "/".join(parts)
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in self.links:
                raise UnsafeArchiveError(name, f"path goes through the symbolic link {prefix!r}")
        if m.issym():
            target = m.linkname
            if not target:
                raise UnsafeArchiveError(name, "symbolic link with an empty target")
            escapes = target.startswith("/") or self._resolve(parts[:-1] + target.split("/")) is None
            if escapes:
                if self.skip_unsafe_links:
                    return norm, f"symbolic link to {target!r} points outside the directory"
                raise UnsafeArchiveError(
                    name,
                    f"symbolic link to {target!r} points outside the directory",
                    "if the archive is otherwise trusted, --skip-unsafe-links leaves such links out",
                )
            self.links[norm] = target
            self.symlinks.append((name, target))
            self.files.discard(norm)
        elif m.islnk():
            target = m.linkname
            if target.startswith("/"):
                raise UnsafeArchiveError(name, f"hard link to the absolute path {target!r}")
            tparts = _parts(target)
            if ".." in tparts or not tparts:
                raise UnsafeArchiveError(name, f"hard link to {target!r} outside the directory")
            tnorm = "/".join(tparts)
            if tnorm not in self.files:
                raise UnsafeArchiveError(
                    name, f"hard link to {target!r}, which is not an earlier regular file of the archive"
                )
            self.files.add(norm)
        elif m.isreg():
            self.files.add(norm)
        return norm, None

    def final_check(self) -> None:
        """Once every link of the archive is known, resolve each symbolic link
        again: a link declared later can change where an earlier one leads."""
        for name, target in self.symlinks:
            norm = "/".join(_parts(name))
            if self.links.get(norm) != target:
                continue  # replaced by a later member of the same name
            if self._resolve(_parts(name)[:-1] + target.split("/")) is None:
                raise UnsafeArchiveError(
                    name,
                    f"symbolic link to {target!r} points outside the directory (through other links, or loops)",
                    "if the archive is otherwise trusted, --skip-unsafe-links leaves such links out",
                )

    def check_on_disk(self, m: tarfile.TarInfo, norm: str, root: str) -> None:
        """Pass 2: the same rules against the real filesystem under ``root``
        (already a realpath). Also removes an existing non-directory at the
        target so that nothing is ever written through a link.

        The real path of each parent directory is cached; the cache is
        dropped whenever a link is made or an entry removed."""
        target = os.path.join(root, norm)
        cache = self._parents
        pdir = os.path.dirname(target)
        parent = cache.get(pdir)
        if parent is None:
            parent = cache[pdir] = os.path.realpath(pdir)
        if m.issym() or m.islnk():
            cache.clear()
        if not _is_within(parent, root):
            raise UnsafeArchiveError(m.name, "its directory resolves outside the destination")
        if m.issym():
            dest = os.path.realpath(os.path.join(parent, m.linkname))
            if m.linkname.startswith("/") or not _is_within(dest, root):
                raise UnsafeArchiveError(m.name, f"symbolic link to {m.linkname!r} points outside the directory")
        if m.islnk():
            src = os.path.join(root, "/".join(_parts(m.linkname)))
            if os.path.islink(src) or not _is_within(os.path.realpath(src), root):
                raise UnsafeArchiveError(m.name, f"hard link to {m.linkname!r} outside the directory")
        if os.path.lexists(target) and (os.path.islink(target) or not os.path.isdir(target)):
            if m.islnk() and os.path.realpath(target) == os.path.realpath(
                os.path.join(root, "/".join(_parts(m.linkname)))
            ):
                return
            cache.clear()
            os.unlink(target)


# --------------------------------------------------------------------------- tar


def _iter_checked(tar: tarfile.TarFile, state: dict) -> Iterator[tarfile.TarInfo]:
    """Iterate the members of a stream-mode tar, recording the current one."""
    while True:
        try:
            m = tar.next()
        except _ReadFailure as e:
            raise CorruptArchiveError(state.get("current"), e.detail) from None
        except (tarfile.ReadError, tarfile.StreamError) as e:
            cur = state.get("current")
            if cur is None and state.get("first", True):
                raise BadInputError(
                    f"{state['archive']} does not contain a tar archive ({e})",
                    "SME's 'backup to desktop' gives smeserver.tgz, a gzip'd tar",
                ) from None
            raise CorruptArchiveError(cur, str(e)) from None
        if m is None:
            return
        state["first"] = False
        state["current"] = m.name
        yield m


def _open_tar(path: Path, kind: str, on_read: Callable[[int], None]):
    raw_file = open(path, "rb")
    raw = _Counter(raw_file, on_read)
    dec = _open_decompressed(kind, raw)
    data = _Counter(dec) if kind != "tar" else raw
    try:
        # small reads keep a decompression error close to the member it broke
        tar = tarfile.open(fileobj=data, mode="r|", bufsize=tarfile.RECORDSIZE)
    except _ReadFailure as e:
        raw_file.close()
        raise CorruptArchiveError(None, e.detail) from None
    except tarfile.TarError as e:
        raw_file.close()
        raise BadInputError(
            f"{path} does not contain a tar archive ({e})",
            "SME's 'backup to desktop' gives smeserver.tgz, a gzip'd tar",
        ) from None
    return raw_file, data, tar


def _drain_and_check_end(tar: tarfile.TarFile, data: _Counter, state: dict) -> None:
    """After the last header: the rest of the stream must read cleanly (this is
    where gzip checks its CRC and length) and an end-of-archive block must be
    there, or the archive was cut at a member boundary."""
    try:
        while data.read(1 << 20):
            pass
    except _ReadFailure as e:
        raise CorruptArchiveError(state.get("current"), e.detail, at_end=True) from None
    if data.count < tar.offset + tarfile.BLOCKSIZE:
        raise CorruptArchiveError(
            state.get("current"), "the archive ends without its end-of-archive marker (truncated)", at_end=True
        )


@dataclass
class _Scan:
    members: int = 0
    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0
    needed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _scan(path: Path, kind: str, skip_unsafe_links: bool, progress: Progress) -> _Scan:
    total = path.stat().st_size
    progress.start("checking", total)
    raw_file, data, tar = _open_tar(path, kind, progress.update)
    state: dict = {"archive": str(path)}
    checker = _Checker(skip_unsafe_links)
    scan = _Scan()
    try:
        with raw_file:
            for m in _iter_checked(tar, state):
                norm, skip = checker.check(m)
                scan.members += 1
                if skip:
                    scan.skipped.append((m.name, skip))
                    continue
                if m.isreg():
                    scan.files += 1
                    scan.bytes += m.size
                    scan.needed += -(-m.size // BLOCK) * BLOCK
                elif m.isdir():
                    scan.dirs += 1
                    scan.needed += BLOCK
                else:
                    scan.links += 1
                    scan.needed += BLOCK if m.issym() and len(m.linkname) > 60 else 0
            _drain_and_check_end(tar, data, state)
        checker.final_check()
    except BaseException:
        progress.abort()
        raise
    progress.finish()
    return scan


class _Owners:
    """``TarFile.chown`` with the name lookups cached: tarfile looks the owner
    and group names up again for every member, which costs two NSS lookups
    (opening /etc/passwd and /etc/group) per file of a large mail archive."""

    def __init__(self) -> None:
        self.users: dict[tuple[str, int], int] = {}
        self.groups: dict[tuple[str, int], int] = {}
        self.root = hasattr(os, "geteuid") and os.geteuid() == 0

    def _uid(self, name: str, uid: int, numeric: bool) -> int:
        key = ("" if numeric else name, uid)
        if key not in self.users:
            try:
                self.users[key] = pwd.getpwnam(name).pw_uid if name and not numeric else uid
            except KeyError:
                self.users[key] = uid
        return self.users[key]

    def _gid(self, name: str, gid: int, numeric: bool) -> int:
        key = ("" if numeric else name, gid)
        if key not in self.groups:
            try:
                self.groups[key] = grp.getgrnam(name).gr_gid if name and not numeric else gid
            except KeyError:
                self.groups[key] = gid
        return self.groups[key]

    def __call__(self, tarinfo: tarfile.TarInfo, targetpath: str, numeric_owner: bool = False) -> None:
        if not self.root:
            return
        uid = self._uid(tarinfo.uname, tarinfo.uid, numeric_owner)
        gid = self._gid(tarinfo.gname, tarinfo.gid, numeric_owner)
        try:
            if tarinfo.issym():
                os.lchown(targetpath, uid, gid)
            else:
                os.chown(targetpath, uid, gid)
        except OSError as e:
            raise tarfile.ExtractError("could not change owner") from e


def _extract(path: Path, kind: str, dest: str, skip_unsafe_links: bool, progress: Progress) -> None:
    total = path.stat().st_size
    progress.start("extracting", total)
    raw_file, data, tar = _open_tar(path, kind, progress.update)
    tar.errorlevel = 1
    tar.chown = _Owners()  # type: ignore[method-assign]
    state: dict = {"archive": str(path)}
    checker = _Checker(skip_unsafe_links)
    root = os.path.realpath(dest)

    def members() -> Iterator[tarfile.TarInfo]:
        for m in _iter_checked(tar, state):
            norm, skip = checker.check(m)
            if norm is None or skip:
                continue
            checker.check_on_disk(m, norm, root)
            yield m

    kwargs = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    try:
        with raw_file:
            try:
                tar.extractall(root, members=members(), **kwargs)
            except _ReadFailure as e:
                raise CorruptArchiveError(state.get("current"), e.detail) from None
            except tarfile.ReadError as e:
                raise CorruptArchiveError(state.get("current"), str(e)) from None
            except ImporterError:
                raise
            except (OSError, tarfile.ExtractError) as e:
                detail = getattr(e, "strerror", None) or str(e)
                fn = getattr(e, "filename", None)
                raise ExtractionFailedError(
                    f"extraction failed at member {state.get('current')!r}: {detail}"
                    + (f" ({fn})" if fn else ""),
                    "free some space or fix the destination, then run again with --force",
                ) from None
            _drain_and_check_end(tar, data, state)
    except BaseException:
        progress.abort()
        raise
    progress.finish()


# --------------------------------------------------------------------------- dar


_DAR_SLICE = re.compile(r"^(?P<base>.+)\.(?P<num>\d+)\.dar$")


def _natural(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def dar_set(path: Path) -> tuple[Path, list[str]]:
    """The directory and the ordered base names (full first, then incrementals)
    of a workstation backup set given as its directory or its ``full-*.dar``."""
    if path.is_dir():
        folder, chosen_full = path, None
    else:
        folder = path.parent
        m = _DAR_SLICE.match(path.name)
        base = m.group("base") if m else path.name[: -len(".dar")]
        if not base.startswith("full-"):
            raise BadInputError(
                f"{path.name} is an incremental archive",
                "give the set's full-*.dar (or its directory): incrementals are applied after it, in order",
            )
        chosen_full = base
    bases = sorted({m.group("base") for f in folder.iterdir() if (m := _DAR_SLICE.match(f.name))}, key=_natural)
    fulls = [b for b in bases if b.startswith("full-")]
    if not fulls:
        raise BadInputError(
            f"no full-*.dar archive in {folder}",
            "a workstation backup set is a full-*.dar plus its inc-*.dar incrementals",
        )
    if len(fulls) > 1:
        raise BadInputError(
            f"{folder} holds {len(fulls)} full backups ({', '.join(fulls)}): which incrementals "
            "belong to which is not known",
            "give the directory of one set (SME keeps each set in its own directory)",
        )
    if chosen_full is not None and chosen_full != fulls[0]:
        raise BadInputError(f"{path} is not a dar slice (name.N.dar)")
    incs = [b for b in bases if not b.startswith("full-")]
    return folder, fulls + incs


def _explode_dar(path: Path, dest: str, say: Say, result: ExplodeResult) -> None:
    dar = shutil.which("dar")
    if dar is None:
        raise ToolMissingError(
            f"{path} is a workstation backup made with dar, and the dar program is not installed",
            "install the package 'dar' (Debian: apt-get install dar; NethServer/CentOS: yum install dar), "
            "then run this command again",
        )
    folder, bases = dar_set(path)
    size = sum(f.stat().st_size for f in folder.glob("*.dar"))
    _check_space(dest, size, "the dar archives (a lower bound: they may be compressed)")
    for i, base in enumerate(bases, 1):
        say(f"restoring {i}/{len(bases)}: {base}")
        cmd = [dar, "-N", "-Q", "-x", str(folder / base), "-R", dest, "-w"]
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise ExtractionFailedError(
                f"dar failed (exit {proc.returncode}) restoring {base}: {tail}",
                "check the archive set is complete (all slices, all incrementals)",
            )
        result.steps.append(base)
    result.warnings.extend(_post_scan(dest))


def _post_scan(dest: str) -> list[str]:
    """After a dar restore: report links leaving DIR and special files."""
    root = os.path.realpath(dest)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if os.path.islink(p):
                if not _is_within(os.path.realpath(p), root):
                    out.append(f"{rel}: symbolic link to {os.readlink(p)!r} points outside {dest}")
            elif not (os.path.isdir(p) or os.path.isfile(p)):
                out.append(f"{rel}: special file (mode {oct(st.st_mode)})")
    return out


# --------------------------------------------------------------------------- entry point


def _existing_ancestor(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def _check_space(dest: str, needed: int, what: str) -> None:
    where = _existing_ancestor(dest)
    free = shutil.disk_usage(where).free
    if needed > free:
        raise NotEnoughSpaceError(
            f"not enough free space for {dest}: {what} need {human(needed)}, {where} has {human(free)} free",
            "free some space or explode into a directory on a larger filesystem; nothing was extracted",
        )


def _make_dest(dest: str) -> None:
    try:
        os.makedirs(dest, mode=0o700, exist_ok=True)
    except OSError as e:
        raise BadInputError(f"cannot create {dest}: {e.strerror or e}", "run as root, or choose another DIR") from None


def _prepare_dest(dest: str, force: bool) -> None:
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise BadInputError(f"{dest} exists and is not a directory")
    if os.path.isdir(dest):
        try:
            # maildirsync-import's own record (``all`` explodes into the directory it already wrote it in)
            nonempty = any(e.name != STATE_DIRNAME for e in os.scandir(dest))
        except OSError as e:
            raise BadInputError(f"cannot read {dest}: {e.strerror or e}") from None
        if nonempty and not force:
            raise DirNotEmptyError(dest)
        imp = TreeState(dest).load().imported
        if imp:
            raise BadInputError(
                f"migration-import already ran on {dest} (started {when(imp.get('started'))}): exploding the "
                "backup over what it left would make a tree that is neither the backup nor its remains",
                "explode the archive into a new empty directory",
            )


def explode(
    archive: str | os.PathLike,
    dest: str | os.PathLike = DEFAULT_DIR,
    *,
    force: bool = False,
    skip_unsafe_links: bool = False,
    progress: Progress | None = None,
    say: Say = _quiet,
) -> ExplodeResult:
    """Explode ``archive`` into ``dest``. Raises :class:`ImporterError` subclasses."""
    progress = progress or NullProgress()
    path = Path(archive)
    dest = os.path.abspath(os.fspath(dest))
    if not path.exists():
        raise BadInputError(f"{path}: no such file or directory")
    kind = detect_kind(path)
    _prepare_dest(dest, force)
    result = ExplodeResult(archive=str(path), dest=dest, kind=kind)
    t0 = time.monotonic()
    if kind == "dar":
        _make_dest(dest)
        _explode_dar(path, dest, say, result)
        result.seconds = time.monotonic() - t0
        return result

    scan = _scan(path, kind, skip_unsafe_links, progress)
    _check_space(dest, scan.needed, f"{scan.files} files ({human(scan.bytes)})")
    for member, reason in scan.skipped:
        say(f"skipped {member}: {reason}")
    _make_dest(dest)
    _extract(path, kind, dest, skip_unsafe_links, progress)
    result.members, result.files, result.dirs = scan.members, scan.files, scan.dirs
    result.links, result.bytes, result.skipped = scan.links, scan.bytes, scan.skipped
    result.seconds = time.monotonic() - t0
    return result

"""A hostile source: an in-process asyncssh SSH server whose SFTP subsystem serves a virtual tree that
lies (issue 6 part 3). Names with ``/``, ``..``, NUL or control bytes, overlong names, symbolic links out
of the Maildir, sizes that are not the content's: whatever a broken or malicious server could send.

The server refuses, and records, every request that would change something on the source (open for
writing, write, remove, rename, mkdir, rmdir, setstat, symlink, link, lock): a test asserts there were
none.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from maildirsync.lab.sshd import known_hosts_name
from maildirsync.ssh.bridge import LoopThread

T0 = 1_600_000_000

FILE, DIR, LINK = "f", "d", "l"
_TYPE = {FILE: asyncssh.FILEXFER_TYPE_REGULAR, DIR: asyncssh.FILEXFER_TYPE_DIRECTORY,
         LINK: asyncssh.FILEXFER_TYPE_SYMLINK}
_MODE = {FILE: stat.S_IFREG | 0o600, DIR: stat.S_IFDIR | 0o700, LINK: stat.S_IFLNK | 0o777}
_WRITE_PFLAGS = asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC | asyncssh.FXF_EXCL
_WRITE_ACCESS = asyncssh.ACE4_WRITE_DATA | asyncssh.ACE4_APPEND_DATA | asyncssh.ACE4_WRITE_ATTRIBUTES


@dataclass
class Entry:
    kind: str
    data: bytes = b""
    listed_size: int | None = None  # what the listing says; None: the truth
    target: bytes = b""  # symbolic links
    mtime: int = T0

    def attrs(self, truthful: bool = False) -> asyncssh.SFTPAttrs:
        size = len(self.target) if self.kind == LINK else len(self.data)
        if not truthful and self.listed_size is not None:
            size = self.listed_size
        return asyncssh.SFTPAttrs(type=_TYPE[self.kind], size=size, permissions=_MODE[self.kind], uid=0, gid=0,
                                  atime=self.mtime, mtime=self.mtime)


@dataclass
class Tree:
    """Directories by path, each mapping the names it lists (any bytes at all) to entries."""

    dirs: dict[bytes, dict[bytes, Entry]] = field(default_factory=lambda: {b"/": {}})

    def add(self, directory: bytes, name: bytes, entry: Entry) -> Entry:
        self.dirs.setdefault(directory, {})[name] = entry
        if entry.kind == DIR:
            self.dirs.setdefault(self.join(directory, name), {})
        return entry

    def mkdirs(self, path: bytes) -> None:
        parent = b"/"
        for part in path.strip(b"/").split(b"/"):
            if part not in self.dirs.setdefault(parent, {}):
                self.add(parent, part, Entry(DIR))
            parent = self.join(parent, part)

    @staticmethod
    def join(directory: bytes, name: bytes) -> bytes:
        return directory.rstrip(b"/") + b"/" + name

    def lookup(self, path: bytes) -> Entry | None:
        """The entry a client reaches by this path: a listed name joined to its directory, whatever
        bytes it holds (so that a client that opens what it was told exists gets it)."""
        if path == b"/":
            return Entry(DIR)
        for directory, names in self.dirs.items():
            prefix = directory.rstrip(b"/") + b"/"
            if path.startswith(prefix) and path[len(prefix):] in names:
                return names[path[len(prefix):]]
        return None

    def follow(self, path: bytes, depth: int = 0) -> Entry | None:
        e = self.lookup(path)
        if e is not None and e.kind == LINK and depth < 8:
            target = e.target if e.target.startswith(b"/") else self.join(path.rsplit(b"/", 1)[0], e.target)
            return self.follow(target, depth + 1)
        return e


class Refused(asyncssh.SFTPPermissionDenied):
    pass


class HostileSFTPServer(asyncssh.SFTPServer):
    def __init__(self, chan, server: HostileServer):
        super().__init__(chan)
        self.tree, self.writes, self.requests = server.tree, server.writes, server.requests

    def _refuse(self, op: str, *args):
        self.writes.append((op, args))
        raise Refused(f"{op}: this source is read-only")

    def _entry(self, path: bytes, follow: bool) -> Entry:
        self.requests.append(("stat" if follow else "lstat", path))
        e = self.tree.follow(path) if follow else self.tree.lookup(path)
        if e is None:
            raise asyncssh.SFTPNoSuchFile(f"{path!r}")
        return e

    # -- reading
    async def scandir(self, path: bytes):
        self.requests.append(("scandir", path))
        names = self.tree.dirs.get(path.rstrip(b"/") or b"/")
        if names is None:
            raise asyncssh.SFTPNoSuchFile(f"{path!r}")
        yield asyncssh.SFTPName(b".", attrs=Entry(DIR).attrs())
        yield asyncssh.SFTPName(b"..", attrs=Entry(DIR).attrs())
        for name, e in list(names.items()):
            yield asyncssh.SFTPName(name, attrs=e.attrs())

    def lstat(self, path: bytes):
        return self._entry(path, follow=False).attrs()

    def stat(self, path: bytes):
        return self._entry(path, follow=True).attrs()

    def realpath(self, path: bytes) -> bytes:
        return path

    def readlink(self, path: bytes) -> bytes:
        return self._entry(path, follow=False).target

    def open(self, path: bytes, pflags: int, attrs):
        if pflags & _WRITE_PFLAGS:
            self._refuse("open for writing", path, pflags)
        return self._open(path)

    def open56(self, path: bytes, desired_access: int, flags: int, attrs):
        if desired_access & _WRITE_ACCESS or (flags & asyncssh.FXF_ACCESS_DISPOSITION) != asyncssh.FXF_OPEN_EXISTING:
            self._refuse("open for writing", path, desired_access, flags)
        return self._open(path)

    def _open(self, path: bytes) -> Entry:
        e = self._entry(path, follow=True)
        self.requests.append(("open", path))
        if e.kind != FILE:
            raise asyncssh.SFTPFailure(f"{path!r} is not a file")
        return e

    def read(self, file_obj: Entry, offset: int, size: int) -> bytes:
        return file_obj.data[offset:offset + size]

    def fstat(self, file_obj: Entry):
        return file_obj.attrs()

    def close(self, file_obj) -> None:
        pass

    # -- every change is refused, and recorded
    def write(self, file_obj, offset, data):
        self._refuse("write", offset, len(data))

    def remove(self, path):
        self._refuse("remove", path)

    def rename(self, oldpath, newpath):
        self._refuse("rename", oldpath, newpath)

    def posix_rename(self, oldpath, newpath):
        self._refuse("posix_rename", oldpath, newpath)

    def mkdir(self, path, attrs):
        self._refuse("mkdir", path)

    def rmdir(self, path):
        self._refuse("rmdir", path)

    def setstat(self, path, attrs):
        self._refuse("setstat", path)

    def lsetstat(self, path, attrs):
        self._refuse("lsetstat", path)

    def fsetstat(self, file_obj, attrs):
        self._refuse("fsetstat")

    def symlink(self, oldpath, newpath):
        self._refuse("symlink", oldpath, newpath)

    def link(self, oldpath, newpath):
        self._refuse("link", oldpath, newpath)

    def lock(self, file_obj, offset, length, flags):
        self._refuse("lock", offset, length)


@dataclass
class HostileServer:
    host: str
    port: int
    client_key: Path
    known_hosts: Path
    lt: LoopThread
    acceptor: object
    tree: Tree = field(default_factory=Tree)
    writes: list = field(default_factory=list)
    requests: list = field(default_factory=list)

    def serve(self, tree: Tree) -> None:
        """Serve this tree to the connections opened from now on; forget what was recorded."""
        self.tree = tree
        self.writes = []
        self.requests = []

    def stop(self) -> None:
        async def _close():
            self.acceptor.close()
            await self.acceptor.wait_closed()

        self.lt.run(_close())
        self.lt.stop()


def start_hostile_server(workdir: Path) -> HostileServer:
    workdir.mkdir(parents=True, exist_ok=True)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client = asyncssh.generate_private_key("ssh-ed25519")
    client_key = workdir / "id_ed25519"
    client_key.write_bytes(client.export_private_key())
    client_key.chmod(0o600)
    lt = LoopThread("hostile-sftp-server")
    holder: list[HostileServer] = []

    async def _listen():
        return await asyncssh.listen(
            "127.0.0.1", 0, server_host_keys=[host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(client.export_public_key().decode()),
            sftp_factory=lambda chan: HostileSFTPServer(chan, holder[0]), allow_scp=False)

    acceptor = lt.run(_listen())
    port = acceptor.sockets[0].getsockname()[1]
    kh = workdir / "known_hosts"
    kh.write_text(f"{known_hosts_name('127.0.0.1', port)} {host_key.export_public_key().decode()}")
    server = HostileServer("127.0.0.1", port, client_key, kh, lt, acceptor)
    holder.append(server)
    return server

"""SSH servers for tests: OpenSSH sshd (modern, legacy, sftp-only) and an in-process asyncssh server.

Import the fixtures into a test module (``from tests.sshfixtures import *``) or list this module in
``pytest_plugins``. Everything listens on 127.0.0.1 only.

Servers run without root's CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so that a mode-000 directory is
unreadable through them as it would be on a real source; ``LocalSource`` gets the same treatment from
:class:`NoDacLocalSource`, which runs it in a thread that dropped those capabilities.
"""

from __future__ import annotations

import ctypes
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from maildirsync.lab.sshd import SshServer, known_hosts_name, start_sshd
from maildirsync.ssh.bridge import LoopThread
from maildirsync.transport import LocalSource

_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_dac_in_this_thread() -> None:
    """Capabilities are per thread on Linux: this one thread loses root's read-anything power."""
    libc = ctypes.CDLL(None, use_errno=True)
    hdr = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(hdr), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(hdr), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


class NoDacLocalSource:
    """The real LocalSource, each call run in a worker thread without DAC override."""

    transport = "local"

    def __init__(self) -> None:
        self._src = LocalSource()
        self._pool = ThreadPoolExecutor(1, initializer=drop_dac_in_this_thread)

    def scan(self, root, known):
        return self._pool.submit(self._src.scan, root, known).result()

    def fetch(self, root, rels):
        # Open and read in the worker too: materialise each file there, keep fetch's lazy error shape.
        def run():
            out = []
            for f in self._src.fetch(root, rels):
                try:
                    out.append((f.rel, b"".join(f.chunks), f.error, None))
                except OSError as e:
                    out.append((f.rel, b"", f.error, e))
            return out

        from maildirsync.transport import Fetched

        for rel, data, error, exc in self._pool.submit(run).result():
            yield Fetched(rel, _raising(exc) if exc else ((data,) if data else ()), error)

    def read(self, root, rel):
        return self._pool.submit(self._src.read, root, rel).result()

    def exists(self, root):
        return self._pool.submit(self._src.exists, root).result()

    def close(self) -> None:
        self._pool.shutdown()


def _raising(exc):
    raise exc
    yield  # pragma: no cover


@dataclass
class InProcessServer:
    """An asyncssh SSH server with its SFTP subsystem on the real filesystem; no exec (so the
    auto-selection falls back to SFTP, as for an sftp-only account)."""

    host: str
    port: int
    client_key: Path
    known_hosts: Path
    lt: LoopThread
    server: asyncssh.SSHAcceptor

    def stop(self) -> None:
        async def _close():
            self.server.close()
            await self.server.wait_closed()

        self.lt.run(_close())
        self.lt.stop()


def start_inprocess_server(workdir: Path) -> InProcessServer:
    workdir.mkdir(parents=True, exist_ok=True)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    client_key = workdir / "id_rsa"
    client_key.write_bytes(client.export_private_key())
    client_key.chmod(0o600)
    lt = LoopThread("test-asyncssh-server")

    async def _start():
        drop_dac_in_this_thread()  # the server's loop thread does the file I/O
        return await asyncssh.listen(
            "127.0.0.1", 0, server_host_keys=[host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(client.export_public_key().decode()),
            sftp_factory=True, allow_scp=False)

    server = lt.run(_start())
    port = server.sockets[0].getsockname()[1]
    kh = workdir / "known_hosts"
    kh.write_text(f"{known_hosts_name('127.0.0.1', port)} {host_key.export_public_key().decode()}")
    return InProcessServer("127.0.0.1", port, client_key, kh, lt, server)


def _needs_sshd() -> None:
    if not shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin") or not shutil.which("ssh-keygen"):
        pytest.skip("OpenSSH server not installed")


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory) -> SshServer:
    _needs_sshd()
    with start_sshd(tmp_path_factory.mktemp("sshd"), no_dac_override=True) as s:
        yield s


@pytest.fixture(scope="session")
def legacy_sshd(tmp_path_factory) -> SshServer:
    _needs_sshd()
    with start_sshd(tmp_path_factory.mktemp("sshd-legacy"), legacy=True) as s:
        yield s


@pytest.fixture(scope="session")
def sftp_only_sshd(tmp_path_factory) -> SshServer:
    _needs_sshd()
    with start_sshd(tmp_path_factory.mktemp("sshd-sftponly"), sftp_only=True, no_dac_override=True) as s:
        yield s


@pytest.fixture(scope="session")
def inprocess_server(tmp_path_factory) -> InProcessServer:
    s = start_inprocess_server(tmp_path_factory.mktemp("asyncssh-server"))
    yield s
    s.stop()


SOURCE_KINDS = ["local", "asyncssh-sftp", "sshd-sftp", "sshd-exec"]


@pytest.fixture(scope="session", params=SOURCE_KINDS)
def any_source(request):
    """One instance of every Source implementation, each reading this host's filesystem."""
    from maildirsync.ssh import open_source

    kind = request.param
    if kind == "local":
        src = NoDacLocalSource()
    elif kind == "asyncssh-sftp":
        s = request.getfixturevalue("inprocess_server")
        src = open_source(s.host, s.port, "root", s.client_key, s.known_hosts)
        assert src.transport == "sftp"  # no exec on this server: auto-selection fell back
    else:
        s = request.getfixturevalue("sshd_server")
        src = open_source(s.host, s.port, "root", s.client_key, s.known_hosts,
                          transport="sftp" if kind == "sshd-sftp" else "exec")
    src.kind = kind
    yield src
    src.close()

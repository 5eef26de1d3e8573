"""Reading a live source over SSH (asyncssh): one connection, many channels, two ways to read.

``open_source`` is the entry point for a sync; ``setup`` (in :mod:`.setup`) installs the tool's key.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
from pathlib import Path

# cryptography warns, on import, that it will drop Python 3.8: NethServer 7's Python. Not the user's business.
warnings.filterwarnings("ignore", message="Python 3.8 is no longer supported")


X509 = "asyncssh.crypto.x509"


def _import_asyncssh() -> None:
    """asyncssh, without what costs every start and that no run of ours uses.

    It looks for liboqs (for sntrup761 key exchange, which we never offer) with ctypes.util.find_library,
    which runs ldconfig and gcc: a twentieth of a second. And it loads X.509 certificate support, which
    an OpenSSH server never offers and which imports all of cryptography.x509 (30 ms); asyncssh imports
    that module under ``try``, so a ``None`` in sys.modules makes it do without, as where it is absent."""
    import ctypes.util

    find = ctypes.util.find_library
    ctypes.util.find_library = lambda name: None if name in ("oqs", "liboqs") else find(name)
    blocked = "asyncssh" not in sys.modules and X509 not in sys.modules
    if blocked:
        sys.modules[X509] = None  # type: ignore[assignment]
    try:
        import asyncssh  # noqa: F401
    finally:
        ctypes.util.find_library = find
        if blocked and sys.modules.get(X509, 0) is None:
            del sys.modules[X509]  # (anyone asking later gets the real module)


_import_asyncssh()

from .connection import DEFAULT_KEY, DEFAULT_KNOWN_HOSTS, STATE_DIR, Connection, Target
from .errors import (
    AuthError,
    ConnectError,
    ConnectionLostError,
    HostKeyChanged,
    HostKeyError,
    HostKeyUnknown,
    KeyFileError,
    NegotiationError,
    ProtocolError,
    SetupError,
    SshError,
)
from .execsrc import PROBE_TIMEOUT, ExecSource, Tools, probe
from .sftp import SftpSource

__all__ = [
    "AuthError", "ConnectError", "ConnectionLostError", "Connection", "DEFAULT_KEY", "DEFAULT_KNOWN_HOSTS",
    "ExecSource", "HostKeyChanged", "HostKeyError", "HostKeyUnknown", "KeyFileError", "NegotiationError",
    "ProtocolError", "STATE_DIR", "SetupError", "SftpSource", "SshError", "Target", "open_source", "setup",
]


def open_source(
    host: str,
    port: int = 22,
    login: str = "root",
    identity: Path | str | None = DEFAULT_KEY,
    known_hosts: Path | str = DEFAULT_KNOWN_HOSTS,
    accept_new: bool = False,
    transport: str = "auto",
    *,
    max_channels: int = 8,
    retries: int = 3,
    retry_delay: float = 0.5,
    connect_timeout: float = 20.0,
    bwlimit: float | None = None,
) -> SftpSource | ExecSource:
    """Connect (raising an :class:`SshError` subclass with an actionable message if that fails) and
    return the fastest reader the account allows: :class:`ExecSource` when it may run GNU find and tar,
    else :class:`SftpSource`. ``transport="sftp"`` forces SFTP, ``"exec"`` refuses to fall back.
    ``bwlimit``: bytes per second read from the source, over all channels (None: no limit).
    The returned source owns the connection: ``close()`` it."""
    if transport not in ("auto", "sftp", "exec"):
        raise ValueError(f"transport must be auto, sftp or exec, not {transport!r}")
    target = Target(host, port, login, Path(identity) if identity is not None else None, Path(known_hosts),
                    accept_new, connect_timeout)
    conn = Connection(target, retries=retries, retry_delay=retry_delay, max_channels=max_channels,
                      bwlimit=bwlimit).open()
    try:
        tools = conn.run(_ready(conn, transport != "sftp"))
        if tools is not None:
            # A tar loop keeps a session open for the whole run: a third of the channels, the rest
            # left to the listings and to fetches that find every loop busy.
            return ExecSource(conn, tools=tools, loops=max(1, (max_channels - 2) // 3))
        if transport == "exec":
            raise SshError(f"{target.name} cannot run find and tar (an sftp-only account?): use --transport sftp")
        return SftpSource(conn)
    except BaseException:
        conn.close()
        raise


async def _ready(conn: Connection, exec_too: bool) -> Tools | None:
    """The probe (if asked), and the SFTP channel every run uses started beside it: the first session of
    a connection waits on the server for its own start (40 ms on a local sshd), so both wait it together.
    An SFTP channel the server refuses is not this step's business: its first use says why."""
    sftp = asyncio.ensure_future(conn.sftp())
    try:
        tools = await probe(conn) if exec_too else None
    except BaseException:
        sftp.cancel()
        raise
    # Waited for as long as the probe may take, no longer: a server that never answers is left to the
    # channel's first use, which fails or retries as it always did.
    await asyncio.wait({sftp}, timeout=PROBE_TIMEOUT)
    if sftp.done() and not sftp.cancelled():
        sftp.exception()  # retrieved: a refusal is said at first use, not here
    return tools


def setup(*args, **kwargs):
    from .setup import setup as _setup

    return _setup(*args, **kwargs)

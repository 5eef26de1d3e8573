"""One SSH connection for the whole run, shared by every engine thread, re-established if it drops.

asyncssh runs on a loop in a background thread (:class:`~.bridge.LoopThread`); sources submit
coroutines to it. Channels are capped by a semaphore because old sshd (OpenSSH 5.3) allows 10 sessions
per connection.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncssh

from . import knownhosts
from .bridge import LoopThread
from .throttle import Throttle
from .errors import (
    AuthError,
    ConnectError,
    ConnectionLostError,
    HostKeyChanged,
    HostKeyUnknown,
    KeyFileError,
    NegotiationError,
)

log = logging.getLogger(__name__)

# The sha1 DH groups are deprecated in cryptography, and the only ones SME 8/9 speak.
warnings.filterwarnings("ignore", message="Diffie-Hellman over finite fields", module="asyncssh.*")
T = TypeVar("T")

STATE_DIR = Path("/var/lib/maildirsync")
DEFAULT_KNOWN_HOSTS = STATE_DIR / "known_hosts"
DEFAULT_KEY = STATE_DIR / "id_rsa"

# aes-gcm first: on this kind of CPU it costs 1.56x less than chacha20 (issue 3). The ctr ciphers are
# all OpenSSH 4.3 / 5.3 offer.
ENCRYPTION_ALGS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
                   "aes128-ctr", "aes192-ctr", "aes256-ctr"]
# No GSS: it would try Kerberos. The two sha1 groups at the end are what SME 8/9 speak.
KEX_ALGS = ["curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384",
            "ecdh-sha2-nistp521", "diffie-hellman-group-exchange-sha256", "diffie-hellman-group16-sha512",
            "diffie-hellman-group18-sha512", "diffie-hellman-group14-sha256", "diffie-hellman-group14-sha1",
            "diffie-hellman-group-exchange-sha1"]

# What a dropped connection looks like, whichever layer notices first.
LOST = (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.SFTPConnectionLost,
        asyncssh.SFTPNoConnection, asyncssh.ChannelOpenError, ConnectionError, BrokenPipeError, EOFError)


@dataclass(frozen=True)
class Target:
    host: str
    port: int = 22
    login: str = "root"
    identity: Path | None = DEFAULT_KEY
    known_hosts: Path = DEFAULT_KNOWN_HOSTS
    accept_new: bool = False
    connect_timeout: float = 20.0

    @property
    def name(self) -> str:
        return f"{self.login}@{self.host}:{self.port}"


class _Client(asyncssh.SSHClient):
    def __init__(self, check: Callable[[asyncssh.SSHKey], bool], prompt: Callable[[], str] | None = None) -> None:
        self._check = check
        self._prompt = prompt

    def validate_host_public_key(self, host, addr, port, key) -> bool:
        return self._check(key)

    def _password(self) -> str | None:
        # Asked only once the host key has passed, and only once: a wrong password ends the attempt.
        prompt, self._prompt = self._prompt, None
        return prompt() if prompt is not None else None

    def password_auth_requested(self) -> str | None:
        return self._password()

    def kbdint_auth_requested(self) -> str | None:
        return "" if self._prompt is not None else None

    def kbdint_challenge_received(self, name, instructions, lang, prompts):
        # sshd with PAM asks for the password this way ("Password: ", echo off).
        if not prompts:
            return []
        if len(prompts) == 1 and not prompts[0][1]:
            pw = self._password()
            return [pw] if pw is not None else None
        return None


def load_keys(path: Path, target: Target) -> list[asyncssh.SSHKeyPair]:
    """The client key, and for RSA a second copy that signs with ``ssh-rsa`` (SHA-1).

    OpenSSH 4.3/5.3 only verify ``ssh-rsa`` signatures. A server that says nothing about its signature
    algorithms gets ssh-rsa from asyncssh anyway; one that advertises rsa-sha2 but accepts only ssh-rsa
    (a modern sshd restricted like the old ones) needs the second try."""
    kp = asyncssh.load_keypairs([load_key(path, target)])[0]
    if kp.algorithm != b"ssh-rsa":
        return [kp]
    sha1 = copy.copy(kp)
    sha1.sig_algorithms = (b"ssh-rsa",)
    sha1.set_sig_algorithm(b"ssh-rsa")
    return [kp, sha1]


def load_key(path: Path, target: Target) -> asyncssh.SSHKey:
    # OpenSSL's full check of an RSA private key (its primes among them) costs 200 ms for the 3072-bit key
    # `maildirsync setup` makes: a third of a run that finds nothing changed. The key is a file of this host
    # that only root writes (setup checks it in full), and OpenSSL checks each CRT signature against the
    # public key and never sends a miscalculated one: a corrupt key fails to log in, it leaks nothing.
    try:
        return asyncssh.read_private_key(str(path), unsafe_skip_rsa_key_validation=True)
    except FileNotFoundError:
        raise KeyFileError(
            f"no SSH key at {path}: run `maildirsync setup -s {target.host} -p {target.port}` to create "
            f"one and install it on the source, or pass -i KEY") from None
    except (OSError, asyncssh.KeyImportError) as e:
        raise KeyFileError(f"cannot use the SSH key {path}: {e} (it must be an unencrypted private key)") from None


async def open_connection(target: Target, *, password: Callable[[], str] | None = None) -> asyncssh.SSHClientConnection:
    """Connect and authenticate (key, or ``password`` for setup), checking the host key first.

    The host key check runs during key exchange, before any credential is sent: a wrong server never
    sees the password."""
    known = knownhosts.lookup(target.known_hosts, target.host, target.port)
    seen: dict[str, object] = {}

    def check(key: asyncssh.SSHKey) -> bool:
        seen["key"] = key
        seen["verdict"] = v = knownhosts.verdict(known, key)
        return v == "ok" or (v == "unknown" and target.accept_new)

    keys = load_keys(target.identity, target) if target.identity is not None and password is None else []
    try:
        conn = await asyncssh.connect(
            target.host, target.port, username=target.login, config=[],
            client_factory=lambda: _Client(check, password),
            known_hosts=([], [], []),  # trust nothing here: every key goes through check()
            server_host_key_algs=knownhosts.host_key_algs(known),
            client_keys=keys, password=None, agent_path=None, gss_auth=False, gss_kex=False,
            password_auth=password is not None, kbdint_auth=password is not None,
            preferred_auth="password,keyboard-interactive" if password is not None else "publickey",
            encryption_algs=ENCRYPTION_ALGS, kex_algs=KEX_ALGS,
            connect_timeout=target.connect_timeout, login_timeout=target.connect_timeout,
            keepalive_interval=15, keepalive_count_max=4,
        )
    except asyncssh.HostKeyNotVerifiable:
        raise _host_key_error(target, known, seen) from None
    except asyncssh.PermissionDenied:
        if password is not None:
            raise AuthError(f"{target.name} refused the password (is it the source's root password, and "
                            f"does its sshd allow password logins?)") from None
        raise AuthError(
            f"{target.name} refused the key {target.identity}: run `maildirsync setup -s {target.host} "
            f"-p {target.port}` to install it, or pass -i with a key the source accepts") from None
    except asyncssh.KeyExchangeFailed as e:
        raise NegotiationError(f"cannot agree on encryption with {target.host}:{target.port}: {e}") from None
    except ConnectionRefusedError:
        raise ConnectError(f"connection to {target.host}:{target.port} refused: is sshd running on the source, "
                           f"and is the port right (-p)?") from None
    except (asyncio.TimeoutError, TimeoutError):
        raise ConnectError(f"no answer from {target.host}:{target.port} within {target.connect_timeout:.0f} s: "
                           f"check the address, the port (-p) and any firewall in between") from None
    except OSError as e:
        raise ConnectError(f"cannot reach {target.host}:{target.port}: {e.strerror or e}") from None
    except asyncssh.Error as e:
        raise ConnectError(f"SSH to {target.host}:{target.port} failed: {e.reason or e}") from None
    if seen.get("verdict") == "unknown":
        knownhosts.record(target.known_hosts, target.host, target.port, seen["key"])  # type: ignore[arg-type]
        log.info("recorded the host key of %s in %s", target.host, target.known_hosts)
    return conn


def _host_key_error(target: Target, known: list[knownhosts.KnownKey], seen: dict) -> Exception:
    key = seen.get("key")
    shown = f"{key.get_algorithm()} {knownhosts.fingerprint(key)}" if key is not None else "(none)"
    name = knownhosts.host_name(target.host, target.port)
    f = target.known_hosts
    if seen.get("verdict") == "unknown":
        return HostKeyUnknown(
            f"the host key of {name} ({shown}) is not in {f}. If this is your source server, re-run with "
            f"--accept-new-host-key to record it")
    lines = ", ".join(str(k.lineno) for k in known if k.marker != "@cert-authority")
    return HostKeyChanged(
        f"the host key of {name} has CHANGED (it now shows {shown}; {f} line {lines} holds another). Either "
        f"the source was reinstalled, or someone is intercepting the connection. If you are sure it is the "
        f"reinstalled source, remove the stale line {lines} of {f} (ssh-keygen -R '{name}' -f {f}) and "
        f"re-run with --accept-new-host-key")


class Connection:
    """The run's connection. Thread-safe: any thread may call :meth:`run`."""

    def __init__(self, target: Target, *, retries: int = 3, retry_delay: float = 0.5, max_channels: int = 8,
                 bwlimit: float | None = None):
        self.target = target
        self.throttle = Throttle(bwlimit) if bwlimit else None  # --bwlimit, bytes per second
        self.retries = retries
        self.retry_delay = retry_delay
        self.lt = LoopThread()
        self.loop = self.lt.loop
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._gen = 0
        self._failed_at = 0.0
        self._failure: Exception | None = None
        # Old sshd allows 10 sessions per connection; two are kept for the one-file fetches a tar stream
        # may need in the middle of its own (hard links), so that these can never wait for each other.
        self._lock, self._sftp_lock, self.channels, self.extra_channels = self.lt.make(
            lambda: (asyncio.Lock(), asyncio.Lock(), asyncio.Semaphore(max(1, max_channels - 2)), asyncio.Semaphore(2))
        )
        self.reconnects = 0

    async def paid(self, n: int) -> None:
        """``n`` bytes read from the source: wait as long as ``--bwlimit`` wants."""
        if self.throttle is not None:
            await self.throttle.take(n)

    # -- sync facade
    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        return self.lt.run(coro, timeout)  # type: ignore[arg-type]

    def open(self) -> Connection:
        try:
            self.run(self._get())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        async def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                try:
                    await asyncio.wait_for(self._conn.wait_closed(), 5)
                except (asyncio.TimeoutError, OSError, asyncssh.Error):
                    pass
                self._conn = None
        if not self.loop.is_closed():
            try:
                self.run(_close(), 10)
            except Exception:
                pass
            self.lt.stop()

    # -- loop side
    async def _get(self) -> tuple[asyncssh.SSHClientConnection, int]:
        if self._conn is None:
            async with self._lock:
                if self._conn is None:
                    self._conn = await open_connection(self.target)
                    self._sftp = None
                    self._gen += 1
        return self._conn, self._gen

    async def conn(self) -> tuple[asyncssh.SSHClientConnection, int]:
        return await self._get()

    async def sftp(self) -> tuple[asyncssh.SFTPClient, int]:
        conn, gen = await self._get()
        if self._sftp is None or gen != self._sftp_gen:
            async with self._sftp_lock:
                if self._sftp is None or gen != self._sftp_gen:
                    self._sftp = await conn.start_sftp_client()
                    self._sftp_gen = gen
        return self._sftp, gen

    _sftp_gen = -1

    async def lost(self, gen: int, cause: BaseException) -> None:
        """Called by whoever saw connection ``gen`` fail: re-establish it (once, whatever the number of
        callers), or raise :class:`ConnectionLostError`."""
        async with self._lock:
            if gen != self._gen and self._conn is not None:
                return  # another caller already reconnected
            if self._conn is not None:
                self._conn.abort()
                self._conn = None
            # Several users failing in a row on a dead server should not each wait the full backoff.
            if self._failure is not None and time.monotonic() - self._failed_at < self.retry_delay * 4:
                raise ConnectionLostError(str(self._failure))
            delay = self.retry_delay
            last: Exception | None = None
            for attempt in range(self.retries):
                try:
                    self._conn = await open_connection(self.target)
                except (ConnectError, AuthError, NegotiationError) as e:
                    last = e
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                self._gen += 1
                self._sftp = None
                self.reconnects += 1
                self._failure = None
                log.warning("connection to %s lost (%s); reconnected", self.target.name, _describe(cause))
                return
            self._failure = ConnectionLostError(
                f"the connection to {self.target.name} was lost ({_describe(cause)}) and {self.retries} attempts "
                f"to reconnect failed (last: {last}). Nothing partial was kept; re-run maildirsync once the "
                f"source is reachable to complete the sync")
            self._failed_at = time.monotonic()
            raise self._failure

    async def retrying(self, op: Callable[[asyncssh.SSHClientConnection], Awaitable[T]]) -> T:
        """Run ``op(conn)``; if the connection drops, reconnect and run it again from the start. Only
        for operations that are safe to repeat (all of ours read)."""
        while True:
            conn, gen = await self._get()
            try:
                return await op(conn)
            except LOST as e:
                if not _conn_dead(conn):
                    raise
                await self.lost(gen, e)

    async def retrying_sftp(self, op: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        restarts = 0
        while True:
            sftp, gen = await self.sftp()
            try:
                return await op(sftp)
            except LOST as e:
                if _conn_dead(self._conn, gen, self._gen):
                    await self.lost(gen, e)
                elif restarts < self.retries and isinstance(e, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)):
                    # Only the sftp-server went away; the connection is fine: start another one.
                    restarts += 1
                    if self._sftp is sftp:
                        self._sftp = None
                else:
                    raise


def _conn_dead(conn, gen: int | None = None, cur: int | None = None) -> bool:
    if gen is not None and gen != cur:
        return True
    return conn is None or conn.is_closed()


def _describe(e: BaseException) -> str:
    return str(e) or type(e).__name__

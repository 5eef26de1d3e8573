"""``maildirsync setup``: give the tool its own key on the source. The only code that writes there.

The key lives in /var/lib/maildirsync, not /root/.ssh, which NethServer's migration-import replaces
with the source's. The root password is asked once, after the host key has been checked.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from .bridge import LoopThread
from .connection import STATE_DIR, Target, open_connection
from .errors import AuthError, SetupError


@dataclass
class SetupResult:
    key: Path
    public_key: str
    key_created: bool
    key_installed: bool  # False: the source already had it
    host_key_fingerprint: str


def ensure_key(path: Path) -> tuple[str, bool]:
    """The public key line of ``path``, creating an RSA key there first if there is none. RSA because
    OpenSSH 4.3 (SME 8) knows no other usable kind."""
    created = False
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-rsa", key_size=3072,
                                            comment=f"maildirsync@{socket.gethostname()}")
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key("openssh"))
        os.replace(tmp, path)
        Path(str(path) + ".pub").write_bytes(key.export_public_key("openssh"))
        created = True
    try:
        key = asyncssh.read_private_key(str(path))
    except (OSError, asyncssh.KeyImportError) as e:
        raise SetupError(f"cannot use the key {path}: {e}") from None
    pub = key.export_public_key("openssh").decode().strip()
    if len(pub.split()) < 3:
        pub += f" maildirsync@{socket.gethostname()}"
    return pub, created


async def _install(conn: asyncssh.SSHClientConnection, pub: str) -> bool:
    """Append ``pub`` to ~/.ssh/authorized_keys over SFTP (so even an sftp-only account can be set up),
    creating ~/.ssh (0700) and the file (0600) if needed. False if the key was already there."""
    body = " ".join(pub.split()[:2]).encode()
    async with conn.start_sftp_client() as sftp:
        home = await sftp.realpath(".")
        d = home.rstrip("/") + "/.ssh"
        if not await sftp.exists(d):
            await sftp.mkdir(d, asyncssh.SFTPAttrs(permissions=0o700))
        f = d + "/authorized_keys"
        old = b""
        if await sftp.exists(f):
            async with sftp.open(f, "rb") as fh:
                old = await fh.read()
        blob = body.split()[1]
        # Compared by key material, whatever the comment or options in front of it.
        if any(blob in ln.split() for ln in old.splitlines()):
            return False
        new_file = not old
        async with sftp.open(f, "ab", asyncssh.SFTPAttrs(permissions=0o600)) as fh:
            await fh.write((b"\n" if old and not old.endswith(b"\n") else b"") + pub.encode() + b"\n")
        if new_file:
            await sftp.chmod(f, 0o600)
        return True


def setup(
    host: str,
    port: int = 22,
    key_dir: Path | str = STATE_DIR,
    password_prompt: Callable[[], str] | None = None,
    *,
    login: str = "root",
    known_hosts: Path | str | None = None,
    accept_new: bool = False,
    connect_timeout: float = 20.0,
) -> SetupResult:
    """Create the key (if missing), install it with one password login, record the host key (under the
    same rules as a sync: an unknown key needs ``accept_new``), then check that key login works."""
    if password_prompt is None:
        import getpass

        password_prompt = lambda: getpass.getpass(f"{login}@{host}'s password: ")  # noqa: E731
    key_dir = Path(key_dir)
    key = key_dir / "id_rsa"
    kh = Path(known_hosts) if known_hosts is not None else key_dir / "known_hosts"
    pub, created = ensure_key(key)
    lt = LoopThread("maildirsync-setup")
    try:
        return lt.run(_setup(Target(host, port, login, None, kh, accept_new, connect_timeout),
                             key, pub, created, password_prompt))
    finally:
        lt.stop()


async def _setup(target: Target, key: Path, pub: str, created: bool, prompt) -> SetupResult:
    conn = await open_connection(target, password=prompt)
    try:
        fp = conn.get_server_host_key().get_fingerprint("sha256")
        installed = await _install(conn, pub)
    except (asyncssh.Error, OSError) as e:
        raise SetupError(f"logged in to {target.name} but could not install the key: {e}") from None
    finally:
        conn.close()
    try:
        check = await open_connection(Target(target.host, target.port, target.login, key, target.known_hosts,
                                             False, target.connect_timeout))
    except AuthError:
        raise SetupError(
            f"the key was added to ~{target.login}/.ssh/authorized_keys on {target.host}, but logging in with it "
            f"fails: check that the source's sshd allows PubkeyAuthentication for {target.login}, and that "
            f"~{target.login} and ~/.ssh are not group- or world-writable (StrictModes)") from None
    check.close()
    return SetupResult(key, pub, created, installed, fp)

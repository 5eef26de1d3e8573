"""A throwaway OpenSSH server for tests, the demo and the bench.

Everything (host key, client key, config, authorized_keys, log, pid file) lives in ``workdir``; nothing
under /etc/ssh or /root/.ssh is read or written. Login is as root with the generated client key.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/sbin:" + os.environ.get("PATH", "")) or "/usr/sbin/sshd"

# Exactly what OpenSSH 4.3 (SME 8) and 5.3 (SME 9) can negotiate: a client that connects to this
# server connects to those.
LEGACY_CONFIG = """\
KexAlgorithms diffie-hellman-group14-sha1,diffie-hellman-group-exchange-sha1
Ciphers aes128-ctr,aes192-ctr,aes256-ctr
MACs hmac-sha1
HostKeyAlgorithms ssh-rsa
PubkeyAcceptedAlgorithms ssh-rsa
"""

# What the OpenSSH *client* (ssh_command, rsync -e) must be told to talk to the legacy server, whose
# algorithms modern clients no longer offer by default.
LEGACY_CLIENT_OPTS = [
    "-o", "KexAlgorithms=+diffie-hellman-group14-sha1,diffie-hellman-group-exchange-sha1",
    "-o", "HostKeyAlgorithms=ssh-rsa",
    "-o", "PubkeyAcceptedAlgorithms=ssh-rsa",
]


class SshdError(RuntimeError):
    """The throwaway sshd could not be started; the message includes its log."""


@dataclass
class SshServer:
    host: str
    port: int
    client_key: Path
    known_hosts: Path
    host_key_pub: Path
    log: Path
    workdir: Path
    legacy: bool = False
    netns: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def host_key_line(self) -> str:
        """The host public key as ``type base64`` (no comment)."""
        return " ".join(self.host_key_pub.read_text().split()[:2])

    @property
    def authorized_keys(self) -> Path:
        return self.workdir / "authorized_keys"

    def ssh_command(self) -> list[str]:
        """An ``ssh`` argv (without the host) that logs in as root; usable as ``rsync -e``."""
        argv = [
            "ssh", "-p", str(self.port), "-i", str(self.client_key),
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "LogLevel=ERROR",
            "-l", "root",
        ]
        if self.legacy:
            argv += LEGACY_CLIENT_OPTS
        return argv

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the listener. Session processes (one per connection) survive it: use
        :func:`kill_sessions` as well to cut live connections."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def crash(self) -> None:
        """SIGKILL the listener and every session at once: the server is gone, as on a power cut."""
        if self.proc is None:
            return
        pids = _descendants(self.proc.pid)
        self.kill()
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        self.proc = None

    def __enter__(self) -> SshServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def kill_sessions(server: SshServer) -> int:
    """SIGKILL every sshd process serving a connection to ``server`` (children of its listener), which
    drops live connections the way a crash or a network cut would. Returns how many were killed."""
    if server.proc is None:
        return 0
    killed = 0
    for pid in _descendants(server.proc.pid):
        try:
            os.kill(pid, 9)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                st = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: fields resume after the last ')'.
        ppid = int(st[st.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _keygen(path: Path, kind: str) -> None:
    if path.exists():
        return
    bits = ["-b", "2048"] if kind == "rsa" else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *bits, "-N", "", "-C", "maildirsync-lab", "-f", str(path)],
        check=True, stdout=subprocess.DEVNULL,
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _split_extra(extra: str) -> tuple[str, str]:
    # sshd keeps the first value it reads for a keyword, so extra settings go before the defaults to
    # win; a Match block must come last, so it and everything after it go at the end.
    lines = extra.splitlines()
    for i, line in enumerate(lines):
        if line.strip().lower().startswith("match "):
            return "\n".join(lines[:i]) + "\n", "\n".join(lines[i:]) + "\n"
    return extra + ("\n" if extra and not extra.endswith("\n") else ""), ""


def start_sshd(
    workdir: Path,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    legacy: bool = False,
    sftp_only: bool = False,
    netns: str | None = None,
    extra_config: str = "",
    no_dac_override: bool = False,
    timeout: float = 20.0,
) -> SshServer:
    """Start sshd on ``host:port`` (a free port when None) and wait until it accepts connections.

    Keys already in ``workdir`` are reused, so a restart keeps its host key; a fresh ``workdir`` gives
    fresh keys. With ``netns``, sshd runs in that network namespace and ``host`` must be an address of it
    reachable from here. ``no_dac_override`` drops root's power to read any file (CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH) from sshd and its sessions, so that a mode-000 directory is unreadable to
    them, as it would be on a real source for a non-root login."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # Privilege separation needs this directory; on a container it is often missing.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)

    host_kind = "rsa" if legacy else "ed25519"
    host_key = workdir / f"ssh_host_{host_kind}_key"
    client_key = workdir / "id_rsa"  # RSA: the only kind the legacy servers accept
    _keygen(host_key, host_kind)
    _keygen(client_key, "rsa")
    (workdir / "authorized_keys").write_text((workdir / "id_rsa.pub").read_text())
    os.chmod(workdir / "authorized_keys", 0o600)

    tries = 1 if port is not None else 5
    last_err = ""
    for _ in range(tries):
        # A namespace has its own ports and our process cannot bind its address: any port free here
        # is a fine guess there, and a clash is retried.
        p = port if port is not None else free_port("127.0.0.1" if netns else host)
        server = _launch(workdir, host, p, host_key, client_key, legacy, sftp_only, netns, extra_config,
                         no_dac_override, timeout)
        if isinstance(server, SshServer):
            return server
        last_err = server
        if "Address already in use" not in last_err:
            break
    raise SshdError(f"sshd did not start on {host}:{port or '(free port)'}:\n{last_err}")


def _launch(workdir, host, port, host_key, client_key, legacy, sftp_only, netns, extra_config, no_dac, timeout):
    log = workdir / "sshd.log"
    conf = workdir / "sshd_config"
    head, tail = _split_extra(extra_config)
    # Sessions get an empty HOME: this host's root ~/.bashrc runs pyenv init, a quarter second per command
    # that no SME server spends, and a session killed inside it leaves a lock that stalls later logins.
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    body = f"""\
{head}Port {port}
ListenAddress {host}
HostKey {host_key}
PidFile {workdir / 'sshd.pid'}
AuthorizedKeysFile {workdir / 'authorized_keys'}
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxSessions 64
MaxStartups 64:30:256
LogLevel INFO
UseDNS no
PrintMotd no
Subsystem sftp internal-sftp
SetEnv HOME={home}
"""
    if legacy:
        body += LEGACY_CONFIG
    if sftp_only:
        body += "ForceCommand internal-sftp\n"
    conf.write_text(body + tail)

    known = workdir / "known_hosts"
    known.write_text(f"{known_hosts_name(host, port)} {' '.join(Path(str(host_key) + '.pub').read_text().split()[:2])}\n")

    start_at = log.stat().st_size if log.exists() else 0
    argv = [SSHD, "-D", "-f", str(conf), "-E", str(log)]
    if no_dac:
        argv = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
                "-dac_override,-dac_read_search", "--", *argv]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = SshServer(host, port, client_key, known, Path(str(host_key) + ".pub"), log, workdir,
                       legacy=legacy, netns=netns, proc=proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            return err + _log_since(log, start_at)
        if "Server listening" in _log_since(log, start_at) and (netns or _accepts(host, port)):
            proc.stderr.close()
            proc.stderr = None
            return server
        time.sleep(0.02)
    server.stop()
    return "timed out waiting for sshd to listen\n" + _log_since(log, start_at)


def _log_since(log: Path, offset: int) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False

"""Network profiles for the bench: where the source sshd runs and how the client reaches it.

Every profile gets network namespaces of its own, so the interface byte counters count our traffic only
(other processes on the host keep using the host's loopback):

* ``loopback``: one namespace; sshd and the clients talk over its ``lo``.
* ``lan`` / ``wan``: a source and a destination namespace joined by a veth pair; each end shapes its
  egress to the profile's rate with ``tbf``. The delay is ``netem`` when the kernel has it; otherwise
  (``netem`` is a module that many container kernels lack) a small relay inside the source namespace
  holds every chunk for half the RTT in each direction before passing it to sshd or back.

Clients run as ``ip netns exec <ns> argv``: ``ip`` enters the namespace and execs the program, so the
measured process is the client itself.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from maildirsync.lab.sshd import SshServer, free_port, known_hosts_name, start_sshd


@dataclass(frozen=True)
class Profile:
    name: str
    rate_mbit: float | None = None
    rtt_ms: float | None = None


PROFILES = {
    "loopback": Profile("loopback"),
    "lan": Profile("lan", rate_mbit=1000, rtt_ms=0.5),
    "wan": Profile("wan", rate_mbit=100, rtt_ms=20),
}


CLONE_NEWNS = 0x00020000


def quiet_login_shell(work: Path) -> str | None:
    """Hide root's ``~/.bashrc`` from every process the bench starts, sshd included.

    sshd runs each command (rsync's server, every exec channel) through root's bash, which reads
    ``~/.bashrc`` when started by sshd. On a build host that file may run heavy hooks (pyenv init takes
    ~0.2 s per session here) that an SME server does not have, and which would charge every ssh session
    for them. The bench moves itself into a private mount namespace and binds an empty file over it; the
    host keeps its file. Must run before any thread starts. Returns what was done, or None."""
    rc = Path(os.path.expanduser("~root")) / ".bashrc"
    if os.geteuid() != 0 or not rc.is_file():
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return None
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    empty = Path(work) / "empty.bashrc"
    empty.write_text("")
    if subprocess.run(["mount", "--bind", str(empty), str(rc)], capture_output=True).returncode != 0:
        return None
    return f"{rc} hidden (empty) for the bench's processes, in a private mount namespace"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _tc(ns: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, "tc", *args], capture_output=True, text=True)


def netns_usable() -> bool:
    if os.geteuid() != 0:
        return False
    probe = f"msbp{os.getpid()}"
    if _ip("netns", "add", probe, check=False).returncode != 0:
        return False
    _ip("netns", "del", probe, check=False)
    return True


@dataclass
class Network:
    """A started profile: the sshd, the address the client uses, and how to read the wire counters."""

    profile: Profile
    server: SshServer
    host: str  # what the client connects to
    port: int
    known_hosts: Path
    client_ns: str | None  # run clients in this namespace (None: the host's)
    counter: tuple[str | None, str]  # (namespace, interface) whose counters are the wire
    emulation: str
    namespaces: list[str] = field(default_factory=list)
    relay: subprocess.Popen | None = None

    def wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.client_ns, *argv] if self.client_ns else list(argv)

    def wire_bytes(self) -> int:
        """Bytes seen on the wire interface so far (both directions, headers included)."""
        ns, dev = self.counter
        cmd = ["ip", "-j", "-s", "link", "show", "dev", dev]
        if ns:
            cmd[1:1] = ["-n", ns]
        stats = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)[0]["stats64"]
        # On lo each packet is both sent and received: count it once.
        if dev == "lo":
            return stats["rx"]["bytes"]
        return stats["rx"]["bytes"] + stats["tx"]["bytes"]

    def ssh_command(self) -> list[str]:
        argv = self.server.ssh_command()
        # Same key and options, but the address and known_hosts of what the client actually dials.
        i = argv.index("-p")
        argv[i + 1] = str(self.port)
        return [a.replace(str(self.server.known_hosts), str(self.known_hosts)) for a in argv]

    def close(self) -> None:
        if self.relay is not None and self.relay.poll() is None:
            self.relay.terminate()
            try:
                self.relay.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.relay.kill()
                self.relay.wait()
        self.server.stop()
        for ns in self.namespaces:
            _ip("netns", "del", ns, check=False)


def _has_netem(ns: str, dev: str) -> bool:
    ok = _tc(ns, "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms").returncode == 0
    if ok:
        _tc(ns, "qdisc", "del", "dev", dev, "root")
    return ok


def _shape(ns: str, dev: str, profile: Profile, netem: bool) -> None:
    rate = f"{profile.rate_mbit}mbit"
    # A burst of ~2 ms at line rate, and never below one GSO super-packet (veth aggregates up to 64 KiB).
    burst = max(128 * 1024, int(profile.rate_mbit * 1e6 / 8 * 0.002))
    if netem:
        delay = f"{profile.rtt_ms / 2}ms"
        r = _tc(ns, "qdisc", "add", "dev", dev, "root", "netem", "delay", delay, "rate", rate, "limit", "100000")
    else:
        r = _tc(ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", str(burst), "latency", "50ms")
    if r.returncode != 0:
        raise RuntimeError(f"tc on {ns}/{dev} failed: {r.stderr.strip()}")


def start(profile: Profile, workdir: Path, *, sshd_config: str = "") -> Network:
    """Create the namespaces, start the source sshd in them and return how to reach it."""
    workdir = Path(workdir)
    tag = f"msb{os.getpid() % 100000}"
    if profile.rtt_ms is None:
        if not netns_usable():
            server = start_sshd(workdir / "sshd", extra_config=sshd_config)
            return Network(profile, server, server.host, server.port, server.known_hosts, None, (None, "lo"),
                           "host loopback (shared with other processes: wire bytes are approximate)")
        ns = f"{tag}lo"
        _ip("netns", "add", ns)
        try:
            _ip("-n", ns, "link", "set", "lo", "up")
            server = start_sshd(workdir / "sshd", netns=ns, extra_config=sshd_config)
        except BaseException:
            _ip("netns", "del", ns, check=False)
            raise
        return Network(profile, server, server.host, server.port, server.known_hosts, ns, (ns, "lo"),
                       "loopback in a private namespace", [ns])

    if not netns_usable():
        raise RuntimeError(f"profile {profile.name!r} needs root and network namespaces")
    src, dst = f"{tag}s", f"{tag}d"
    net = None
    try:
        for ns in (src, dst):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", f"{tag}S", "netns", src, "type", "veth", "peer", "name", f"{tag}D", "netns", dst)
        _ip("-n", src, "addr", "add", "10.231.0.1/30", "dev", f"{tag}S")
        _ip("-n", dst, "addr", "add", "10.231.0.2/30", "dev", f"{tag}D")
        _ip("-n", src, "link", "set", f"{tag}S", "up")
        _ip("-n", dst, "link", "set", f"{tag}D", "up")
        netem = _has_netem(src, f"{tag}S")
        _shape(src, f"{tag}S", profile, netem)
        _shape(dst, f"{tag}D", profile, netem)
        if netem:
            server = start_sshd(workdir / "sshd", netns=src, host="10.231.0.1", extra_config=sshd_config)
            return Network(profile, server, "10.231.0.1", server.port, server.known_hosts, dst, (dst, f"{tag}D"),
                           f"tc netem delay {profile.rtt_ms / 2} ms each way + rate {profile.rate_mbit} Mbit/s",
                           [src, dst])
        server = start_sshd(workdir / "sshd", netns=src, host="127.0.0.1", extra_config=sshd_config)
        port = free_port()
        known = workdir / "known_hosts.relay"
        known.write_text(f"{known_hosts_name('10.231.0.1', port)} {server.host_key_line}\n")
        relay = subprocess.Popen(
            ["ip", "netns", "exec", src, sys.executable, str(Path(__file__).with_name("relay.py")),
             f"10.231.0.1:{port}", f"127.0.0.1:{server.port}", str(profile.rtt_ms / 2000)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        net = Network(profile, server, "10.231.0.1", port, known, dst, (dst, f"{tag}D"),
                      f"tbf rate {profile.rate_mbit} Mbit/s + userspace relay delaying {profile.rtt_ms / 2} ms each "
                      "way (this kernel has no netem)", [src, dst], relay)
        if relay.stdout.readline().strip() != b"ready":
            raise RuntimeError("delay relay did not start")
        return net
    except BaseException:
        if net is not None:
            net.close()
        else:
            for ns in (src, dst):
                _ip("netns", "del", ns, check=False)
        raise


def wait_idle(server: SshServer, timeout: float = 5.0) -> None:
    """Wait until the sshd listener has no session left, so a run's server side is over (and reaped)
    before the next run starts."""
    if server.proc is None:
        return
    path = f"/proc/{server.proc.pid}/task/{server.proc.pid}/children"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not Path(path).read_text().split():
                return
        except OSError:
            return
        time.sleep(0.01)


def server_cpu(server: SshServer) -> float:
    """CPU seconds of every finished sshd session (sshd, the remote rsync, sftp-server...), from the
    listener's cutime+cstime: each session is reaped by the listener."""
    if server.proc is None:
        return 0.0
    try:
        st = Path(f"/proc/{server.proc.pid}/stat").read_bytes()
    except OSError:
        return 0.0
    fields = st[st.rindex(b")") + 2:].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")

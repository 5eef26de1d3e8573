"""A throwaway Dovecot IMAP server for tests.

Each `DovecotServer` has its own config file, run/state directories and log file under
`workdir`, listens on 127.0.0.1 on a free port, and serves `<mail_root>/<user>/Maildir`
(Maildir++ layout, ':' info separator, index files inside the Maildir). No system
configuration is read: the master is started as `dovecot -F -c <absolute config path>`.

As root, Dovecot refuses to access mail as uid 0, so mail is accessed as a non-root
`vmail` system user, created here if missing. Every directory above `mail_root` must
therefore be traversable by that user; `make_traversable_tmpdir` gives such a place.
"""
from __future__ import annotations

import grp
import imaplib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
VMAIL = "vmail"
START_TIMEOUT = 20.0

# Lines in a Dovecot log that mean a client would see renumbered or broken mail.
# "reappeared"/"Duplicate file entry" are warnings, but both hand out new UIDs.
_PROBLEM_RE = re.compile(
    r"UIDVALIDITY changed|reappeared|Duplicate file entry|giving a new UID|inserted in the middle"
    r"|next_uid was lowered|next_uid header was lowered|[Cc]orrupted"
    r"|\b(Error|Panic|Fatal):",
    re.IGNORECASE,
)


class DovecotError(RuntimeError):
    """The test Dovecot could not be set up or started; the message says what to fix."""


def dovecot_binary() -> str | None:
    """Path of the dovecot master binary, or None when dovecot-imapd is not installed."""
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def imap_binary_present() -> bool:
    """dovecot-core alone has no IMAP service; dovecot-imapd provides it."""
    return any(
        Path(d, "imap").exists()
        for d in ("/usr/lib/dovecot", "/usr/libexec/dovecot", "/usr/local/libexec/dovecot")
    )


def ensure_mail_user() -> tuple[str, int, int]:
    """(name, uid, gid) that Dovecot accesses mail as.

    As root this is the `vmail` system user, created when missing. As a normal user
    Dovecot runs every process as that user, so mail is accessed as ourselves.
    """
    if os.geteuid() != 0:
        pw = pwd.getpwuid(os.geteuid())
        return pw.pw_name, pw.pw_uid, pw.pw_gid
    try:
        pw = pwd.getpwnam(VMAIL)
    except KeyError:
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", VMAIL],
            capture_output=True, text=True,
        )
        # 9 = "already exists": another test process created it meanwhile.
        if result.returncode not in (0, 9):
            raise DovecotError(
                f"cannot create the '{VMAIL}' system user Dovecot needs as root: "
                f"{result.stderr.strip() or result.returncode}; create it with "
                f"`useradd --system {VMAIL}`"
            )
        pw = pwd.getpwnam(VMAIL)
    return pw.pw_name, pw.pw_uid, pw.pw_gid


def make_traversable_tmpdir(prefix: str = "mds-dovecot-") -> Path:
    """A fresh directory in the system temp dir that the mail user can reach.

    pytest's tmp_path sits below a 0700 directory owned by root, which `vmail` cannot
    enter, so Dovecot trees live here instead. The caller removes it.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """`chown -R uid:gid root`, as the migration procedure does after copying mail."""
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
            except FileNotFoundError:
                pass  # a live Dovecot's lock or temporary file, gone meanwhile


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _unreachable_ancestor(path: Path, uid: int, gid: int) -> Path | None:
    """First ancestor of `path` that uid/gid cannot search (root bypasses this, vmail not)."""
    for parent in reversed(path.resolve().parents):
        st = parent.stat()
        if st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return parent
    return None


_CONFIG = """\
# Generated for one test run; no system configuration is included.
instance_name = {instance}
base_dir = {base_dir}
state_dir = {state_dir}
log_path = {log_path}
info_log_path = {log_path}
debug_log_path = {log_path}
protocols = imap
listen = {host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
login_greeting = maildirsync test dovecot ready
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{mail_root}/%u/Maildir:LAYOUT=maildir++
namespace inbox {{
  inbox = yes
  prefix =
  separator = .
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd_file}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail_root}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@dataclass
class DovecotServer:
    """One Dovecot instance serving `<mail_root>/<user>/Maildir` for `users` (name -> password)."""

    workdir: Path
    mail_root: Path
    users: dict[str, str]
    port: int = 0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.workdir / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "dovecot.log"

    def maildir(self, user: str) -> Path:
        return self.mail_root / user / "Maildir"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> "DovecotServer":
        binary = dovecot_binary()
        if binary is None or not imap_binary_present():
            raise DovecotError("Dovecot IMAP is not installed; run `apt-get install dovecot-imapd`")
        name, uid, gid = ensure_mail_user()
        self.mail_root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # Dovecot creates missing Maildirs as the mail user on first login.
            os.chown(self.mail_root, uid, gid)
            blocked = _unreachable_ancestor(self.mail_root, uid, gid)
            if blocked is not None:
                raise DovecotError(
                    f"{blocked} is not searchable by '{name}', so Dovecot cannot reach "
                    f"{self.mail_root}; put the tree under make_traversable_tmpdir()"
                )
        last_failure = ""
        for _attempt in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            self._write_config(name, uid, gid)
            self.proc = subprocess.Popen(
                [binary, "-F", "-c", str(self.config_path.resolve())],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
            last_failure = self._wait_ready()
            if not last_failure:
                return self
            self._reap()
            if "Address already in use" not in last_failure:
                break
        raise DovecotError(f"Dovecot did not start (config {self.config_path}):\n{last_failure}")

    def request_stop(self) -> None:
        """Ask the master to shut down (it takes about a second); `stop()` waits for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> None:
        """Stop the master and wait for it; its children exit with it."""
        if self.proc is None:
            return
        self.request_stop()
        self._reap()

    def __enter__(self) -> "DovecotServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _reap(self) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def _write_config(self, mail_user: str, uid: int, gid: int) -> None:
        base_dir = self.workdir / "run"
        state_dir = self.workdir / "state"
        for d in (base_dir, state_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        passwd_file = self.workdir / "passwd"
        passwd_file.write_text(
            "".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in self.users.items())
        )
        if os.geteuid() == 0:
            internal_user, internal_group, login_user = "dovecot", "dovecot", "dovenull"
            for user in (internal_user, login_user):
                try:
                    pwd.getpwnam(user)
                except KeyError:
                    raise DovecotError(
                        f"system user '{user}' is missing; reinstall dovecot-core"
                    ) from None
            grp.getgrnam(internal_group)
        else:
            internal_user = login_user = mail_user
            internal_group = grp.getgrgid(gid).gr_name
        self.config_path.write_text(_CONFIG.format(
            instance=f"mds-test-{self.port}",
            base_dir=base_dir.resolve(), state_dir=state_dir.resolve(),
            log_path=self.log_path.resolve(), host=HOST, port=self.port,
            internal_user=internal_user, internal_group=internal_group, login_user=login_user,
            uid=uid, gid=gid, mail_root=self.mail_root.resolve(), passwd_file=passwd_file.resolve(),
        ))

    def _wait_ready(self) -> str:
        """'' once the IMAP port greets us, else what went wrong."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                return f"exit status {self.proc.returncode}\n{out}\n{self.log_text()[-2000:]}"
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(200).startswith(b"* OK"):
                        return ""
            except OSError:
                pass
            time.sleep(0.05)
        return f"port {self.port} not ready after {START_TIMEOUT}s\n{self.log_text()[-2000:]}"

    # -- access ------------------------------------------------------------------------

    def connect(self, user: str) -> imaplib.IMAP4:
        """A logged-in IMAP connection; the caller logs out (use as a context manager)."""
        imap = imaplib.IMAP4(HOST, self.port)  # (timeout= is Python 3.9+)
        imap.sock.settimeout(30)
        imap.login(user, self.users[user])
        return imap

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_problems(self, since: int = 0) -> list[str]:
        """Log lines, from byte offset `since`, reporting errors or UID renumbering."""
        text = self.log_text()[since:]
        return [line for line in text.splitlines() if _PROBLEM_RE.search(line)]

    def log_size(self) -> int:
        return len(self.log_text())

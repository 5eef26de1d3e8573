"""``setup``: create the key, log in once with a password, install the key, record the host key.

Against OpenSSH with password logins for a throwaway account created (and deleted) by the test: the
login here is that account, not root, which is all the difference from the real thing."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from maildirsync.lab.sshd import start_sshd
from maildirsync.ssh import AuthError, HostKeyUnknown, open_source, setup
from maildirsync.ssh.setup import ensure_key


@pytest.fixture
def pw_user():
    if not (shutil.which("useradd") and shutil.which("chpasswd") and shutil.which("userdel")):
        pytest.skip("no useradd/chpasswd")
    name = "mdsynct" + secrets.token_hex(3)
    password = secrets.token_urlsafe(12)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n".encode(), check=True, capture_output=True)
        yield name, password, Path(os.path.expanduser(f"~{name}"))
    finally:
        subprocess.run(["userdel", "-r", "-f", name], capture_output=True)


@pytest.fixture
def pw_sshd(tmp_path):
    # %h/.ssh/authorized_keys is where setup installs; the lab file keeps root's test key working.
    extra = ("PasswordAuthentication yes\n"
             f"AuthorizedKeysFile %h/.ssh/authorized_keys {tmp_path / 'sshd' / 'authorized_keys'}\n")
    with start_sshd(tmp_path / "sshd", extra_config=extra) as s:
        yield s


def test_setup_installs_key_once_and_key_login_works(pw_user, pw_sshd, tmp_path):
    name, password, home = pw_user
    state = tmp_path / "state"
    asked = []

    def prompt():
        asked.append(1)
        return password

    # An unknown host: refused before the password is asked for (the local key exists by then).
    with pytest.raises(HostKeyUnknown):
        setup(pw_sshd.host, pw_sshd.port, state, prompt, login=name)
    assert asked == [] and (state / "id_rsa").exists()

    r = setup(pw_sshd.host, pw_sshd.port, state, prompt, login=name, accept_new=True)
    assert asked == [1] and r.key_installed
    assert (state / "id_rsa").stat().st_mode & 0o777 == 0o600
    ak = home / ".ssh" / "authorized_keys"
    assert ak.read_text().count(r.public_key.split()[1]) == 1
    assert (home / ".ssh").stat().st_mode & 0o777 == 0o700
    assert pw_sshd.host_key_line in (state / "known_hosts").read_text()

    # Again: same key, not duplicated, host key already known.
    r2 = setup(pw_sshd.host, pw_sshd.port, state, prompt, login=name)
    assert not r2.key_created and not r2.key_installed
    assert ak.read_text().count(r.public_key.split()[1]) == 1

    # The sync's own login now works with that key.
    src = open_source(pw_sshd.host, pw_sshd.port, name, state / "id_rsa", state / "known_hosts")
    src.close()


def test_setup_wrong_password(pw_user, pw_sshd, tmp_path):
    name, _, home = pw_user
    with pytest.raises(AuthError, match="password"):
        setup(pw_sshd.host, pw_sshd.port, tmp_path / "state", lambda: "wrong", login=name, accept_new=True)
    assert not (home / ".ssh" / "authorized_keys").exists()


def test_setup_appends_to_existing_authorized_keys_without_newline(pw_user, pw_sshd, tmp_path):
    name, password, home = pw_user
    (home / ".ssh").mkdir(mode=0o700)
    ak = home / ".ssh" / "authorized_keys"
    ak.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOtherKeyOtherKeyOtherKeyOtherKe other")
    for p in (home / ".ssh", ak):
        shutil.chown(p, name, name)
    r = setup(pw_sshd.host, pw_sshd.port, tmp_path / "state", lambda: password, login=name, accept_new=True)
    lines = ak.read_text().splitlines()
    assert lines[0].endswith(" other") and lines[1] == r.public_key


def test_ensure_key_keeps_an_existing_key(tmp_path):
    pub1, created1 = ensure_key(tmp_path / "k" / "id_rsa")
    pub2, created2 = ensure_key(tmp_path / "k" / "id_rsa")
    assert created1 and not created2 and pub1 == pub2 and pub1.startswith("ssh-rsa ")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o700

"""Connecting: algorithms, host keys, authentication and the errors that tell the administrator what to do."""

from __future__ import annotations

import shutil

import pytest

from maildirsync.lab.sshd import free_port
from maildirsync.ssh import (
    AuthError,
    ConnectError,
    Connection,
    ExecSource,
    HostKeyChanged,
    HostKeyUnknown,
    KeyFileError,
    SftpSource,
    SshError,
    Target,
    open_source,
)
from tests.sshfixtures import (  # noqa: F401
    inprocess_server,
    legacy_sshd,
    sftp_only_sshd,
    sshd_server,
)


def _target(s, **kw) -> Target:
    args = dict(host=s.host, port=s.port, login="root", identity=s.client_key, known_hosts=s.known_hosts)
    args.update(kw)
    return Target(**args)


@pytest.mark.parametrize("server, cipher, mac", [
    ("sshd_server", "aes128-gcm@openssh.com", "aes128-gcm@openssh.com"),  # gcm first: cheapest per byte
    ("legacy_sshd", "aes128-ctr", "hmac-sha1"),  # all that OpenSSH 4.3 / 5.3 offer
])
def test_negotiated_algorithms(request, server, cipher, mac):
    s = request.getfixturevalue(server)
    c = Connection(_target(s)).open()
    try:
        conn, _ = c.run(c.conn())
        assert (conn.get_extra_info("send_cipher"), conn.get_extra_info("send_mac")) == (cipher, mac)
    finally:
        c.close()


def test_legacy_server_serves_both_ways_of_reading(legacy_sshd, tmp_path):
    (tmp_path / "Maildir" / "cur").mkdir(parents=True)
    (tmp_path / "Maildir" / "cur" / "1.a:2,S").write_bytes(b"legacy")
    root = bytes(tmp_path / "Maildir")
    for transport, cls in (("auto", ExecSource), ("sftp", SftpSource)):
        src = open_source(legacy_sshd.host, legacy_sshd.port, "root", legacy_sshd.client_key,
                          legacy_sshd.known_hosts, transport=transport)
        try:
            assert isinstance(src, cls)
            assert b"cur/1.a:2,S" in {e.rel for e in src.scan(root, {}).entries}
            assert [b"".join(f.chunks) for f in src.fetch(root, [b"cur/1.a:2,S"])] == [b"legacy"]
        finally:
            src.close()


def test_unknown_host_key_is_refused_then_accepted_on_request(sshd_server, tmp_path):
    kh = tmp_path / "state" / "known_hosts"
    with pytest.raises(HostKeyUnknown) as e:
        open_source(sshd_server.host, sshd_server.port, "root", sshd_server.client_key, kh)
    assert "--accept-new-host-key" in str(e.value) and e.value.exit_code == 77
    assert not kh.exists()
    open_source(sshd_server.host, sshd_server.port, "root", sshd_server.client_key, kh, accept_new=True).close()
    assert sshd_server.host_key_line in kh.read_text()
    assert f"[{sshd_server.host}]:{sshd_server.port}" in kh.read_text()
    # Recorded: the next run needs no flag.
    open_source(sshd_server.host, sshd_server.port, "root", sshd_server.client_key, kh).close()


@pytest.mark.parametrize("accept_new", [False, True])
def test_changed_host_key_is_refused_even_with_accept_new(sshd_server, legacy_sshd, tmp_path, accept_new):
    kh = tmp_path / "known_hosts"
    other = legacy_sshd.host_key_line  # some other server's key, filed under this server's name
    kh.write_text(f"# comment\n[{sshd_server.host}]:{sshd_server.port} {other}\n")
    with pytest.raises(HostKeyChanged) as e:
        open_source(sshd_server.host, sshd_server.port, "root", sshd_server.client_key, kh, accept_new=accept_new)
    msg = str(e.value)
    assert "CHANGED" in msg and f"line 2 of {kh}" in msg and "ssh-keygen -R" in msg
    assert kh.read_text().count("\n") == 2  # nothing recorded


def test_hashed_known_hosts_line_is_honoured(sshd_server, tmp_path):
    import subprocess

    kh = tmp_path / "known_hosts"
    shutil.copy(sshd_server.known_hosts, kh)
    subprocess.run(["ssh-keygen", "-H", "-f", str(kh)], check=True, capture_output=True)
    assert kh.read_text().startswith("|1|")
    open_source(sshd_server.host, sshd_server.port, "root", sshd_server.client_key, kh).close()


def test_key_not_authorized(sshd_server, tmp_path):
    import subprocess

    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(key)], check=True)
    with pytest.raises(AuthError) as e:
        open_source(sshd_server.host, sshd_server.port, "root", key, sshd_server.known_hosts)
    assert "maildirsync setup" in str(e.value)


def test_missing_key_file(sshd_server, tmp_path):
    with pytest.raises(KeyFileError) as e:
        open_source(sshd_server.host, sshd_server.port, "root", tmp_path / "nope", sshd_server.known_hosts)
    assert "maildirsync setup" in str(e.value) and e.value.exit_code == 78


def test_connection_refused(sshd_server, tmp_path):
    port = free_port()
    with pytest.raises(ConnectError) as e:
        open_source("127.0.0.1", port, "root", sshd_server.client_key, sshd_server.known_hosts)
    assert "refused" in str(e.value) and "-p" in str(e.value) and e.value.exit_code == 69


def test_sftp_only_account_falls_back_to_sftp(sftp_only_sshd, tmp_path):
    (tmp_path / "Maildir" / "new").mkdir(parents=True)
    (tmp_path / "Maildir" / "new" / "1.b").write_bytes(b"via sftp")
    root = bytes(tmp_path / "Maildir")
    s = sftp_only_sshd
    src = open_source(s.host, s.port, "root", s.client_key, s.known_hosts)
    try:
        assert isinstance(src, SftpSource)
        assert [b"".join(f.chunks) for f in src.fetch(root, [b"new/1.b"])] == [b"via sftp"]
    finally:
        src.close()
    with pytest.raises(SshError, match="--transport sftp"):
        open_source(s.host, s.port, "root", s.client_key, s.known_hosts, transport="exec")


def test_inprocess_server_has_no_exec_so_sftp_is_chosen(inprocess_server):
    s = inprocess_server
    src = open_source(s.host, s.port, "root", s.client_key, s.known_hosts)
    try:
        assert isinstance(src, SftpSource)
    finally:
        src.close()


def test_a_server_refusing_sftp_still_gets_its_exec_reader(sshd_server, monkeypatch):
    """open_source starts the SFTP channel beside the probe: a refusal there is said at first use (an
    exec reader needs SFTP for little), never made the connection's failure."""
    import asyncssh

    async def refused(self):
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "no sftp here")

    monkeypatch.setattr(Connection, "sftp", refused)
    s = sshd_server
    src = open_source(s.host, s.port, "root", s.client_key, s.known_hosts)
    try:
        assert isinstance(src, ExecSource)
        assert src.scan_many([(b"/nonexistent-maildir", {})])[0] is not None
    finally:
        src.close()


def test_asyncssh_is_loaded_without_x509():
    """Start-up: X.509 support (all of cryptography.x509, and pyOpenSSL, which is not even a dependency)
    is never needed against an OpenSSH server, and is not imported; nor is it left blocked."""
    import subprocess
    import sys

    code = ("import sys, maildirsync.ssh, asyncssh.public_key as pk; "
            "print('cryptography.x509' in sys.modules, pk._x509_available, "
            "sys.modules.get('asyncssh.crypto.x509', 'absent'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "absent"]

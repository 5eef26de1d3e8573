"""The connection cut in the middle of a fetch: either the transfer resumes on a new connection and
every byte is right, or it fails loudly; a file never ends short and looks complete."""

from __future__ import annotations

import os

import pytest

from maildirsync.lab.sshd import kill_sessions, start_sshd
from maildirsync.ssh import ConnectionLostError, open_source
from maildirsync.transport import SourceError

BIG = 12 * 1024 * 1024  # above the 8 MiB pipe: the producer is mid-file when the consumer pauses


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "Maildir"
    (root / "cur").mkdir(parents=True)
    files = {}
    for i in range(3):
        files[f"cur/{i}.big.host:2,S".encode()] = os.urandom(BIG + i)
    for i in range(20):
        files[f"cur/{i}.small.host:2,S".encode()] = os.urandom(1000 + i)
    for rel, data in files.items():
        (root / rel.decode()).write_bytes(data)
    return bytes(root), files


@pytest.fixture
def server(tmp_path):
    with start_sshd(tmp_path / "sshd") as s:
        yield s


@pytest.mark.parametrize("transport", ["auto", "sftp"])
def test_sessions_killed_mid_fetch_reconnects_and_resumes(server, tree, transport):
    root, files = tree
    src = open_source(server.host, server.port, "root", server.client_key, server.known_hosts,
                      transport=transport, retry_delay=0.1)
    try:
        got = {}
        for n, f in enumerate(src.fetch(root, list(files))):
            assert f.error is None
            got[f.rel] = b"".join(f.chunks)
            if n == 0:
                assert kill_sessions(server) >= 1  # the listener lives on: reconnecting works
        assert got == files  # resumed in the middle of a big file, byte-exact
        assert src.c.reconnects >= 1
        assert src.scan(root, {}).entries  # and the source is usable afterwards
    finally:
        src.close()


@pytest.mark.parametrize("transport", ["auto", "sftp"])
def test_server_gone_mid_fetch_fails_and_nothing_short_is_complete(server, tree, transport):
    root, files = tree
    src = open_source(server.host, server.port, "root", server.client_key, server.known_hosts,
                      transport=transport, retries=2, retry_delay=0.05, connect_timeout=5)
    complete = {}
    try:
        with pytest.raises(SourceError) as e:
            for n, f in enumerate(src.fetch(root, list(files))):
                data = b"".join(f.chunks)  # raises for the file cut off
                complete[f.rel] = data
                if n == 0:
                    server.crash()
        assert isinstance(e.value, ConnectionLostError)
        assert "re-run maildirsync" in str(e.value)
        assert 1 <= len(complete) < len(files)
        for rel, data in complete.items():
            assert data == files[rel], rel
        # Later calls fail the same way, quickly, rather than hang.
        with pytest.raises(SourceError):
            src.scan(root, {})
    finally:
        src.close()

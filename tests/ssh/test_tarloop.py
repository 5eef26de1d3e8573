"""The shells kept open on the source for one tar after another (ssh/tarloop.py), against OpenSSH: many
fetches share a few sessions, every name reaches tar as it is and runs nothing, and a shell that fails or
is left in the middle of a stream is never used again."""

from __future__ import annotations

import os

import pytest

from maildirsync.lab.sshd import _descendants, start_sshd
from maildirsync.ssh import open_source
from maildirsync.transport import SourceError


@pytest.fixture
def server(tmp_path):
    with start_sshd(tmp_path / "sshd") as s:
        yield s


@pytest.fixture
def src(server):
    s = open_source(server.host, server.port, "root", server.client_key, server.known_hosts, retry_delay=0.1)
    assert s.transport == "exec"
    try:
        yield s
    finally:
        s.close()


def maildir(root, files: dict[bytes, bytes]) -> bytes:
    r = bytes(root)
    for rel, data in files.items():
        os.makedirs(os.path.dirname(r + b"/" + rel), exist_ok=True)
        with open(r + b"/" + rel, "wb") as f:
            f.write(data)
    return r


def fetch_all(src, root: bytes, rels) -> dict:
    return {f.rel: (b"".join(f.chunks) if f.error is None else None) for f in src.fetch(root, list(rels))}


def loop_shells(server) -> list[int]:
    """The loop shells on the source: ``sh -s`` processes serving this server's connections."""
    out = []
    for pid in _descendants(server.proc.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().split(b"\0")[:2] == [b"sh", b"-s"]:
                    out.append(pid)
        except OSError:
            pass
    return out


def test_many_fetches_share_a_few_shells(src, server, tmp_path):
    for u in range(8):
        files = {f"cur/{u}.{i}.host:2,S".encode(): os.urandom(100 + 37 * i) for i in range(5)}
        root = maildir(tmp_path / f"u{u}" / "Maildir", files)
        assert fetch_all(src, root, files) == files
    assert 1 <= src.loops.count <= 2
    assert len(loop_shells(server)) == src.loops.count  # the shells live on between fetches


HOSTILE = [
    b"cur/it's:2,S",
    b"cur/$(touch PWNED):2,S",
    b"cur/`touch PWNED`:2,S",
    b"cur/semi;colon & amp | pipe > gt < lt:2,S",
    b'cur/"double" \\back\\:2,S',
    b"cur/line\nbreak:2,S",
    b"cur/fake\nmaildirsync-end-0011223344556677 0\n:2,S",  # the trailer's form, without the run's tag
    b"cur/\xff\xfe not utf-8:2,S",
    b"cur/-looks-like-an-option",
    b"cur/ends with newline\n",
    b"cur/tab\tand\rcr:2,S",
]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_a_name_reaches_tar_as_it_is_and_runs_nothing(src, tmp_path, name):
    files = {name: b"hostile\n", b"cur/plain:2,S": b"plain\n"}
    root = maildir(tmp_path / "Maildir", files)
    for _ in range(2):  # the second through the same shell: the first left it in step
        assert fetch_all(src, root, files) == files
    # tar unquotes the backslashes of its arguments: such a name goes through a tar of its own
    assert src.loops.count == len(src.loops.idle) == (0 if b"\\" in name else 1)
    assert not list(tmp_path.rglob("PWNED")) and not os.path.exists("/PWNED") and not os.path.exists("/root/PWNED")


def test_a_missing_root_fails_that_fetch_and_the_shell_serves_the_next(src, tmp_path):
    files = {b"cur/a:2,S": b"a\n"}
    root = maildir(tmp_path / "Maildir", files)
    assert fetch_all(src, root, files) == files
    with pytest.raises(SourceError, match="cannot read"):
        fetch_all(src, bytes(tmp_path / "gone"), files)
    assert fetch_all(src, root, files) == files
    assert src.loops.count == 1


def test_a_fetch_left_midway_never_gives_its_shell_to_the_next(src, server, tmp_path):
    files = {b"cur/big:2,S": os.urandom(6 << 20), b"cur/small:2,S": b"small\n"}
    root = maildir(tmp_path / "Maildir", files)
    it = src.fetch(root, list(files))
    assert next(iter(next(it).chunks))
    it.close()  # the rest of that stream is never read: the shell is out of step
    assert fetch_all(src, root, files) == files
    assert src.loops.count <= 2


def test_a_dead_shell_is_replaced_and_the_fetch_completes(src, server, tmp_path):
    files = {f"cur/{i}:2,S".encode(): os.urandom(5000 + i) for i in range(10)}
    root = maildir(tmp_path / "Maildir", files)
    assert fetch_all(src, root, files) == files
    (pid,) = loop_shells(server)
    os.kill(pid, 9)  # the session's shell dies; the connection lives on
    assert fetch_all(src, root, files) == files
    assert fetch_all(src, root, files) == files
    assert src.c.reconnects == 0

"""One behaviour for every Source: LocalSource, SftpSource (in-process asyncssh server and OpenSSH),
ExecSource (OpenSSH). Each test builds a Maildir on this host and reads it through ``any_source``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from maildirsync.transport import DIR, FILE, LINK, RawEntry, SourceError, moved_dirs
from tests.sshfixtures import (  # noqa: F401  (fixtures)
    any_source,
    inprocess_server,
    sshd_server,
)

T0 = 1_600_000_000_123_456_789  # a fractional mtime: SFTP v3 sees 1_600_000_000 s
WEIRD = b".Sent/cur/name with space\nnewline \xff\xfe:2,S"
LONG = b".Sent/cur/" + b"1600000000.M1P2.a-host-name-that-is-long," + b"x" * 120 + b":2,S"
BIG = b".Sent/cur/1600000002.big.host,S=3145851:2,RS"

FILES = {
    b"cur/1600000000.a.host:2,S": b"hello\n",
    b"new/1600000001.b.host": b"",
    BIG: os.urandom(3 * 1024 * 1024 + 123),
    WEIRD: b"weird name\n",
    LONG: b"long name\n",
    b".Sent/maildirfolder": b"",
    b".Sent/cur/sub/inner": b"never listed: below cur/sub",
    b"dovecot-uidlist": b"3 V1600000000 N3\n",
    b"courierimapkeywords/x": b"never listed: not a Maildir dir",
    b"tmp/1600000003.t.host": b"never listed: in tmp",
    b".Sent/tmp/1600000004.t.host": b"never listed: in tmp",
    # Dovecot's index files: never listed from a source, wherever they are and whatever they are.
    b"dovecot.index.log": b"never listed",
    b"dovecot.list.index": b"never listed",
    b".Sent/dovecot.index.cache": b"never listed",
    b"dovecot.index.d/x": b"never listed: in a directory named like an index",
}
UNLISTED = {b"dovecot.index.log", b"dovecot.list.index", b".Sent/dovecot.index.cache", b"dovecot.index.d/x",
            b"dovecot.index.d"}
HIDDEN = {b".Sent/cur/sub/inner", b"courierimapkeywords/x", b"tmp/1600000003.t.host", b".Sent/tmp/1600000004.t.host",
          *UNLISTED}
LINKS = {b"cur/1600000005.link:2,S": b"/etc/passwd", b".Link": b"/etc"}
DIRS = [b"cur", b"new", b"tmp", b".Sent", b".Sent/cur", b".Sent/new", b".Sent/tmp", b".Sent/cur/sub",
        b".Archive.2019", b".Archive.2019/cur", b".Archive.2019/new", b"courierimapkeywords", b"dovecot.index.d"]


def build(root: Path) -> dict[bytes, tuple[str, int, int]]:
    """The Maildir above, with set mtimes; returns what a scan must report: rel -> (kind, size, mtime)."""
    r = bytes(root)
    for d in DIRS:
        os.makedirs(r + b"/" + d, exist_ok=True)
    expect = {}
    for i, (rel, data) in enumerate(sorted(FILES.items())):
        with open(r + b"/" + rel, "wb") as f:
            f.write(data)
        os.utime(r + b"/" + rel, ns=(T0 + i * 10**9, T0 + i * 10**9))
        if rel not in HIDDEN:
            expect[rel] = (FILE, len(data), T0 + i * 10**9)
    for rel, target in LINKS.items():
        os.symlink(target, r + b"/" + rel)
        os.utime(r + b"/" + rel, ns=(T0, T0), follow_symlinks=False)
        expect[rel] = (LINK, len(target), T0)
    for i, d in enumerate(sorted(DIRS, key=len, reverse=True)):  # children first: parents keep their mtime
        os.utime(r + b"/" + d, ns=(T0 + i, T0 + i))
        if d not in HIDDEN:
            expect[d] = (DIR, os.lstat(r + b"/" + d).st_size, T0 + i)
    return expect


def same_mtime(src, got: int, want: int) -> bool:
    # SFTP v3 has whole seconds; asyncssh's server may negotiate a version with nanoseconds.
    return got == want or (src.kind.endswith("sftp") and got == want // 10**9 * 10**9)


def test_scan_shape(any_source, tmp_path):
    expect = build(tmp_path / "Maildir")
    scan = any_source.scan(bytes(tmp_path / "Maildir"), {})
    got = {e.rel: (e.kind, e.size, e.mtime_ns) for e in scan.entries}
    assert len(got) == len(scan.entries), "an entry was listed twice"
    assert set(got) == set(expect)
    for rel, (kind, size, mtime) in expect.items():
        assert got[rel][:2] == (kind, size), rel
        assert same_mtime(any_source, got[rel][2], mtime), rel
    assert scan.errors == [] and scan.unchanged == set()
    if any_source.kind in ("local", "sshd-exec"):
        assert scan.now_ns is not None and scan.now_ns > T0
    else:
        assert scan.now_ns is None


def test_unchanged_dirs_are_not_listed(any_source, tmp_path):
    build(tmp_path / "Maildir")
    root = bytes(tmp_path / "Maildir")
    first = {e.rel: e.mtime_ns for e in any_source.scan(root, {}).entries}
    known = {b"cur": first[b"cur"], b".Sent/cur": first[b".Sent/cur"], b"new": first[b"new"] + 10**9}
    scan = any_source.scan(root, known)
    assert scan.unchanged == {b"cur", b".Sent/cur"}
    rels = {e.rel for e in scan.entries}
    assert b"cur" in rels and b".Sent/cur" in rels  # the directories themselves are still reported
    assert not any(r.startswith((b"cur/", b".Sent/cur/")) for r in rels)
    assert b"new/1600000001.b.host" in rels  # its known mtime differs: listed


def test_unreadable_folder_is_an_error_not_a_failure(any_source, tmp_path):
    build(tmp_path / "Maildir")
    denied = tmp_path / "Maildir" / ".Denied"
    (denied / "cur").mkdir(parents=True)
    denied.chmod(0)
    try:
        scan = any_source.scan(bytes(tmp_path / "Maildir"), {})
    finally:
        denied.chmod(0o755)
    assert [e.split(":")[0] for e in scan.errors] == [".Denied"]
    assert "Permission denied" in scan.errors[0]
    assert {e.rel for e in scan.entries} >= {b".Denied", b".Sent/cur", b"cur/1600000000.a.host:2,S"}


@pytest.mark.parametrize("root", [b"/nonexistent/Maildir", b"FILE"])
def test_missing_root_raises(any_source, tmp_path, root):
    if root == b"FILE":
        (tmp_path / "file").write_text("x")
        root = bytes(tmp_path / "file")
    with pytest.raises(SourceError):
        any_source.scan(root, {})
    assert any_source.exists(root) is False


def test_exists(any_source, tmp_path):
    build(tmp_path / "Maildir")
    assert any_source.exists(bytes(tmp_path / "Maildir"))


def test_fetch_bytes_in_order_with_a_vanished_file(any_source, tmp_path):
    build(tmp_path / "Maildir")
    root = bytes(tmp_path / "Maildir")
    want = [b"cur/1600000000.a.host:2,S", b"cur/gone:2,S", BIG, b"new/1600000001.b.host", WEIRD, LONG]
    seen = []
    for f in any_source.fetch(root, want):
        try:
            data = b"".join(f.chunks)
        except OSError:
            data = None
        seen.append((f.rel, data if f.error is None else None))
    assert [r for r, _ in seen] == want
    for rel, data in seen:
        assert data == (None if rel == b"cur/gone:2,S" else FILES[rel]), rel


@pytest.mark.parametrize("n", [300, 3000])  # over SSH: through a loop's command line, and too many for one
def test_fetch_many_small_files(any_source, tmp_path, n):
    root = tmp_path / "Maildir"
    (root / "cur").mkdir(parents=True)
    files = {f"cur/{i}.m{i}.host:2,S".encode(): os.urandom(i * 37 % 5000) for i in range(n)}
    for rel, data in files.items():
        (root / rel.decode()).write_bytes(data)
    got = {f.rel: b"".join(f.chunks) for f in any_source.fetch(bytes(root), list(files))}
    assert got == files


def test_consumer_may_stop_early(any_source, tmp_path):
    build(tmp_path / "Maildir")
    root = bytes(tmp_path / "Maildir")
    it = any_source.fetch(root, [BIG, b"cur/1600000000.a.host:2,S"])
    first = next(it)
    assert next(iter(first.chunks))  # read one chunk of the big file, then walk away
    it.close()
    # The source is still usable afterwards.
    assert [b"".join(f.chunks) for f in any_source.fetch(root, [b"cur/1600000000.a.host:2,S"])] == [b"hello\n"]


def test_read(any_source, tmp_path):
    build(tmp_path / "Maildir")
    root = bytes(tmp_path / "Maildir")
    assert any_source.read(root, b"dovecot-uidlist") == FILES[b"dovecot-uidlist"]
    assert any_source.read(root, b".Sent/maildirfolder") == b""
    assert any_source.read(root, b"subscriptions") is None


def test_threads_share_one_source(any_source, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    build(tmp_path / "Maildir")
    root = bytes(tmp_path / "Maildir")

    def one(i):
        scan = any_source.scan(root, {})
        data = [b"".join(f.chunks) for f in any_source.fetch(root, [BIG, WEIRD])]
        return len(scan.entries), data == [FILES[BIG], FILES[WEIRD]]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    assert len(set(results)) == 1 and results[0][1]


@pytest.mark.parametrize(
    "rel, kind, known, read",
    [
        (b"cur", DIR, {}, True),  # never stamped: read
        (b"cur", DIR, {b"cur": 5}, False),  # as the last run left it
        (b"new", DIR, {b"new": 4}, True),  # moved since
        (b".Sent/cur", DIR, {b".Sent/cur": 5}, False),
        (b".Sent/new", DIR, {}, True),
        (b"tmp", DIR, {}, False),  # never a message directory of ours
        (b".Sent/tmp", DIR, {}, False),
        (b"cur", FILE, {}, False),  # a file named cur is not a directory to read
        (b"courierimapkeywords/cur", DIR, {}, False),  # below a directory that is not a folder
    ],
)
def test_moved_dirs_is_the_one_rule_of_what_a_second_pass_reads(rel, kind, known, read):
    unchanged: set = set()
    got = moved_dirs([RawEntry(rel, kind, 4096, 5)], known, unchanged)
    assert [e.rel for e in got] == ([rel] if read else [])
    assert unchanged == ({rel} if known.get(rel) == 5 and kind == DIR and not read else set())

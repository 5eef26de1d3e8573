"""The text formats read from the source: find's records, mtimes and errors, shell quoting, tar headers."""

from __future__ import annotations

import io
import subprocess
import tarfile

import pytest

from maildirsync.ssh.errors import ProtocolError
from maildirsync.ssh.execsrc import _parse_finds, parse_find_errors, parse_mtime, parse_top, shq
from maildirsync.transport import RawScan, SourceError, records
from maildirsync.ssh.knownhosts import _host_matches
from maildirsync.ssh.tarstream import parse_header, parse_pax


@pytest.mark.parametrize("text, ns", [
    (b"1700000000", 1_700_000_000_000_000_000),  # GNU find 4.2: whole seconds
    (b"1700000000.0000000000", 1_700_000_000_000_000_000),
    (b"1700000000.1234567890", 1_700_000_000_123_456_789),  # 10 digits: the 10th is not a ns
    (b"1700000000.999999999", 1_700_000_000_999_999_999),  # a float would round this up
    (b"1700000000.5", 1_700_000_000_500_000_000),
    (b"-1.5", -1_500_000_000),
])
def test_parse_mtime(text, ns):
    assert parse_mtime(text) == ns


def test_parse_top_names_with_spaces_newlines_and_8bit():
    got = [parse_top(r) for r in (b"f 12 1700000000.5000000000 /r/./cur/a b\nc\xff:2,S", b"d 4096 1.0 /r/./.Sent",
                                  b"l 3 2 /a/./b/./x")]  # fmt: skip
    assert [(root, e.rel, e.kind, e.size, e.mtime_ns) for root, e in got] == [
        (b"/r", b"cur/a b\nc\xff:2,S", "f", 12, 1_700_000_000_500_000_000),
        (b"/r", b".Sent", "d", 4096, 1_000_000_000), (b"/a/./b", b"x", "l", 3, 2_000_000_000)]


def test_the_listing_stream_splits_into_tops_and_the_records_of_each_cur_and_new():
    """Second pass: each directory's own line, then its entries as records; a directory inside a cur is
    one of its entries (kind d), and the records after it still belong to the cur. Two mailboxes in one
    find: each line goes to the mailbox its path is under."""
    data = (b"/D 1700000000.25\0/R 0\0/d 4096 1.0 /r/./cur\0a b\nc:2,S/12/1700000000.5\0\x01lln/3/2.0\0"
            b"/d 4096 3.0 /r/./cur/sub\0z/1/1.0\0/d 4096 1.0 /r/./.Sent/new\0"
            b"/d 4096 1.0 /s/./.a/./new\0m/5/1.0\0/S 0\0/E \0")
    outs = [RawScan(), RawScan()]
    group = [b"/r/./cur", b"/r/./.Sent/new", b"/s/./.a/./new"]
    assert _parse_finds(b"\0" + data, outs, {b"/r": [0], b"/s/./.a": [1]}, [group], dirs=True) == 1_700_000_000_250_000_000
    out, other = outs
    assert set(out.dirs) == {b"cur", b".Sent/new"} and out.dirs[b".Sent/new"] == b""
    assert set(records(out.dirs[b"cur"])) == {b"a b\nc:2,S/12/1700000000.5", b"\x01lln/3/2.0", b"\x01dsub/4096/3.000000000",
                                                b"z/1/1.0"}
    assert {(e.rel, e.kind) for e in out.entries} >= {(b"cur/a b\nc:2,S", "f"), (b"cur/ln", "l"), (b"cur/sub", "d")}
    assert other.dirs == {b"new": b"m/5/1.0\0"}


@pytest.mark.parametrize("stderr, status, want", [
    (b"find: '/r/./.X/cur': Permission denied", 1, ([".X/cur: Permission denied"], [])),
    (b"find: `/s/.': No such file or directory", 1, ([], SourceError)),  # findutils 4.4
    (b"find: /s/.: Permission denied", 1, ([], SourceError)),  # findutils 4.2: no quotes
    (b"find: something odd", 1, (["find: something odd"], ["find: something odd"])),  # both: no deletes
    (b"", 2, (["find exited with status 2: "], ["find exited with status 2: "])),
    (b"", 0, ([], [])),
], ids=["a folder of one mailbox", "a missing root", "an unreadable root", "no path", "a status alone", "none"])
def test_find_errors_go_to_the_mailbox_they_name(stderr, status, want):
    data = b"/D 1.0\0/R 0\0/d 4096 1.0 /r/./cur\0/S %d\0/E %s\0" % (status, stderr)
    outs = [RawScan(), RawScan()]
    _parse_finds(b"\0" + data, outs, {b"/r": [0], b"/s": [1]}, [[b"/r/.", b"/s/."]], dirs=False)
    for out, expect in zip(outs, want):
        if expect is SourceError:
            assert isinstance(out, SourceError) and "/s" in str(out)
        else:
            assert out.errors == expect


@pytest.mark.parametrize("line, want", [
    (b"find: './.X/cur': Permission denied", [(b".X/cur", "Permission denied")]),  # findutils 4.6+
    (b"find: ./.X/cur: Permission denied", [(b".X/cur", "Permission denied")]),  # findutils 4.2
    (b"find: `./.X': No such file or directory", [(b".X", "No such file or directory")]),  # 4.4
    (b"find: '.': Permission denied", [(b".", "Permission denied")]),
    (b"find: something odd", [(None, "find: something odd")]),  # still an error: no deletes
    (b"bash: warning: setlocale: LC_ALL: cannot change locale", []),  # rc-file noise, not find's
])
def test_parse_find_errors(line, want):
    assert parse_find_errors(line + b"\n") == want


@pytest.mark.parametrize("word", [b"/home/e-smith/files/users/bob/Maildir", b"it's", b"a b$c`d\"e\\", b"caf\xe9", b"-x"])
def test_shq_round_trips_through_sh(word):
    out = subprocess.run(["sh", "-c", f"printf %s {shq(word)}"], capture_output=True, check=True).stdout
    assert out == word


@pytest.mark.parametrize("patterns, name, hit", [
    ("[127.0.0.1]:2222", "[127.0.0.1]:2222", True),  # brackets are literal, not a glob class
    ("[127.0.0.1]:2222", "1", False),
    ("10.0.0.*,!10.0.0.5", "10.0.0.7", True),
    ("10.0.0.*,!10.0.0.5", "10.0.0.5", False),
    ("host?", "hostA", True),
])
def test_known_hosts_patterns(patterns, name, hit):
    assert _host_matches(patterns, name) is hit


def _header(name: str, size: int, fmt=tarfile.GNU_FORMAT) -> list[bytes]:
    ti = tarfile.TarInfo(name)
    ti.size = size
    data = ti.tobuf(format=fmt, encoding="utf-8", errors="surrogateescape")
    return [data[i:i + 512] for i in range(0, len(data), 512)]


def test_tar_header_plain_and_checksum():
    (h,) = _header("./cur/1.a:2,S", 5)
    m = parse_header(h)
    assert (m.name, m.size, m.type) == (b"./cur/1.a:2,S", 5, b"0")
    with pytest.raises(ProtocolError):
        parse_header(h[:10] + b"X" + h[11:])
    assert parse_header(bytes(512)) is None


def test_tar_pax_records():
    assert parse_pax(b"20 path=./cur/a b c\n13 size=1234\n") == {b"path": b"./cur/a b c", b"size": b"1234"}


def test_tar_stream_from_python_tarfile_with_long_name():
    import asyncio

    from maildirsync.ssh.tarstream import BufferedReader, next_member

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in (("./" + "n" * 150, b"long"), ("./short", b"")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))

    class Stream:
        def __init__(self, b):
            self.b = io.BytesIO(b)

        async def read(self, n):
            return self.b.read(min(n, 700))  # odd sizes: headers straddle reads

    async def members():
        r = BufferedReader(Stream(buf.getvalue()))
        out = []
        while (m := await next_member(r)) is not None:
            await r.fill((m.size + 511) // 512 * 512)
            out.append((m.name, r.take(m.size)))
            r.skip((m.size + 511) // 512 * 512 - m.size)
        return out

    assert asyncio.run(members()) == [(b"./" + b"n" * 150, b"long"), (b"./short", b"")]


@pytest.mark.parametrize("missing", [(), ("ionice",), ("nice",), ("gzip",), ("nice", "ionice", "gzip")],
                         ids=["all there", "no ionice", "no nice", "no gzip", "none"])  # fmt: skip
def test_the_probe_finds_each_tool_there_and_no_other(tmp_path, missing):
    """The probe asks for nice, ionice and gzip in one chain, and each alone only where the chain fails:
    it must say exactly which are there."""
    import shutil
    import subprocess

    from maildirsync.ssh.execsrc import PROBE, parse_probe

    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("sh", "find", "tar", "gzip", "nice", "ionice", "true", "echo"):
        where = shutil.which(tool)
        if where and tool not in missing:
            (bin_ / tool).symlink_to(where)
    p = subprocess.run([str(bin_ / "sh"), "-c", PROBE], capture_output=True, env={"PATH": str(bin_)})
    tools = parse_probe(p.returncode, p.stdout)
    assert tools is not None
    assert (tools.gzip, tools.nice, tools.ionice) == tuple(t not in missing for t in ("gzip", "nice", "ionice"))

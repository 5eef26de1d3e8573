"""A mailbox as the last run left it on both sides is answered from its signature (quiet.py), without
decoding a folder state or planning; and the signature never changes what a run does: whatever changed
on either side since, a run with it does exactly what a run without it does."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import pytest

from maildirsync import engine, local, ssh, views
from maildirsync.index import Index
from maildirsync.lab.corpus import CorpusSpec, generate
from maildirsync.ssh.execsrc import ExecSource
from mdtools import T0, put, snapshot
from sshfixtures import sshd_server  # noqa: F401  (fixture)


def age(root: Path) -> None:
    """Directory stamps are trusted once older than the margin."""
    for d in [root, *root.rglob("*")]:
        if d.is_dir() and not d.is_symlink():
            os.utime(d, ns=(T0 * 10**9, T0 * 10**9))


def key_of(src: Path, dst: Path) -> str:
    return local.jobs(src, dst, [], create=True)[1]


def sync(src: Path, dst: Path, state: Path, source=None) -> engine.RunResult:
    jobs, key, _ = local.jobs(src, dst, [], create=True)
    ro = engine.RunOptions(plan=engine.Options(), owner=None)
    return engine.run(jobs, source or local.LocalSource(), engine.state_dir_for(state, key), ro)


def statuses(state: Path, key: str) -> dict:
    idx, _ = engine.state_dir_for(state, key).open_index(readonly=True)
    try:
        return {u.decode(): s for u, s in idx.all_status().items()}
    finally:
        idx.close()


@pytest.fixture
def settled(tmp_path):
    """Three mailboxes synced, both sides aged and synced again: every one has its signature."""
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=3, folders=3, messages=12, seed=5, layout="plain"), processes=1)
    age(src)
    sync(src, dst, state)
    age(dst)
    sync(src, dst, state)
    st = statuses(state, key_of(src, dst))
    assert len(st) == 3 and all(isinstance(s.get("quiet"), list) for s in st.values())
    return src, dst, state


def test_an_unchanged_mailbox_is_answered_from_its_signature(settled, monkeypatch):
    src, dst, state = settled
    planned = []
    real = engine._folder_work
    monkeypatch.setattr(engine, "_folder_work", lambda *a: planned.append(a[0].user) or real(*a))
    r = sync(src, dst, state)
    assert [u.status for u in r.users] == ["ok"] * 3
    assert planned == []
    # ... and the run keeps it for the next one.
    assert all(isinstance(s.get("quiet"), list) for s in statuses(state, key_of(src, dst)).values())
    # One mailbox changed: it alone is planned.
    put(src / "arossi" / "Maildir" / "new", "1700000000.M1P1.host")
    r = sync(src, dst, state)
    assert planned == ["arossi"] and sum(u.counts()["new"] for u in r.users) == 1


# What the source's Dovecot writes whenever a client opens a folder, mail unchanged.
DOVECOT_WRITES = {
    "dovecot.index.log": lambda box: _append(box / "dovecot.index.log", b"opened"),
    "a folder's dovecot.index.cache": lambda box: put(sorted(box.glob(".*"))[0], "dovecot.index.cache", b"cache"),
    "dovecot.list.index": lambda box: put(box, "dovecot.list.index", b"list"),
}


@pytest.mark.parametrize("write", list(DOVECOT_WRITES))
def test_the_source_dovecot_opening_a_folder_leaves_the_mailbox_quiet(settled, monkeypatch, write):
    """A live source's Dovecot rewrites its index files as clients read mail: nothing a run copies or
    uses, so the mailbox is still answered from its signature (they are not even listed)."""
    src, dst, state = settled
    planned = []
    real = engine._folder_work
    monkeypatch.setattr(engine, "_folder_work", lambda *a: planned.append(a[0].user) or real(*a))
    DOVECOT_WRITES[write](src / "arossi" / "Maildir")
    r = sync(src, dst, state)
    assert [u.status for u in r.users] == ["ok"] * 3 and planned == []
    assert not list(dst.rglob("dovecot.index*")) and not list(dst.rglob("dovecot.list.index*"))


def _cur(root: Path) -> Path:
    return root / "arossi" / "Maildir" / "cur"


def _first(d: Path) -> Path:
    return sorted(p for p in d.iterdir() if ":2," in p.name)[0]


def _same_size(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[:-1] + (b"x" if data[-1:] != b"x" else b"y"))


def _append(p: Path, line: bytes) -> None:
    with p.open("ab") as f:
        f.write(line)


CHANGES = {
    "source: a new message": lambda s, d: put(s / "arossi" / "Maildir" / "new", "1700000001.M2P2.host"),
    "source: a flag": lambda s, d: _first(_cur(s)).rename(_cur(s) / (_first(_cur(s)).name.split(":2,")[0] + ":2,FS")),
    "source: a message deleted": lambda s, d: _first(_cur(s)).unlink(),
    "source: a control file rewritten, same size": lambda s, d: _same_size(s / "arossi" / "Maildir" / "subscriptions"),
    "source: dovecot-uidlist appended": lambda s, d: _append(s / "arossi" / "Maildir" / "dovecot-uidlist", b"4242 :1700000009.M9P9.host\n"),
    "source: a folder added": lambda s, d: [(s / "arossi" / "Maildir" / ".New" / x).mkdir(parents=True) for x in ("cur", "new", "tmp")],
    "source: a folder removed": lambda s, d: shutil.rmtree(sorted((s / "arossi" / "Maildir").glob(".*"))[0]),
    "destination: a message deleted": lambda s, d: _first(_cur(d)).unlink(),
    "destination: a flag": lambda s, d: _first(_cur(d)).rename(_cur(d) / (_first(_cur(d)).name.split(":2,")[0] + ":2,T")),
    "destination: dovecot-uidlist rewritten by its Dovecot": lambda s, d: _same_size(d / "arossi" / "Maildir" / "dovecot-uidlist"),
    "destination: dovecot.index written by its Dovecot": lambda s, d: put(d / "arossi" / "Maildir", "dovecot.index", b"idx"),
    "destination: a folder removed": lambda s, d: shutil.rmtree(sorted((d / "arossi" / "Maildir").glob(".*"))[0]),
    "destination: another tree (no maildirsync-id)": lambda s, d: (d / "arossi" / "Maildir" / "maildirsync-id").unlink(),
    "a run of ours cut short there": None,  # its in-flight mark is left
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_signature_never_changes_what_a_run_does(settled, tmp_path, change):
    src, dst, state = settled
    if CHANGES[change] is None:
        mark = engine.state_dir_for(state, key_of(src, dst)).path / "in-flight" / b"arossi".hex()
        mark.parent.mkdir(exist_ok=True)
        mark.touch()
    else:
        CHANGES[change](src, dst)
    # The twin: the same trees and index under other paths, where no signature can match (it holds the
    # roots), so that every folder goes the per-folder way.
    tw = tmp_path / "twin"
    for a in ("src", "dst"):
        shutil.copytree(tmp_path / a, tw / a, symlinks=True)
    shutil.copytree(engine.state_dir_for(state, key_of(src, dst)).path,
                    engine.state_dir_for(tw / "state", key_of(tw / "src", tw / "dst")).path)  # fmt: skip
    mine, theirs = sync(src, dst, state), sync(tw / "src", tw / "dst", tw / "state")

    def said(r):  # the twin's paths said as ours
        return [(u.user, u.status, u.counts(), [w.replace(str(tw), str(tmp_path)) for w in u.warnings]) for u in r.users]

    assert said(mine) == said(theirs)
    assert snapshot(dst) == snapshot(tw / "dst")
    uidlists = sorted(p.relative_to(dst) for p in dst.rglob("dovecot-uidlist"))
    assert uidlists and all((dst / p).read_bytes() == (tw / "dst" / p).read_bytes() for p in uidlists)


def test_the_run_that_writes_leaves_the_signatures(tmp_path):
    """It waits the few milliseconds after its last write that its stamps need to be kept: the run after
    a first sync (or any change) is already a quiet one."""
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=2, folders=2, messages=5, seed=6, layout="plain"), processes=1)
    age(src)
    assert [u.status for u in sync(src, dst, state).users] == ["changed"] * 2
    assert all(isinstance(s.get("quiet"), list) for s in statuses(state, key_of(src, dst)).values())


def test_no_signature_where_a_stamp_is_too_new_to_trust(tmp_path):
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=1, folders=2, messages=5, seed=5, layout="plain"), processes=1)
    age(src)
    sync(src, dst, state)
    # A stamp the kernel's clock has not passed yet, as one made in this very tick: a change now would
    # not move it. (Set ahead, not to "now", which a slow run would find settled by the time it looks.)
    ahead = time.time_ns() + 3600 * 10**9 + 123_457
    os.utime(dst / "admin" / "Maildir" / "cur", ns=(ahead, ahead))
    sync(src, dst, state)
    assert "quiet" not in statuses(state, key_of(src, dst))["admin"]


def test_over_ssh_an_unchanged_mailbox_costs_its_first_pass_only(sshd_server, settled, monkeypatch):  # noqa: F811
    src, dst, state = settled
    source = ssh.open_source(sshd_server.host, sshd_server.port, "root", sshd_server.client_key,
                             sshd_server.known_hosts)  # fmt: skip
    try:
        assert source.transport == "exec"

        def over_ssh():
            jobs, key, _ = local.jobs(src, dst, [], create=True)
            return engine.run(jobs, source, engine.state_dir_for(state, key), engine.RunOptions(owner=None, jobs=2))

        over_ssh()  # the signatures of a run over SSH (the same listing as a local one, read another way)
        decoded, finds = [], []
        real_folders, real_finds = Index.user_folders, ExecSource._finds
        monkeypatch.setattr(Index, "user_folders", lambda self, u: decoded.append(u) or real_folders(self, u))

        async def counted(self, paths, expr, *a, **k):
            finds.append(len(paths))
            return await real_finds(self, paths, expr, *a, **k)

        monkeypatch.setattr(ExecSource, "_finds", counted)
        r = over_ssh()
        assert [u.status for u in r.users] == ["ok"] * 3
        assert decoded == [] and finds == [3]  # the stamps of the three, in one find; nothing more
        put(src / "arossi" / "Maildir" / "new", "1700000002.M3P3.host")
        r = over_ssh()
        assert sum(u.counts()["new"] for u in r.users) == 1 and decoded == [b"arossi"]
        assert snapshot(dst) == snapshot(src)
    finally:
        source.close()


class _WholeSeconds(local.LocalSource):
    """A source whose clock has whole seconds (ext3, SME 8): its listing's mtimes and its now."""

    def scan(self, root, known):
        raw = super().scan(root, known)
        raw.tops = [dataclasses.replace(e, mtime_ns=e.mtime_ns - e.mtime_ns % 10**9) for e in raw.tops]
        raw.now_ns = time.time_ns() // 10**9 * 10**9
        return raw


@pytest.mark.parametrize(
    "whole, age_ns, kept",
    [
        (True, 0, False),  # changed this second: another change in it would not move the stamp
        (True, 3 * 10**9, True),
        (False, 100_000_000, True),  # nanoseconds: a tick is all a stamp needs to be older than
    ],
    ids=["whole seconds, this second", "whole seconds, 3 s old", "ns, 100 ms old"],
)
def test_a_source_list_s_stamp_is_kept_once_older_than_its_clock_tells_apart(tmp_path, whole, age_ns, kept):
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=1, folders=1, messages=3, seed=6, layout="plain"), processes=1)
    age(src)
    lst = src / "admin" / "Maildir" / "dovecot-uidlist"
    when = time.time_ns() - age_ns
    os.utime(lst, ns=(when, when))
    sync(src, dst, state, source=_WholeSeconds() if whole else None)
    idx, _ = engine.state_dir_for(state, key_of(src, dst)).open_index(readonly=True)
    try:
        ctl = idx.user_folders(b"admin")[b""].controls[b"dovecot-uidlist"]
    finally:
        idx.close()
    assert (ctl.src_size == lst.stat().st_size) is kept and (ctl.src_size == -1) is not kept


def _own(d: Path, sub: str) -> None:
    """A message the destination's own Dovecot delivered into ``sub``, its directory's stamp settled."""
    box = d / "arossi" / "Maildir"
    put(box / sub, "1700000050.M50P50.dsthost:2," if sub == "cur" else "1700000050.M50P50.dsthost")
    os.utime(box / sub, ns=((T0 + 5) * 10**9, (T0 + 5) * 10**9))


@pytest.mark.parametrize(
    "source_change, destination_own",
    [
        ("source: a new message", None),  # the run writes in new/ alone: cur/ is as the last run left it
        ("source: a new message", "cur"),  # ... and the destination's own mail arrived in cur/ meanwhile
        ("source: a flag", "new"),  # the run renames in cur/; the destination received in new/
        ("source: a message deleted", "new"),
    ],
)
def test_a_folder_written_in_is_left_with_the_destination_names_as_they_are(settled, source_change, destination_own):
    """What a run leaves for the next to compare with: the destination's names of both subdirs as they
    are after it, whether it wrote in the subdir or not, and whatever else wrote there since the last run."""
    src, dst, state = settled
    CHANGES[source_change](src, dst)
    if destination_own:
        _own(dst, destination_own)
    r = sync(src, dst, state)
    assert [u.status for u in r.users if u.user == "arossi"] == ["changed"]
    idx, _ = engine.state_dir_for(state, key_of(src, dst)).open_index(readonly=True)
    try:
        left = idx.folder_lists(b"arossi", b"")
    finally:
        idx.close()
    for sub in ("cur", "new"):
        names = set(os.listdir(dst / "arossi" / "Maildir" / sub))
        assert set(left[views.tag(views.DST, sub.encode())].split(b"\0")) - {b""} == {os.fsencode(n) for n in names}

"""Local-to-local sync end to end: the behaviours issue 2 asks for, on real files and a real index."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from maildirsync import engine, executor, local
from maildirsync.index import StateDir
from maildirsync.lab.corpus import CorpusSpec, generate
from maildirsync.lab.scenarios import apply as mutate
from mdtools import T0, CountingSource, cli, cli_as, messages, mkmaildir, put, raw_bytes, snapshot


def sync(src: Path, dst: Path, state: Path, source=None, **opts) -> engine.RunResult:
    jobs, key, _notes = local.jobs(src, dst, [], create=True)
    ro = engine.RunOptions(
        dry_run=opts.pop("dry_run", False), plan=engine.Options(**opts), owner=None, jobs=opts.pop("jobs", 1)
    )
    # The same index the CLI uses for this pair, so in-process and CLI runs can be mixed.
    return engine.run(jobs, source or local.LocalSource(), engine.state_dir_for(state, key), ro)


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "src"
    generate(src, CorpusSpec(users=3, folders=3, messages=15, seed=7, layout="plain"), processes=1)
    return src


def test_full_sync_makes_destination_equal_to_source(corpus, tmp_path):
    dst, state = tmp_path / "dst", tmp_path / "state"
    # A symlink in the source is never followed nor recreated.
    os.symlink("/etc/passwd", corpus / "admin" / "Maildir" / "cur" / "evil:2,S")
    r = sync(corpus, dst, state)
    # admin warns of the symlink, which is not a message: a warning, counted, not a failure (issue 12)
    assert [u.status for u in r.users] == ["changed"] * 3
    assert "symbolic link" in " ".join(r.users[0].warnings) and r.users[0].counts()["skipped"] == 1
    os.unlink(corpus / "admin" / "Maildir" / "cur" / "evil:2,S")
    assert snapshot(dst) == snapshot(corpus)
    assert not list(dst.rglob("evil*"))
    # Cache files are never copied, and nothing is left in tmp/.
    assert list(corpus.rglob("dovecot.index*")) and not list(dst.rglob("dovecot.index*"))
    assert not [p for p in dst.rglob("tmp/*")]
    # A second run has nothing to do.
    r2 = sync(corpus, dst, state)
    assert [u.status for u in r2.users] == ["ok"] * 3


def test_flag_changes_are_renames_that_keep_the_inode_and_read_nothing(corpus, tmp_path):
    dst, state = tmp_path / "dst", tmp_path / "state"
    sync(corpus, dst, state)
    before = snapshot(dst, with_inodes=True)
    mutate("flags", corpus, "plain", seed=3)
    src = CountingSource()
    r = sync(corpus, dst, state, source=src)
    renamed = sum(u.counts()["renamed"] for u in r.users)
    assert renamed > 0
    assert src.bytes == 0 and src.fetched == []
    assert snapshot(dst) == snapshot(corpus)
    inodes_before = {v[3] for v in before.values()}
    after = snapshot(dst, with_inodes=True)
    moved = [k for k in after if k not in before and b"/cur/" in b"/" + k]
    assert moved and all(after[k][3] in inodes_before for k in moved)


def test_a_flag_change_whose_new_name_is_taken_fails_alone_and_the_others_are_made(corpus, tmp_path, monkeypatch):
    """Renames go through the executor in one loop per run (executor.rename_group); one refused there is
    that message's failure, with its reason, and neither file is touched; the renames before and after
    it, in its folder and others, are made and counted."""
    dst, state = tmp_path / "dst", tmp_path / "state"
    sync(corpus, dst, state)
    mutate("flags", corpus, "plain", seed=3, fraction=0.5)
    dry = sync(corpus, dst, state, dry_run=True)
    renames = [(u.user, a) for u in dry.users for a in u.plan.actions if a.kind == "rename"]
    assert len(renames) >= 6 and len({a.folder for _, a in renames}) >= 2
    user, taken = renames[len(renames) // 2]
    renames = [a for _, a in renames]
    [old] = [p for p in dst.rglob("*") if os.fsencode(p.name) == taken.old[1]]
    squatter = old.parent.parent / os.fsdecode(taken.dst[0]) / os.fsdecode(taken.dst[1])
    real = executor.rename_noreplace

    def mail_server_first(src, to):
        # The mail server gives the message that name itself, after the listing, before our rename.
        if to == os.fsencode(squatter):
            squatter.write_bytes(b"the mail server's\n")
        real(src, to)

    monkeypatch.setattr(executor, "rename_noreplace", mail_server_first)
    r = sync(corpus, dst, state)
    failed = [(a, why) for u in r.users for a, why in u.outcome.failed]
    assert [(a.key(), "already exists" in why) for a, why in failed] == [(taken.key(), True)]
    assert sum(u.counts()["renamed"] for u in r.users) == len(renames) - 1
    assert squatter.read_bytes() == b"the mail server's\n" and old.exists()
    # The index still knows the message under its old name: the refused rename was not recorded.
    _jobs, key, _notes = local.jobs(corpus, dst, [], create=True)
    ix, _ = engine.state_dir_for(state, key).open_index(readonly=True)
    try:
        rec = ix.get_recs(user.encode(), taken.folder, [taken.base])[taken.base]
    finally:
        ix.close()
    assert (rec.dst_subdir, rec.dst_name) == taken.old
    for a in renames:
        if a is not taken:
            [made] = [p for p in dst.rglob(os.fsdecode(a.dst[1]))]
            assert made.parent.name == os.fsdecode(a.dst[0])


def test_moves_between_folders_are_local(corpus, tmp_path):
    dst, state = tmp_path / "dst", tmp_path / "state"
    sync(corpus, dst, state)
    mutate("moved", corpus, "plain", seed=4)
    src = CountingSource()
    r = sync(corpus, dst, state, source=src)
    assert sum(u.counts()["moved"] for u in r.users) > 0
    assert src.fetched == []
    assert snapshot(dst) == snapshot(corpus)


def test_new_and_deleted_messages(corpus, tmp_path):
    dst, state = tmp_path / "dst", tmp_path / "state"
    sync(corpus, dst, state)
    mutate("new", corpus, "plain", seed=5)
    mutate("deleted", corpus, "plain", seed=6)
    r = sync(corpus, dst, state)
    c = [u.counts() for u in r.users]
    assert sum(x["new"] for x in c) > 0 and sum(x["deleted"] for x in c) > 0
    assert snapshot(dst) == snapshot(corpus)


def two_messages(tmp_path):
    src = mkmaildir(tmp_path / "src", ".Sent")
    put(src, "cur/1000.M1P1.h,S=6:2,S", b"first\n")
    put(src, "cur/1001.M2P1.h,S=7:2,", b"second\n")
    put(src, "cur/1002.M3P1.h,S=6:2,S", b"third\n")
    return src, tmp_path / "dst", tmp_path / "state"


def test_destination_side_changes_win(tmp_path):
    src, dst, state = two_messages(tmp_path)
    sync(src, dst, state)
    # After the MX switch: mail delivered on the destination, a flag changed there, one deleted there.
    put(dst, "new/2000.M9P9.dst,S=5", b"mine\n")
    os.rename(dst / "cur/1000.M1P1.h,S=6:2,S", dst / "cur/1000.M1P1.h,S=6:2,FS")
    os.unlink(dst / "cur/1002.M3P1.h,S=6:2,S")
    # Meanwhile the source marks the first as answered and the second as seen.
    os.rename(src / "cur/1000.M1P1.h,S=6:2,S", src / "cur/1000.M1P1.h,S=6:2,RS")
    os.rename(src / "cur/1001.M2P1.h,S=7:2,", src / "cur/1001.M2P1.h,S=7:2,S")
    for _ in range(2):  # and again: nothing may drift on a repeat
        r = sync(src, dst, state)
        assert r.users[0].status in ("changed", "ok")
    names = {p.name for p in (dst / "cur").iterdir()} | {p.name for p in (dst / "new").iterdir()}
    assert names == {
        "1000.M1P1.h,S=6:2,FRS",  # per-flag merge: F from the destination, R from the source
        "1001.M2P1.h,S=7:2,S",  # source change arrives
        "2000.M9P9.dst,S=5",  # destination-only mail survives
    }  # and 1002, deleted on the destination, is not brought back


def test_other_content_put_under_our_base_on_the_destination_is_never_taken_for_ours(tmp_path):
    """A file by hand under one of our bases, with other content (Dovecot never makes one): a flag change
    on the source must not rename or record it as ours, or the source's later delete would delete it."""
    src, dst, state = two_messages(tmp_path)
    sync(src, dst, state)
    os.unlink(dst / "cur/1000.M1P1.h,S=6:2,S")
    put(dst, "cur/1000.M1P1.h,S=6:2,FS", b"not the same mail\n")
    os.rename(src / "cur/1000.M1P1.h,S=6:2,S", src / "cur/1000.M1P1.h,S=6:2,RS")
    r = sync(src, dst, state)
    assert r.users[0].counts()["conflicts"] == 1, r.users[0].counts()
    assert (dst / "cur/1000.M1P1.h,S=6:2,FS").read_bytes() == b"not the same mail\n"
    assert (dst / "cur/1000.M1P1.h-conflict1,S=6:2,RS").read_bytes() == b"first\n"
    assert sync(src, dst, state).users[0].status == "ok"
    (src / "cur/1000.M1P1.h,S=6:2,RS").unlink()
    sync(src, dst, state, max_delete=100)
    assert (dst / "cur/1000.M1P1.h,S=6:2,FS").read_bytes() == b"not the same mail\n"
    assert not (dst / "cur/1000.M1P1.h-conflict1,S=6:2,RS").exists()  # ours, and gone from the source


def test_destination_only_mail_survives_deletes(tmp_path):
    src, dst, state = two_messages(tmp_path)
    sync(src, dst, state)
    put(dst, "cur/3000.M1P1.dst,S=4:2,S", b"own\n")
    for p in (src / "cur").iterdir():
        p.unlink()
    r = sync(src, dst, state, max_delete=100)
    assert r.users[0].counts()["deleted"] == 3
    assert [p.name for p in (dst / "cur").iterdir()] == ["3000.M1P1.dst,S=4:2,S"]


def test_deletion_guard_deletes_nothing_and_says_so(tmp_path):
    src, dst, state = two_messages(tmp_path)
    sync(src, dst, state)
    for p in list((src / "cur").iterdir())[:2]:
        p.unlink()
    r = sync(src, dst, state)
    assert r.users[0].counts()["deleted"] == 0
    assert any("--max-delete" in w for w in r.users[0].warnings)
    assert len(list((dst / "cur").iterdir())) == 3


def test_dry_run_changes_nothing_and_prints_what_the_real_run_does(corpus, tmp_path):
    dst, state = tmp_path / "dst", tmp_path / "state"
    sync(corpus, dst, state)
    for scenario, seed in (("flags", 1), ("moved", 2), ("new", 3), ("deleted", 4)):
        mutate(scenario, corpus, "plain", seed=seed)
    put(dst / "arossi" / "Maildir", "new/4000.M1P1.dst,S=3", b"me\n")
    before = (raw_bytes(corpus), raw_bytes(dst), raw_bytes(state / os.listdir(state)[0] / "index"))
    dry = cli("sync", corpus, dst, "--state-dir", state, "--owner", "keep", "-n", "--json", "-v")
    assert dry.returncode == 3, dry.stderr  # changes pending
    after = (raw_bytes(corpus), raw_bytes(dst), raw_bytes(state / os.listdir(state)[0] / "index"))
    assert before == after
    real = cli("sync", corpus, dst, "--state-dir", state, "--owner", "keep", "--json", "-v")
    assert real.returncode == 0, real.stdout + real.stderr
    planned = {u["user"]: u["actions"] for u in json.loads(dry.stdout)["users"]}
    done = {u["user"]: u["actions"] for u in json.loads(real.stdout)["users"]}
    assert planned == done
    assert sum(len(v) for v in done.values()) > 0


def test_lost_index_is_rebuilt_by_adopting_without_download(corpus, tmp_path):
    dst, state = tmp_path / "dst", tmp_path / "state"
    sync(corpus, dst, state)
    shutil.rmtree(state)
    src = CountingSource()
    r = sync(corpus, dst, state, source=src)
    assert src.fetched == []
    assert sum(u.counts()["adopted"] for u in r.users) > 0
    assert snapshot(dst) == snapshot(corpus)


def test_truncated_index_is_set_aside_and_rebuilt(corpus, tmp_path):
    dst, state = tmp_path / "dst", tmp_path / "state"
    sync(corpus, dst, state)
    data = next(state.rglob("data.mdb"))
    os.truncate(data, 4096)
    src = CountingSource()
    r = sync(corpus, dst, state, source=src)
    assert src.fetched == []
    assert any("rebuilt" in n for n in r.notes)
    assert snapshot(dst) == snapshot(corpus)


def test_unchanged_directories_are_not_relisted(corpus, tmp_path):
    dst, state = tmp_path / "dst", tmp_path / "state"
    # Directory stamps are trusted only once they are older than the margin: age the source.
    old = T0 * 10**9
    for d in corpus.rglob("*"):
        if d.is_dir():
            os.utime(d, ns=(old, old))
    sync(corpus, dst, state)

    class Spy(local.LocalSource):
        unchanged = 0

        def scan(self, root, known):
            raw = super().scan(root, known)
            Spy.unchanged += len(raw.unchanged)
            return raw

    r = sync(corpus, dst, state, source=Spy())
    assert Spy.unchanged > 0
    assert [u.status for u in r.users] == ["ok"] * 3
    # A change inside a skipped directory bumps its mtime: it is seen.
    mutate("new", corpus, "plain", seed=9)
    r = sync(corpus, dst, state)
    assert sum(u.counts()["new"] for u in r.users) > 0
    assert snapshot(dst) == snapshot(corpus)


def test_second_run_is_refused_naming_the_holder(tmp_path):
    src, dst, state = two_messages(tmp_path)
    jobs, key, _ = local.jobs(src, dst, [], True)
    holder = StateDir(state / key)
    holder.acquire("maildirsync sync (test holder)")
    try:
        p = cli("sync", src, dst, "--state-dir", state)
    finally:
        holder.release()
    assert p.returncode == 4
    assert f"pid {os.getpid()}" in p.stderr and "test holder" in p.stderr
    assert "Traceback" not in p.stderr


def test_owner_and_modes_of_what_we_create(tmp_path):
    src, dst, state = two_messages(tmp_path)
    p = cli("sync", src, dst, "--state-dir", state, "--owner", "65534:65534")
    assert p.returncode == 0, p.stderr
    for path in [dst, *dst.rglob("*")]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (65534, 65534), path
        assert st.st_mode & 0o077 == 0, path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.mkdir(), "neither a Maildir"),
        (lambda p: p.write_text("x"), "not a directory"),
        (lambda p: None, "not a directory"),
    ],
    ids=["empty-dir", "a-file", "missing"],
)
def test_source_that_is_not_a_maildir(tmp_path, make, message):
    make(tmp_path / "src")
    p = cli("sync", tmp_path / "src", tmp_path / "dst", "--state-dir", tmp_path / "state")
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.fixture
def hostile_source(tmp_path):
    """A Maildir whose entries cannot all be synced: control bytes in a name, a FIFO, a symlink."""
    src = mkmaildir(tmp_path / "src")
    put(src, "cur/ok.1:2,S", b"fine\n")
    put(src, b"cur/bad\x1b[31mred.2:2,S", b"escape\n")
    put(src, b"cur/bad\nline.3:2,S", b"newline\n")
    put(src, b"cur/caf\xe9.4:2,S", b"latin-1 name, fine\n")
    os.mkfifo(src / "cur" / "fifo.5:2,S")
    os.symlink("/etc/shadow", src / "cur" / "link.6:2,S")
    return src


def test_hostile_names_are_reported_and_the_rest_syncs(hostile_source, tmp_path):
    dst = tmp_path / "dst"
    p = cli("sync", hostile_source, dst, "--state-dir", tmp_path / "state")
    assert p.returncode == 1
    assert "Traceback" not in p.stdout + p.stderr
    assert sorted(os.listdir(os.fsencode(dst / "cur"))) == [b"caf\xe9.4:2,S", b"ok.1:2,S"]
    out = p.stdout
    assert "\x1b" not in out and "bad\\x1b[31mred" in out
    for bad in ("bad\\x0aline", "fifo.5", "link.6"):
        assert bad in out, out


@pytest.fixture
def open_tmp():
    """A scratch directory an unprivileged user can reach (pytest's own is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="maildirsync-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda m: os.symlink("/etc/passwd", m / "cur" / "link.9:2,S"), id="symlink-in-cur"),
        pytest.param(lambda m: os.mkfifo(m / "new" / "fifo.9"), id="fifo-in-new"),
        pytest.param(lambda m: os.symlink("/etc", m / ".Linked"), id="symlinked-folder"),
        pytest.param(lambda m: os.symlink("/etc/shadow", m / "dovecot-keywords"), id="symlinked-control-file"),
    ],
)
def test_entries_that_are_not_messages_are_warnings_not_failures(tmp_path, make):
    """A Maildir holding one stray link must not fail its user at every run: the exit code could never be 0."""
    src = mkmaildir(tmp_path / "src")
    put(src, "cur/ok.1:2,S", b"fine\n")
    (src / ".dotfile-in-root").write_bytes(b"x")
    put(src, "cur/.dotfile", b"not a message either\n")
    make(src)
    for _ in range(2):  # and on every later run too
        p = cli("sync", src, tmp_path / "dst", "--state-dir", tmp_path / "state", "--json")
        assert p.returncode == 0, p.stdout + p.stderr
        (u,) = json.loads(p.stdout)["users"]
        assert u["status"] in ("changed", "ok") and u["counts"]["skipped"] == 1, u
        assert any("skipped" in w for w in u["warnings"]), u
    assert os.listdir(tmp_path / "dst" / "cur") == ["ok.1:2,S"]


def test_unreadable_source_file_is_one_line_and_the_rest_goes_on(open_tmp):
    """Run as an unprivileged user so that permissions bite (root reads everything)."""
    tmp_path = open_tmp
    src = mkmaildir(tmp_path / "src")
    put(src, "cur/a.1:2,S", b"readable\n")
    secret = put(src, "cur/b.2:2,S", b"secret\n")
    secret.chmod(0)
    for d in (tmp_path, src, src / "cur", src / "new", src / "tmp"):
        d.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, 65534, 65534)
    p = cli_as(65534, 65534, "sync", src, work / "dst", "--state-dir", work / "state", "--owner", "keep", workdir=tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert (work / "dst" / "cur" / "a.1:2,S").exists()
    assert not (work / "dst" / "cur" / "b.2:2,S").exists()
    assert "b.2:2,S" in p.stdout and "Permission denied" in p.stdout


def test_no_duplicates_and_nothing_lost_after_repeated_runs(corpus, tmp_path):
    dst, state = tmp_path / "dst", tmp_path / "state"
    for i, scenario in enumerate(["flags", "moved", "new", "deleted", "flags", "churn"]):
        sync(corpus, dst, state)
        mutate(scenario, corpus, "plain", seed=i)
    sync(corpus, dst, state)
    assert snapshot(dst) == snapshot(corpus)
    assert all(len(v) == 1 for v in messages(dst).values())


def test_ctrl_c_finishes_the_message_in_flight_commits_and_exits_130(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=1, folders=2, messages=2500, seed=3, layout="plain", big_fraction=0), processes=2)
    p = subprocess.Popen(
        [sys.executable, "-m", "maildirsync.cli", "sync", src, dst, "--state-dir", state, "--create", "--owner", "keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal gives it: a suite started with SIGINT ignored (a script's background job)
        # would pass that on through exec, and the sync would never see this test's SIGINT.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(dst.rglob("cur/*"))) < 100:
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, out + err
    assert "interrupted" in out and "Traceback" not in err
    landed = messages(dst)
    assert 0 < len(landed) < 5000
    assert all(len(v) == 1 for v in landed.values())
    # The index holds what was done: the re-run downloads only the rest, and nothing twice.
    counting = CountingSource()
    r = sync(src, dst, state, source=counting)
    assert r.users[0].counts()["new"] == 5000 - len(landed)
    assert r.users[0].counts()["adopted"] == 0
    assert snapshot(dst) == snapshot(src)


def test_quiet_folders_are_skipped_but_any_change_on_either_side_is_seen(corpus, tmp_path, monkeypatch):
    from maildirsync.index import Index

    dst, state = tmp_path / "dst", tmp_path / "state"

    def age(root):  # directory stamps are trusted once older than the margin
        for d in [root, *root.rglob("*")]:
            if d.is_dir():
                os.utime(d, ns=(T0 * 10**9, T0 * 10**9))

    age(corpus)
    sync(corpus, dst, state)
    age(dst)
    sync(corpus, dst, state)  # records the destination's stamps
    reads = []
    real, real_get = Index.folder_records, Index.get_recs
    monkeypatch.setattr(Index, "folder_records", lambda self, u, f: reads.append((f, "all")) or real(self, u, f))
    monkeypatch.setattr(Index, "get_recs", lambda self, u, f, bs: reads.append((f, sorted(bs))) or real_get(self, u, f, bs))
    r = sync(corpus, dst, state)
    assert [u.status for u in r.users] == ["ok"] * 3
    assert reads == []  # nothing changed anywhere: no folder's records were read
    # A flag changed on the destination, another on the source, both on the same message.
    inbox_src, inbox_dst = corpus / "arossi" / "Maildir" / "cur", dst / "arossi" / "Maildir" / "cur"
    name = sorted(p.name for p in inbox_src.iterdir() if p.name.endswith(":2,S"))[0]
    base = name[: -len(":2,S")]
    os.rename(inbox_dst / name, inbox_dst / (base + ":2,FS"))
    os.rename(inbox_src / name, inbox_src / (base + ":2,RS"))
    r = sync(corpus, dst, state)
    assert (inbox_dst / (base + ":2,FRS")).exists()
    # Only arossi's INBOX was planned, and of it only the record of the message that changed was read.
    assert reads == [(b"", [base.encode()])]


def test_a_run_killed_before_writing_its_lock_leaves_nothing_that_holds_the_next_off(corpus, tmp_path):
    """SIGKILL between creating dovecot-uidlist.lock and writing our pid in it leaves an empty lock, which
    Dovecot's rule would only override after two quiet minutes; the next run takes it over once it has
    stayed empty a few seconds (the fault tests found this)."""
    dst, state = tmp_path / "dst", tmp_path / "state"
    sync(corpus, dst, state)
    user = sorted(p.name for p in corpus.iterdir())[0]
    folder = dst / user / "Maildir" / ".Sent"
    (folder / "dovecot-uidlist.lock").write_bytes(b"")
    old = os.stat(folder).st_mtime - 10
    os.utime(folder / "dovecot-uidlist.lock", (old, old))
    jobs, key, _ = local.jobs(corpus, dst, [], create=True)
    ix, _ = engine.state_dir_for(state, key).open_index(readonly=False)
    ix.set_in_flight(os.fsencode(user), True)  # as a killed run leaves it
    ix.close()
    put(corpus / user / "Maildir" / ".Sent", "new/2000.M1P1.h,S=4", b"new\n")
    r = sync(corpus, dst, state)
    assert [u.status for u in r.users if u.user == user] == ["changed"], [u.reason for u in r.users]
    assert not (folder / "dovecot-uidlist.lock").exists()
    assert snapshot(dst) == snapshot(corpus)


def test_a_folder_whose_last_messages_fail_after_a_first_batch_landed_gets_its_list(tmp_path, monkeypatch):
    """The source's list is written as it is only once every message it numbers is here; a folder's
    messages landing in several batches wait for the last. When the last ones fail (vanished on the source
    meanwhile), the folder's list is still merged at the run's end, with the messages that did land
    (the UID invariant, DESIGN §3: a message on the destination the list lacks is one Dovecot numbers)."""
    from maildirsync import executor, uidlist
    from maildirsync.transport import Fetched

    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=1, folders=1, messages=6, seed=3, layout="plain"), processes=1)
    sync(src, dst, state)
    mutate("new", src, "plain", seed=8, fraction=2.0)  # a dozen new messages, in INBOX
    monkeypatch.setattr(executor, "STAGE_FILES", 3)  # so they land in several batches

    class LastOnesVanish(local.LocalSource):
        def fetch(self, root, rels):
            rels = list(rels)
            # Enough of the last ones that what lands is whole batches: no batch has them and lands.
            gone = 3 + (len(rels) - 3) % 3
            for i, f in enumerate(super().fetch(root, rels)):
                yield Fetched(f.rel, (), error="gone") if i >= len(rels) - gone else f

    r = sync(src, dst, state, source=LastOnesVanish())
    assert sum(u.counts()["new"] for u in r.users) >= 4
    box = next(p for p in dst.iterdir()) / "Maildir"
    listed = {e.base for e in uidlist.parse((box / "dovecot-uidlist").read_bytes()).entries}
    here = {n.split(":")[0] for sub in ("cur", "new") for n in os.listdir(box / sub)}
    assert here <= {b.decode() for b in listed}, "messages on the destination its dovecot-uidlist lacks"


def test_a_source_list_as_dovecot_leaves_it_is_carried_byte_for_byte_and_not_read_again(tmp_path, monkeypatch):
    """Dovecot appends a line per new message without rewriting the header, and keeps an expunged
    message's line until it compacts the file. The destination gets that file as it is (Dovecot reads the
    same UIDs from it), and from then on a change in the folder carries the source's file again without
    either list being read line by line (work in proportion to the change, issue 10)."""
    from maildirsync import uidlist

    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=1, folders=1, messages=6, seed=3, layout="plain"), processes=1)
    box = next(src.iterdir()) / "Maildir"
    names = sorted(os.listdir(box / "cur"))
    os.unlink(box / "cur" / names[2])  # expunged on the source, its line not compacted away yet
    head, *lines = (box / "dovecot-uidlist").read_bytes().splitlines(keepends=True)
    (box / "dovecot-uidlist").write_bytes(head.replace(b" N7 ", b" N2 ") + b"".join(lines))
    sync(src, dst, state)
    out = next(dst.iterdir()) / "Maildir"
    assert (out / "dovecot-uidlist").read_bytes() == (box / "dovecot-uidlist").read_bytes()

    read = []
    real = uidlist.parse
    monkeypatch.setattr(uidlist, "parse", lambda data, *a: read.append(data.count(b"\n")) or real(data, *a))
    put(box, "new/1800000000.M1P1.h,S=4", b"new\n")
    with open(box / "dovecot-uidlist", "ab") as f:
        f.write(b"8 :1800000000.M1P1.h,S=4\n")
    r = sync(src, dst, state)
    assert r.users[0].counts()["new"] == 1
    assert (out / "dovecot-uidlist").read_bytes() == (box / "dovecot-uidlist").read_bytes()
    assert all(n <= 1 for n in read), "a list was read line by line"
    uids = {e.base: e.uid for e in real((out / "dovecot-uidlist").read_bytes()).entries}
    assert uids[b"1800000000.M1P1.h,S=4"] == 8 and names[2].split(":")[0].encode() in uids


class ListReads(local.LocalSource):
    """A local source that notes every dovecot-uidlist read from it."""

    def __init__(self):
        self.lists: list = []

    def read(self, root, rel):
        if rel.endswith(b"dovecot-uidlist"):
            self.lists.append(rel)
        return super().read(root, rel)


def _flag_one(box) -> None:
    """A flag change on the source: the first message of cur/ renamed (no list changes with it)."""
    name = sorted(os.listdir(box / "cur"))[0]
    os.rename(box / "cur" / name, box / "cur" / (name.split(":")[0] + ":2,FS"))


def test_a_list_the_destination_holds_byte_for_byte_is_not_read_again_when_only_flags_change(tmp_path, monkeypatch):
    """After a flag change (a rename in cur/) the folder is planned, but its dovecot-uidlist has not
    changed on either side since the destination got it byte for byte: the destination's copy stands for
    the source's, nothing is read from the source for it (after 10 % flags that was every list)."""
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=1, folders=1, messages=6, seed=3, layout="plain"), processes=1)
    box = next(src.iterdir()) / "Maildir"
    old = T0 - 3600
    os.utime(box / "dovecot-uidlist", (old, old))  # older than the margin: its stamp is trusted
    sync(src, dst, state)
    out = next(dst.iterdir()) / "Maildir"

    from maildirsync import executor

    locks = []

    class Counted(executor.FolderLock):
        def __enter__(self):
            locks.append(self)
            return super().__enter__()

    monkeypatch.setattr(executor, "FolderLock", Counted)
    reads = ListReads()
    _flag_one(box)
    r = sync(src, dst, state, source=reads)
    assert r.users[0].counts()["renamed"] == 1
    assert reads.lists == [] and locks == []  # neither read nor locked: renames leave it as it is
    assert (out / "dovecot-uidlist").read_bytes() == (box / "dovecot-uidlist").read_bytes()
    assert snapshot(dst) == snapshot(src)


def test_a_list_the_destination_rewrote_during_the_run_is_not_taken_for_the_source_s(tmp_path, monkeypatch):
    """The destination's Dovecot may rewrite a folder's list right after we wrote it (a client opened the
    folder). Its stamp must not be recorded as that of the source's bytes: the next run reads the
    source's list again and merges, where it would otherwise take that rewrite (here of the same size)
    for the source's file and leave it."""
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    generate(src, CorpusSpec(users=1, folders=1, messages=6, seed=3, layout="plain"), processes=1)
    box = next(src.iterdir()) / "Maildir"
    old = T0 - 3600
    os.utime(box / "dovecot-uidlist", (old, old))
    real = engine._write_identity

    def and_dovecot_rewrites(root, *a, **kw):  # between the executor's last write and the records
        real(root, *a, **kw)
        path = os.path.join(os.fsdecode(root), "dovecot-uidlist")
        with open(path, "rb") as f:
            data = f.read()
        i = data.index(b" G") + 2
        with open(path + ".tmp", "wb") as f:
            f.write(data[:i] + (b"0" if data[i:i + 1] != b"0" else b"1") + data[i + 1:])
        os.replace(path + ".tmp", path)

    monkeypatch.setattr(engine, "_write_identity", and_dovecot_rewrites)
    sync(src, dst, state)
    monkeypatch.setattr(engine, "_write_identity", real)

    reads = ListReads()
    _flag_one(box)
    sync(src, dst, state, source=reads)
    assert reads.lists == [b"dovecot-uidlist"]
    out = next(dst.iterdir()) / "Maildir"
    assert (out / "dovecot-uidlist").read_bytes() == (box / "dovecot-uidlist").read_bytes()

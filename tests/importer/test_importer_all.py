"""``maildirsync-import all ARCHIVE DIR``: the whole procedure, resumable, never importing twice (issue 11,
part 4); and ``run`` picking up an import a killed run left behind.

The event is the stand-in ``signal-event`` running stand-ins of NethServer's own actions: ``base-migrate``
(replaces /root/.ssh) and ``migrate-mailboxes`` (S40: type=user only, passwd, existing destinations)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from importer import procedure
from importer.state import STATE_DIRNAME, TreeState
from importer_fixtures import M, build_hostile_tree, build_sme_tree, make_tar, tar_of_tree, write
from maildirsync import engine

EVENT = "migration-import"
DOMAIN = "example.com"
HOST = "192.0.2.7"  # a name for the index only: nothing connects to it
USERS = ("admin", "alice", "bob")  # the ones with a Maildir in build_sme_tree; carol has none


@pytest.fixture
def lab(tmp_path, standins, monkeypatch):
    """A backup archive, an empty NethServer mail root, passwd, the events of migration-import as stand-ins."""
    archive = tar_of_tree(build_sme_tree(tmp_path / "source"), tmp_path / "smeserver.tgz")
    vmail = tmp_path / "vmail"
    vmail.mkdir()
    passwd = write(tmp_path / "passwd", "".join(f"{u}:x:1:1::/:/bin/sh\n" for u in ("alice", "bob", "carol")))
    edir = tmp_path / "events" / EVENT
    edir.mkdir(parents=True)
    for name, prog in (("S10nethserver-base-migrate", "base-migrate"),
                       ("S40nethserver-mail-migrate-mailboxes", "migrate-mailboxes")):  # fmt: skip
        (edir / name).write_text(f'#!/bin/sh\nexec {standins / prog} "$@"\n')
        (edir / name).chmod(0o755)
    root_home = tmp_path / "root-home"
    write(root_home / ".ssh/id_rsa", "a key made for the sync before the import\n")
    env = {
        "STANDIN_EVENTS_DIR": tmp_path / "events", "STANDIN_SYSLOG": tmp_path / "messages",
        "STANDIN_PASSWD": passwd, "STANDIN_VMAIL": vmail, "STANDIN_DOMAIN": DOMAIN,
        "STANDIN_COUNT": tmp_path / "imports", "STANDIN_ROOT_HOME": root_home,
        # the features the backup needs are installed (the stand-in rpm says so)
        "STANDIN_RPM_INSTALLED": "nethserver-directory nethserver-mail-server nethserver-mail-filter nethserver-samba",
    }  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    (tmp_path / "messages").write_text("")
    return {"archive": archive, "vmail": vmail, "passwd": passwd, "tmp": tmp_path, "tree": tmp_path / "migration",
            "state": tmp_path / "state", "se": standins / "signal-event", "root_home": root_home}  # fmt: skip


def argv(lab, *extra, archive=None, host=True) -> list:
    return ["all", archive or lab["archive"], lab["tree"], *(["--source-host", HOST] if host else []),
            "--dest-root", lab["vmail"], "--domain", DOMAIN, "--state-dir", lab["state"], "--owner", "keep",
            "--passwd", lab["passwd"], "--signal-event", lab["se"], "--syslog", lab["tmp"] / "messages", *extra]


def imports(lab) -> int:
    p = lab["tmp"] / "imports"
    return len(p.read_text().splitlines()) if p.exists() else 0


def test_full_run_in_the_order_of_the_procedure(cli, lab):
    r = cli(*argv(lab))
    assert r.exit_code == 0, r.output
    out, err = r.stdout, r.stderr
    # the steps, in order, on the terminal (stderr) and their results on stdout
    heads = [line.split(":", 1)[0] for line in err.splitlines() if line.startswith("[")
             and "/5]" in line]  # fmt: skip
    assert heads == [f"[{i}/5] {s}" for i, s in enumerate(procedure.STEPS, 1)]
    assert "explode: " in out and "inspect: 4 users" in out
    assert "Checks before the import (what it will skip, now that the mailboxes are copied):" in out
    assert "EXPECTED [destination_copied] alice" in out  # copied by the mailboxes step: expected
    # every mailbox is at the destination, admin's included, and recorded in the index of the source
    for u in USERS:
        assert (lab["vmail"] / f"{u}@{DOMAIN}/Maildir/cur").is_dir(), u
    index, _ = engine.state_dir_for(lab["state"], engine.index_key(f"{HOST}_22", lab["vmail"])).open_index(readonly=True)
    try:
        assert all(index.user_records(u.encode()) for u in USERS)
    finally:
        index.close()
    # migration-import ran once; S40 skipped the copied mailboxes with warnings, which are expected
    assert imports(lab) == 1
    assert "skipped: destination already exists  -- expected" in out
    assert "Result: OK" in out
    assert not (lab["root_home"] / ".ssh/id_rsa").exists()  # what the next steps are about
    assert "Next:" in out and f"1. maildirsync setup -s {HOST}" in out and "replaced /root/.ssh" in out
    assert f"maildirsync -s {HOST}      # the sync" in out
    st = TreeState(lab["tree"]).load()
    assert [s for s in procedure.STEPS if st.done(s)] == list(procedure.STEPS)
    log = st.log.read_text()
    assert "[4/5] import: migration-import on" in log and "Result: OK" in log
    assert "explode smeserver.tgz: 100%" in log or "100% of" in log  # plain progress lines in the log
    assert "\r" not in log and "\x1b" not in log


def test_json_is_one_object(cli, lab):
    r = cli(*argv(lab, "--json"))
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [d["steps"][s]["status"] for s in procedure.STEPS] == ["done"] * 5
    assert d["import"]["report"]["ok"] is True and d["exit_code"] == 0
    assert d["next"][0].startswith(f"maildirsync setup -s {HOST}")
    assert {u["user"] for u in d["mailboxes"]["users"]} == set(USERS)
    assert d["inventory"]["domain"] == DOMAIN
    assert r.stderr == ""  # no progress with --json


@pytest.mark.parametrize("step", procedure.STEPS[:-1])
def test_stopped_after_each_step_and_resumed(cli, lab, step):
    r = cli(*argv(lab, "--stop-after", step))
    assert r.exit_code == 0, r.output
    assert f"stopped after {step}, as asked" in r.stdout
    st = TreeState(lab["tree"]).load()
    k = procedure.STEPS.index(step)
    assert [s for s in procedure.STEPS if st.done(s)] == list(procedure.STEPS[: k + 1])
    assert imports(lab) == (1 if step == "import" else 0)
    sentinel = lab["tree"] / "home/e-smith/db/accounts"
    mtime = sentinel.stat().st_mtime_ns
    r = cli(*argv(lab))
    assert r.exit_code == 0, r.output
    for s in procedure.STEPS[: k + 1]:
        assert f"{s}: done " in r.stdout, s  # not done again
    assert sentinel.stat().st_mtime_ns == mtime  # the tree was not exploded again
    assert imports(lab) == 1
    assert [s for s in procedure.STEPS if TreeState(lab["tree"]).load().done(s)] == list(procedure.STEPS)


def test_a_second_run_on_a_finished_tree_refuses_to_import_again(cli, lab):
    assert cli(*argv(lab)).exit_code == 0
    r = cli(*argv(lab))
    assert r.exit_code == 2, r.output
    assert "every step is done" in r.stdout and "Next:" in r.stdout
    assert "migration-import already ran on" in r.stderr and "not run twice on the same tree" in r.stderr
    assert imports(lab) == 1
    r = cli("run", lab["tree"], "--signal-event", lab["se"])
    assert r.exit_code == 2 and "already ran" in r.stderr and imports(lab) == 1
    r = cli("explode", lab["archive"], lab["tree"], "--force", "-q")
    assert r.exit_code == 2 and "already ran" in r.stderr


def test_blocking_problems_stop_before_the_mailboxes_unless_told(cli, lab, tmp_path):
    archive = tar_of_tree(build_hostile_tree(tmp_path / "hostile"), tmp_path / "hostile.tgz")
    r = cli(*argv(lab, archive=archive))
    assert r.exit_code == 1, r.output
    assert "stopped: " in r.stdout and "blocking problems" in r.stdout and "--go-on" in r.stdout
    assert "BLOCKING [orphan_maildir] home/e-smith/files/users/jdoe/Maildir" in r.stdout
    assert list(lab["vmail"].iterdir()) == [] and imports(lab) == 0
    st = TreeState(lab["tree"]).load()
    assert st.done("explode") and st.step("inspect")["status"] == "blocked"
    # jdoe's mail goes to a mailbox of its own, the rest is accepted as it is: it goes on from inspect
    r = cli(*argv(lab, "--maildir", "jdoe=jdoe", "--go-on", archive=archive))
    assert r.exit_code == 1, r.output  # the event's S40 finds users not in passwd: [ERROR]s
    assert "explode: done " in r.stdout
    assert (lab["vmail"] / f"jdoe@{DOMAIN}/Maildir/.Sent/cur").is_dir()
    assert "copied into jdoe's mailbox (--maildir)" in r.stdout
    assert imports(lab) == 1


def test_without_source_host_it_blocks_and_says_why(cli, lab):
    r = cli(*argv(lab, host=False))
    assert r.exit_code == 1
    assert "BLOCKING [no_source_host]" in r.stdout and "too late" in r.stdout


@pytest.mark.parametrize(
    "setup, code, says",
    [
        ("other-archive", 2, "another archive"),
        ("not-empty", 2, "is not empty"),
        ("bad-step", 2, "--stop-after nowhere: no such step"),
        ("busy", 4, "in use by the test"),
    ],
)
def test_refusals(cli, lab, tmp_path, setup, code, says):
    extra = []
    if setup == "other-archive":
        assert cli(*argv(lab, "--stop-after", "explode")).exit_code == 0
        other = tar_of_tree(build_sme_tree(tmp_path / "other"), tmp_path / "other.tgz")
        r = cli(*argv(lab, archive=other))
    elif setup == "not-empty":
        write(lab["tree"] / "something", "x")
        r = cli(*argv(lab))
    elif setup == "bad-step":
        r = cli(*argv(lab, "--stop-after", "nowhere"))
    else:
        with TreeState(lab["tree"]).locked("the test"):
            r = cli(*argv(lab, *extra))
    assert r.exit_code == code, r.output
    assert says in r.stderr and "hint:" in r.stderr
    assert imports(lab) == 0


def test_the_state_directory_name_is_reserved_in_archives(cli, tmp_path):
    bad = make_tar(tmp_path / "bad.tgz", [M("home/e-smith/db/accounts"), M(f"{STATE_DIRNAME}/state.json", b"{}")])
    r = cli("explode", bad, tmp_path / "out", "-q")
    assert r.exit_code == 2 and "reserved" in r.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- killed during the import


# Ctrl-C on a terminal finds SIGINT at its default. A process started with SIGINT ignored (the suite run as a
# background job of a script: `sh -c 'pytest & wait'`) passes that on through exec, and Python keeps ignoring
# it: the importer would never see the test's Ctrl-C. The child resets it, then execs the program itself.
_SIGINT_AS_ON_A_TERMINAL = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                            "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")


def popen_as_from_a_terminal(python_args) -> subprocess.Popen:
    """``python PYTHON_ARGS`` in a session of its own, with SIGINT at its default whatever this process has."""
    return subprocess.Popen([sys.executable, "-c", _SIGINT_AS_ON_A_TERMINAL, *python_args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip


def spawn(lab, *args) -> subprocess.Popen:
    return popen_as_from_a_terminal(["-m", "importer.cli", *map(str, args)])


def test_the_spawned_program_gets_ctrl_c_even_where_the_tests_ignore_it():
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        p = popen_as_from_a_terminal(["-c", "import signal; print(signal.getsignal(signal.SIGINT) is "
                                            "signal.default_int_handler)"])  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, old)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and out.strip() == b"True", err


def wait_for(pred, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def first_action_done(lab) -> bool:
    p = lab["tree"] / STATE_DIRNAME / "import.jsonl"
    return p.exists() and '"state": "done"' in p.read_text()


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_killed_while_signal_event_runs_the_next_run_follows_it_to_its_end(cli, lab, monkeypatch, how):
    """The event runs in a session of its own, writing its records to a file: a dead or interrupted
    maildirsync-import does not stop it, and the next `all` follows it to its end without starting another."""
    hold = lab["tmp"] / "hold"
    hold.write_text("")
    monkeypatch.setenv("STANDIN_SE_HOLD", str(hold))
    p = spawn(lab, *argv(lab))
    wait_for(lambda: first_action_done(lab), "the first action of the event")
    if how == "SIGKILL":
        os.killpg(p.pid, signal.SIGKILL)  # maildirsync-import's whole process group, as a lost session would
        p.wait()
    else:
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C on its terminal
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            hold.unlink()  # the event ends instead of waiting for ever
            _, err = p.communicate()
            pytest.fail(f"maildirsync-import did not exit on SIGINT: {err.decode(errors='replace')}")
        assert p.returncode == 130, err
        assert b"goes on running in the background" in err
    imp = TreeState(lab["tree"]).load().imported
    assert imp["finished"] is None and imp["pid"]
    os.kill(imp["pid"], 0)  # signal-event lives on
    q = spawn(lab, *argv(lab))
    said = []
    while True:  # until it says it follows the running event: only then may the event end
        line = q.stderr.readline()
        assert line, b"".join(said).decode()
        said.append(line)
        if b"following it to its end" in line:
            break
    assert b"is still running (signal-event pid" in said[-1]
    hold.unlink()  # let the event finish
    out, err = q.communicate(timeout=120)
    assert q.returncode == 0, out.decode() + err.decode()
    assert b"Result: OK" in out
    assert imports(lab) == 1


def test_ctrl_c_as_signal_event_starts_leaves_it_recorded_and_followed(cli, lab, monkeypatch):
    """A Ctrl-C right after signal-event started, before its PID is in the state: it goes on all the same, the
    state names it, and the next run follows it (not: 'interrupted before its end', while it still runs)."""
    from importer import events

    hold = lab["tmp"] / "hold"
    hold.write_text("")
    monkeypatch.setenv("STANDIN_SE_HOLD", str(hold))
    start = events.start_signal_event

    def start_then_ctrl_c(*a, **kw):
        proc = start(*a, **kw)
        signal.raise_signal(signal.SIGINT)  # its handler runs here, before this returns
        return proc

    monkeypatch.setattr(events, "start_signal_event", start_then_ctrl_c)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal gives it, whatever pytest got
    try:
        r = cli(*argv(lab))
    finally:
        signal.signal(signal.SIGINT, old)
        monkeypatch.setattr(events, "start_signal_event", start)
    try:
        assert r.exit_code == 130, r.output
        assert "goes on running in the background" in r.stderr
        imp = TreeState(lab["tree"]).load().imported
        assert imp["finished"] is None and imp["pid"] and events.alive(imp["pid"], imp["pid_start"])
    finally:
        hold.unlink()  # let the event finish
    r = cli(*argv(lab))
    assert r.exit_code == 0, r.output
    assert "is still running (signal-event pid" in r.stderr or "had ended: reading its records" in r.stderr
    assert "Result: OK" in r.stdout and imports(lab) == 1


def test_event_killed_with_the_run_is_reported_interrupted_and_never_run_again(cli, lab, monkeypatch):
    hold = lab["tmp"] / "hold"
    hold.write_text("")
    monkeypatch.setenv("STANDIN_SE_HOLD", str(hold))
    p = spawn(lab, *argv(lab))
    wait_for(lambda: first_action_done(lab), "the first action of the event")
    imp = TreeState(lab["tree"]).load().imported
    os.killpg(p.pid, signal.SIGKILL)
    os.killpg(imp["pid"], signal.SIGKILL)  # the event's own session: it dies half-way
    p.wait()
    wait_for(lambda: not Path(f"/proc/{imp['pid']}").exists() or "Z" in Path(f"/proc/{imp['pid']}/stat").read_text()
             .rsplit(")", 1)[1][:3], "signal-event to die")  # fmt: skip
    r = cli(*argv(lab))
    assert r.exit_code == 1, r.output
    assert "was interrupted before its end: it is not run again on this tree" in r.stderr
    assert "the event did not finish" in r.stdout and "S10nethserver-base-migrate" in r.stdout
    assert "1 of its 2 actions never started" in r.stdout
    assert imports(lab) == 0  # the mail step never ran, and was not started again
    r = cli(*argv(lab))
    assert r.exit_code == 2 and "result: interrupted" in r.stderr


def test_a_state_naming_an_unrelated_live_process_is_not_followed(cli, sme_tree, tmp_path):
    """Neither a reused PID nor a state file naming another process makes `run` wait on it: the process
    must be signal-event of this event on this tree."""
    from importer import events

    st = TreeState(sme_tree)
    st.set_import(runner="signal-event", source="/sbin/e-smith/signal-event", started=time.time(), finished=None,
                  pid=os.getpid(), pid_start=events.process_start(os.getpid()),
                  mark={"path": str(tmp_path / "none"), "inode": None, "size": 0, "time": time.time()})  # fmt: skip
    r = cli("run", sme_tree, "--syslog", tmp_path / "none")
    assert r.exit_code == 1, r.output
    assert "was interrupted before its end" in r.stderr and "still running" not in r.stderr

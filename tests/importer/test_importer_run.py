"""``maildirsync-import run``: migration-import as NethServer 7 runs it (issue 11, part 1).

A stand-in ``signal-event`` (``standins/signal-event``) prints exactly DESIGN.md section 5's format: JSON
records on stdout in shuffled key order with raw wait statuses, the actions' output in a syslog file tagged
``esmith::event[PID]``, ``Action:`` lines, another daemon's lines and other events' lines interleaved. The
same handlers run by the built-in runner give the same report."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from importer import events, report
from importer.state import TreeState
from importer_fixtures import build_sme_tree

EVENT = "migration-import"


def handler(d: Path, name: str, body: str, executable: bool = True) -> Path:
    p = d / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755 if executable else 0o644)
    return p


# name, body, status, reason fragment, messages (level, text fragment, from a nested event)
HANDLERS = [
    ("S05nested", "exec nested-event user-create", "ok", None,
     [("WARNING", "user-create: alice's home already exists", True)]),
    ("S07nestedfail", "exec nested-event group-create fail", "error", "exited 0 but reported an error",
     [("WARNING", "group-create: alice's home", True), ("FAILED", "S10something FAILED: 1", True),
      ("FAILED", "Event: group-create FAILED", True)]),
    ("S10ok", "echo 'all good'", "ok", None, []),
    ("S20fail", "echo '[ERROR] cannot import user bob' >&2\necho details\nexit 3", "failed", "exit code 3",
     [("ERROR", "[ERROR] cannot import user bob", False)]),
    ("S30errzero", "echo '[ERROR] half done'", "error", "exited 0 but reported an error",
     [("ERROR", "[ERROR] half done", False)]),
    ("S35mail", "echo '[ERROR] bob skipped: not found in passwd database'\n"
                "echo '[WARNING] alice skipped: destination already exists'", "error", "reported an error",
     [("ERROR", "[ERROR] bob skipped: not found in passwd database", False),
      ("WARNING", "[WARNING] alice skipped: destination already exists", False)]),
    ("S40noexec", "exit 0", "skipped", "not executable", []),
    ("S50killed", "echo 'about to die'\nkill -9 $$", "failed", "killed by SIGKILL", []),
    ("S55quiet", "for i in 1 2 3 4 5 6 7; do echo line$i; done\nexit 5", "failed", "exit code 5", []),
    ("S60failed_word", "echo 'restore of ibay primary FAILED'", "error", "reported an error",
     [("FAILED", "restore of ibay primary FAILED", False)]),
    ("S90last", "exit 0", "ok", None, []),
]  # fmt: skip


@pytest.fixture
def world(tmp_path, sme_tree, standins, monkeypatch):
    """An events dir with one handler of each kind, a syslog file that already has lines, the stand-ins."""
    edir = tmp_path / "events" / EVENT
    edir.mkdir(parents=True)
    (edir / "templates2expand").mkdir()  # e-smith sub-directories are not handlers
    for name, body, status, _, _ in HANDLERS:
        handler(edir, name, body, executable=status != "skipped")
    syslog = tmp_path / "messages"
    syslog.write_text("Jan  1 00:00:00 host esmith::event[7]: [ERROR] before the run: not reported\n")
    monkeypatch.setenv("STANDIN_EVENTS_DIR", str(tmp_path / "events"))
    monkeypatch.setenv("STANDIN_SYSLOG", str(syslog))
    monkeypatch.setenv("STANDIN_ARGS", str(tmp_path / "args"))
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(f"{u}:x:1:1::/:/bin/sh\n" for u in ("alice", "bob", "carol")))
    return {"events": tmp_path / "events", "syslog": syslog, "tree": sme_tree, "passwd": passwd,
            "se": standins / "signal-event", "tmp": tmp_path}  # fmt: skip


def run_cli(cli, world, runner: str, *extra):
    how = ["--events-dir", world["events"]] if runner == "builtin" else ["--signal-event", world["se"]]
    return cli("run", "--json", world["tree"], *how, "--syslog", world["syslog"], "--passwd", world["passwd"],
               *extra)  # fmt: skip


def comparable(rep: dict) -> list:
    """What must be the same whichever runner ran the event: per action its status, exit code or signal,
    reason, messages (and whether each came from an event it signalled), and the last lines shown."""
    out = []
    for a in rep["run"]["actions"]:
        own = a["output"].splitlines() + a["lines"]
        out.append((a["name"], a["status"], a["exit_code"], a["signal"], a["reason"],
                    [(m["level"], m["line"], m["pid"] is not None) for m in a["messages"]],
                    own[-report.TAIL_LINES:] if a["status"] in ("failed", "error") and not a["messages"] else None))
    return out


@pytest.mark.parametrize("runner", ["signal-event", "builtin"])
def test_each_action_gets_exactly_its_lines_status_and_decoded_exit(cli, world, runner):
    r = run_cli(cli, world, runner)
    assert r.exit_code == 1, r.output
    rep = json.loads(r.stdout)["report"]
    acts = {a["name"]: a for a in rep["run"]["actions"]}
    assert list(acts) == [h[0] for h in HANDLERS]
    for name, _, status, reason, msgs in HANDLERS:
        a = acts[name]
        assert a["status"] == status, (name, a)
        if reason:
            assert reason in a["reason"], (name, a["reason"])
        got = [(m["level"], m["line"], m["pid"] is not None) for m in a["messages"]]
        assert len(got) == len(msgs), (name, got)
        for (level, frag, nested), (glevel, gline, gnested) in zip(msgs, got):
            assert (glevel, gnested) == (level, nested) and frag in gline, (name, got)
    assert acts["S20fail"]["exit_code"] == 3 and acts["S50killed"]["signal"] == "SIGKILL"
    assert acts["S50killed"]["exit_code"] is None
    text = json.dumps(rep)
    # other programs' lines, other events' lines, and what was in the log before never enter the report
    for foreign in ("postfix", "FAILED to connect", "before the run", "an earlier event", "other-event"):
        assert foreign not in text, foreign
    assert rep["failed"] == ["S07nestedfail", "S20fail", "S30errzero", "S35mail", "S50killed", "S55quiet",
                             "S60failed_word"]  # fmt: skip
    assert rep["run"]["status"] == "failed" and rep["exit_code"] == 1
    if runner == "signal-event":
        assert (world["tmp"] / "args").read_text().split() == ["-j", EVENT, str(world["tree"])]
        assert rep["run"]["exit_code"] == 1  # signal-event exits 1 when an action failed
        assert [a["raw_status"] for a in rep["run"]["actions"] if a["name"] in ("S20fail", "S50killed")] == [768, 9]


def test_both_runners_give_the_same_report(cli, world, tmp_path):
    reps = {}
    for runner in ("signal-event", "builtin"):
        world["tree"] = build_sme_tree(tmp_path / f"tree-{runner}")
        r = run_cli(cli, world, runner)
        assert r.exit_code == 1, r.output
        reps[runner] = json.loads(r.stdout)["report"]
    assert comparable(reps["signal-event"]) == comparable(reps["builtin"])

    def actions_block(rep: dict) -> list[str]:
        lines = report.render_text(report.Report.from_dict(rep)).splitlines()[1:]
        block = lines[: next(i for i, ln in enumerate(lines) if ln.startswith("  event status:"))]
        return [re.sub(r" +\d+\.\ds", " Ns", re.sub(r"esmith::event\[\d+\]", "esmith::event[N]", ln))
                for ln in block if not ln.startswith("  signal-event itself")]  # fmt: skip

    assert actions_block(reps["signal-event"]) == actions_block(reps["builtin"])


def test_text_report_shows_messages_tails_and_progress(cli, world):
    r = cli("run", world["tree"], "--signal-event", world["se"], "--syslog", world["syslog"],
            "--passwd", world["passwd"])  # fmt: skip
    assert r.exit_code == 1, r.output
    out = r.stdout
    assert "Checks before the import:" in out and "WARNING [root_ssh]" in out
    assert "WARNING etc/e-smith/templates-custom/etc/postfix/main.cf/10custom" in out
    status_of = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("S") and parts[1][1:3].isdigit():
            status_of.setdefault(parts[1], parts[0])
    assert status_of == {h[0]: {"ok": "ok", "failed": "FAILED", "error": "ERROR", "skipped": "skipped"}[h[2]]
                         for h in HANDLERS}  # fmt: skip
    assert "(esmith::event[" in out and "an event it signalled" in out
    assert "last 5 lines of its output:" in out and "| line7" in out and "| line3" in out and "line2" not in out
    assert "| about to die" in out  # the killed one printed no tagged line: its last lines
    assert "Result: FAILED (7 of 11 actions failed)" in out
    assert re.search(r"\[\d+/10\] S10ok: exit code 0 in", r.stderr)  # progress as the JSON records come


def test_expected_destination_warning_is_said_to_be_expected(cli, world, tmp_path):
    """alice's Maildir was copied before the import (as `mailboxes` does): S40's warning is expected."""
    import shutil

    vmail = tmp_path / "vmail"
    shutil.copytree(world["tree"] / "home/e-smith/files/users/alice/Maildir", vmail / "alice@example.com/Maildir")
    r = run_cli(cli, world, "signal-event", "--dest-root", vmail)
    d = json.loads(r.stdout)
    assert any(c.startswith("EXPECTED [destination_copied] alice") for c in d["checks"])
    [m] = [m for a in d["report"]["run"]["actions"] for m in a["messages"] if "destination already" in m["line"]]
    assert m["note"].startswith("expected")


def test_all_ok_exits_0_and_skips_are_shown(cli, tmp_path, sme_tree, world):
    edir = tmp_path / "ev" / EVENT
    edir.mkdir(parents=True)
    handler(edir, "S10a", "echo fine")
    handler(edir, "S20b", "echo '[WARNING] only a warning'")
    handler(edir, "S30c", "exit 1", executable=False)
    os.symlink(tmp_path / "missing", edir / "S40broken")
    r = cli("run", sme_tree, "--events-dir", tmp_path / "ev", "--syslog", tmp_path / "no-such-log",
            "--passwd", world["passwd"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "Result: OK (2 skipped, see above)" in r.stdout
    assert "not executable" in r.stdout and "broken symbolic link" in r.stdout
    assert "no-such-log does not exist" in r.stdout


def test_after_the_import_users_missing_from_passwd_fail_the_run(cli, tmp_path, sme_tree, world):
    edir = tmp_path / "ev" / EVENT
    edir.mkdir(parents=True)
    handler(edir, "S10a", "echo fine")
    world["passwd"].write_text("alice:x:1:1::/:/bin/sh\n")
    r = cli("run", sme_tree, "--events-dir", tmp_path / "ev", "--syslog", tmp_path / "n", "--passwd", world["passwd"])
    assert r.exit_code == 1, r.output
    assert "Result: OK" in r.stdout
    assert "after the import: bob: not in this host's passwd: the import did not create the account" in r.stdout
    assert "carol: not in this host's passwd" in r.stdout and "alice: not" not in r.stdout


# --------------------------------------------------------------------------- the log: journal, rotation


def test_journal_is_read_where_the_syslog_cannot_be(cli, world, tmp_path, monkeypatch):
    journal = tmp_path / "journal.jsonl"
    monkeypatch.delenv("STANDIN_SYSLOG")
    monkeypatch.setenv("STANDIN_JOURNAL", str(journal))
    monkeypatch.setenv("STANDIN_JOURNALCTL_ARGS", str(tmp_path / "jargs"))
    r = cli("run", "--json", world["tree"], "--signal-event", world["se"], "--syslog", tmp_path / "no-messages",
            "--passwd", world["passwd"])  # fmt: skip
    assert r.exit_code == 1, r.output
    rep = json.loads(r.stdout)["report"]
    assert rep["log"] == "journal" and "does not exist; read the journal" in rep["log_note"]
    acts = {a["name"]: a for a in rep["run"]["actions"]}
    assert [m["line"] for m in acts["S20fail"]["messages"]] == ["[ERROR] cannot import user bob"]
    assert acts["S05nested"]["messages"][0]["pid"] is not None
    assert "postfix" not in json.dumps(rep)
    [args] = [json.loads(x) for x in (tmp_path / "jargs").read_text().splitlines()]
    assert args[:2] == ["-t", "esmith::event"] and "-o" in args and args[args.index("-o") + 1] == "json"
    since = time.mktime(time.strptime(args[args.index("--since") + 1], "%Y-%m-%d %H:%M:%S"))
    until = time.mktime(time.strptime(args[args.index("--until") + 1], "%Y-%m-%d %H:%M:%S"))
    assert since <= rep["run"]["started"] and rep["run"]["finished"] <= until  # the run's window


def test_journal_too_when_the_syslog_has_no_line_of_the_run(cli, world, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_SYSLOG", str(tmp_path / "elsewhere"))  # rsyslog writes somewhere else
    monkeypatch.setenv("STANDIN_JOURNAL", str(tmp_path / "journal.jsonl"))
    r = run_cli(cli, world, "signal-event")
    rep = json.loads(r.stdout)["report"]
    assert rep["log"] == "journal" and "holds no line of this run" in rep["log_note"]
    assert any(m["line"] == "[ERROR] half done" for a in rep["run"]["actions"] for m in a["messages"])


def test_neither_log_nor_journal_is_said_and_statuses_still_come_from_the_records(cli, world, tmp_path, monkeypatch):
    monkeypatch.delenv("STANDIN_SYSLOG")  # no log at all: and the stand-in journalctl finds no journal
    r = cli("run", world["tree"], "--signal-event", world["se"], "--syslog", tmp_path / "none",
            "--passwd", world["passwd"])  # fmt: skip
    assert r.exit_code == 1
    assert "does not exist; journalctl failed (exit 1: No journal files were found.)" in r.stdout
    assert re.search(r"FAILED +S20fail .*exit code 3", r.stdout)


def test_no_journalctl_is_said():
    from importer import systemlog

    lines, note = systemlog.read_journal(0, 1, program="no-such-journalctl")
    assert lines is None and note == "no-such-journalctl is not installed"


def test_a_log_rotated_during_the_run_is_followed(cli, world, tmp_path):
    edir = world["events"] / EVENT
    handler(edir, "S33rotate", f"mv {world['syslog']} {world['syslog']}-20240101\necho rotated")
    r = run_cli(cli, world, "signal-event")
    rep = json.loads(r.stdout)["report"]
    acts = {a["name"]: a for a in rep["run"]["actions"]}
    assert [m["line"] for m in acts["S20fail"]["messages"]] == ["[ERROR] cannot import user bob"]  # before
    assert [m["line"] for m in acts["S60failed_word"]["messages"]] == ["restore of ibay primary FAILED"]  # after


def test_dropped_log_lines_are_said(cli, world):
    edir = world["events"] / EVENT
    stamp = "$(LC_ALL=C date '+%b %e %H:%M:%S')"
    handler(edir, "S34burst", f'echo "{stamp} testhost rsyslogd: imjournal: begin to drop messages due to '
                              f'rate-limiting" >> {world["syslog"]}')  # fmt: skip
    rep = json.loads(run_cli(cli, world, "signal-event").stdout)["report"]
    assert any("dropped messages" in n and "rate-limiting" in n for n in rep["notes"])


# --------------------------------------------------------------------------- records of signal-event


def jl(**kw) -> str:
    return json.dumps(kw)


def scripted_signal_event(tmp_path: Path, lines: list[str], log_lines: list[str], rc: int) -> Path:
    """A signal-event that prints given records and log lines (with $$ as its PID) and exits rc."""
    syslog = tmp_path / "messages"
    body = "".join(f"echo '{line}'\n".replace("PID", "'\"$$\"'") for line in lines)
    body += "".join(f'echo "Mar  1 10:00:00 host esmith::event[$$]: {line}" >> {syslog}\n' for line in log_lines)
    return handler(tmp_path, "signal-event", body + f"exit {rc}")


A = "/etc/e-smith/events/migration-import/"


def test_a_missing_record_is_taken_from_the_action_line_and_names_realign(cli, tmp_path, sme_tree, world):
    prog = scripted_signal_event(
        tmp_path,
        [jl(event=EVENT, args="x", steps=3, pid="PID").replace('"PID"', "PID"),
         jl(event=EVENT, action=A + "S10a", state="running", step=0),
         jl(event=EVENT, action=A + "S10a", state="done", step=0, exit=0, time=0.5, progress="0.00"),
         jl(event=EVENT, action=A + "S20b", state="running", step=1),
         # no done record for S20b
         jl(event=EVENT, action=A + "S30c", state="running", step=2),
         jl(event=EVENT, action=A + "S30c", state="done", step=2, exit=256, time=0.1, progress="0.67"),
         jl(event=EVENT, status="failed")],
        ["Event: migration-import x", "a line", "Action: " + A + "S10a SUCCESS [0.5]", "[WARNING] b says",
         "Action: " + A + "S20b FAILED: 2 [0.25]", "[WARNING] no record at all", "Action: " + A + "S25x SUCCESS [1.0]",
         "[ERROR] c says", "Action: " + A + "S30c FAILED: 1 [0.1]", "Event: migration-import FAILED"],
        rc=1,
    )  # fmt: skip
    r = cli("run", "--json", sme_tree, "--signal-event", prog, "--syslog", tmp_path / "messages",
            "--passwd", world["passwd"])  # fmt: skip
    rep = json.loads(r.stdout)["report"]
    got = [(a["name"], a["status"], a["reason"], [m["line"] for m in a["messages"]]) for a in rep["run"]["actions"]]
    assert got == [("S10a", "ok", None, []),
                   ("S20b", "failed", "FAILED: 2 (from the system log)", ["[WARNING] b says"]),
                   ("S25x", "ok", None, ["[WARNING] no record at all"]),
                   ("S30c", "failed", "exit code 1", ["[ERROR] c says"])]  # fmt: skip
    assert rep["run"]["actions"][1]["seconds"] == 0.25


@pytest.mark.parametrize(
    "raw, status, exit_code, sig, reason",
    [
        (0, "ok", 0, None, None),
        (256, "failed", 1, None, "exit code 1"),  # what the issue saw shown as "exit status 256"
        (768, "failed", 3, None, "exit code 3"),
        (255 << 8, "failed", 255, None, "exit code 255"),
        (9, "failed", None, "SIGKILL", "killed by SIGKILL"),
        (15, "failed", None, "SIGTERM", "killed by SIGTERM"),
        (0x80 | 6, "failed", None, "SIGABRT", "killed by SIGABRT (core dumped)"),
        ((19 << 8) | 0x7F, "failed", None, None, "stopped by SIGSTOP"),
        (-1, "failed", None, None, "could not be run"),
    ],
)
def test_raw_wait_status_is_decoded(raw, status, exit_code, sig, reason):
    a = events.ActionResult("x")
    events.decode_wait_status(a, raw)
    assert (a.status, a.exit_code, a.signal) == (status, exit_code, sig)
    assert a.reason == reason if reason is None else reason in a.reason


def test_records_in_any_key_order_and_the_final_status():
    run = events.EventRun(EVENT, "/d", "signal-event", "x")
    log = events.EventLog(run)
    for line in ['{"pid": 42, "steps": 2, "args": "/d", "event": "migration-import"}',
                 '{"step": 0, "state": "running", "pid": 42, "action": "/e/S10a", "event": "migration-import"}',
                 '{"progress": "0.00", "time": 1.5, "exit": 0, "pid": 42, "step": 0, "state": "done", '
                 '"action": "/e/S10a", "event": "migration-import"}',
                 "not JSON at all",
                 '{"status": "success", "pid": 42, "event": "migration-import"}']:  # fmt: skip
        log.feed_line(line)
    log.finish()
    assert (run.pid, run.steps, run.status, run.complete) == (42, 2, "success", True)
    assert [(a.name, a.status, a.seconds) for a in run.actions] == [("S10a", "ok", 1.5)]
    assert run.other == ["not JSON at all"]


@pytest.mark.parametrize(
    "line, level",
    [
        ("[ERROR] x", "ERROR"),
        ("foo: [WARNING] y", "WARNING"),
        ("Action: /x/y FAILED: 1 [0.2]", "FAILED"),
        ("check FAIL", "FAILED"),
        ("FAILOVER configured", None),
        ("error in lower case", None),
        ("[INFO] all fine", None),
        ("[NOTICE] noted", None),
    ],
)
def test_classify(line, level):
    assert report.classify(line) == level


@pytest.mark.parametrize(
    "line, tag, pid, msg",
    [
        ("Mar  5 10:11:12 host esmith::event[4242]: [ERROR] x", "esmith::event", 4242, "[ERROR] x"),
        ("2024-03-05T10:11:12.123456+00:00 host esmith::event[7]: y", "esmith::event", 7, "y"),
        ("Mar  5 10:11:12 host postfix/smtpd[1]: esmith::event[4242]: fake", "postfix/smtpd", 1,
         "esmith::event[4242]: fake"),
        ("Mar  5 10:11:12 host kernel: no pid", "kernel", None, "no pid"),
        ("garbage without a stamp", None, None, "garbage without a stamp"),
    ],
)
def test_log_lines_are_split_by_tag_and_pid_not_by_their_words(line, tag, pid, msg):
    from importer import systemlog

    ln = systemlog.parse_line(line, 2024)
    assert (ln.tag, ln.pid, ln.msg) == (tag, pid, msg)


# --------------------------------------------------------------------------- refusals


def test_missing_events_dir_is_bad_input(cli, tmp_path, sme_tree):
    r = cli("run", sme_tree, "--events-dir", tmp_path / "nope")
    assert r.exit_code == 2 and f"no handlers for the event {EVENT}" in r.stderr
    assert TreeState(sme_tree).load().imported is None  # nothing recorded: it can be run again


def test_run_refuses_without_databases(cli, tmp_path, sme_tree):
    (sme_tree / "home/e-smith/db/accounts").unlink()
    edir = tmp_path / "ev" / EVENT
    edir.mkdir(parents=True)
    handler(edir, "S10a", f"touch {tmp_path}/ran")
    r = cli("run", sme_tree, "--events-dir", tmp_path / "ev")
    assert r.exit_code == 2 and "home/e-smith/db/accounts" in r.stderr
    assert not (tmp_path / "ran").exists()


def test_run_on_a_tree_already_imported_by_hand(cli, tmp_path):
    (tmp_path / "m/home/e-smith").mkdir(parents=True)
    r = cli("run", tmp_path / "m", "--events-dir", tmp_path)
    assert r.exit_code == 2 and "already ran" in r.stderr


def test_a_second_run_on_the_same_tree_refuses(cli, tmp_path, sme_tree, world):
    edir = tmp_path / "ev" / EVENT
    edir.mkdir(parents=True)
    handler(edir, "S10a", f"echo x >> {tmp_path}/count")
    args = ("run", sme_tree, "--events-dir", tmp_path / "ev", "--syslog", tmp_path / "n", "--passwd", world["passwd"])
    assert cli(*args).exit_code == 0
    r = cli(*args)
    assert r.exit_code == 2, r.output
    assert "migration-import already ran on" in r.stderr and "result: success" in r.stderr
    assert "report.txt" in r.stderr
    assert (tmp_path / "count").read_text() == "x\n"  # once
    assert "Result: OK" in (sme_tree / ".maildirsync-import/report.txt").read_text()


def test_events_dir_given_wins_over_signal_event(cli, tmp_path, sme_tree, world):
    edir = tmp_path / "ev" / EVENT
    edir.mkdir(parents=True)
    handler(edir, "S10a", "exit 0")
    r = cli("run", sme_tree, "--signal-event", world["se"], "--events-dir", tmp_path / "ev", "--syslog",
            tmp_path / "n", "--passwd", world["passwd"])  # fmt: skip
    assert r.exit_code == 0 and "(builtin:" in r.stdout
    assert not (world["tmp"] / "args").exists()

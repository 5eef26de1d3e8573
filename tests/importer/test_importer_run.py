"""``maildirsync-import run``: the event runners and the report."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from importer import events, report

EVENT = "migration-import"


def handler(d: Path, name: str, body: str, executable: bool = True) -> Path:
    p = d / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755 if executable else 0o644)
    return p


@pytest.fixture
def world(tmp_path, sme_tree):
    """An events dir with one handler of each kind, a system log, an order log."""
    edir = tmp_path / "events" / EVENT
    edir.mkdir(parents=True)
    (edir / "templates2expand").mkdir()  # e-smith sub-directories are not handlers
    order = tmp_path / "order.log"
    syslog = tmp_path / "messages"
    syslog.write_text("Jan  1 00:00:00 host old[1]: [ERROR] before the run: not reported\n")
    rec = f'echo "$(basename "$0") $*" >> {order}\n'
    stamp = "$(LC_ALL=C date '+%b %e %H:%M:%S')"
    handler(edir, "S05syslog", rec + f'echo "{stamp} host esmith::event[7]: S05syslog: [ERROR] seen in the log" >> {syslog}\n'
            f'echo "{stamp} host other[8]: [WARNING] an unrelated warning" >> {syslog}\n'
            f'echo "Feb  2 02:02:02 host other[8]: [ERROR] stamped outside the window" >> {syslog}\nexit 0')
    handler(edir, "S10ok", rec + "echo 'all good'\nexit 0")
    handler(edir, "S20fail", rec + "echo '[ERROR] cannot import user bob' >&2\necho 'details'\nexit 3")
    handler(edir, "S25warn", rec + "echo '[WARNING] Maildir of bob exists: skipped'\nexit 0")
    handler(edir, "S30errzero", rec + "echo '[ERROR] half done'\nexit 0")
    handler(edir, "S40noexec", rec + "exit 0", executable=False)
    handler(edir, "S50killed", rec + "echo 'about to die'\nkill -9 $$")
    handler(edir, "S60failed_word", rec + "echo 'restore of ibay primary FAILED'\nexit 0")
    handler(edir, "S90last", rec + "exit 0")
    return {"edir": edir, "events": tmp_path / "events", "order": order, "syslog": syslog, "tree": sme_tree}


EXPECTED = [
    # name, status, reason fragment
    ("S05syslog", "error", "exited 0 but reported an error"),
    ("S10ok", "ok", None),
    ("S20fail", "failed", "exit status 3"),
    ("S25warn", "ok", None),
    ("S30errzero", "error", "exited 0 but reported an error"),
    ("S40noexec", "skipped", "not executable"),
    ("S50killed", "failed", "killed by SIGKILL"),
    ("S60failed_word", "error", "exited 0 but reported an error"),
    ("S90last", "ok", None),
]


def test_builtin_runner_order_status_and_messages(world):
    mark = report.mark_syslog(str(world["syslog"]))
    run = events.run_builtin(str(world["tree"]), world["events"])
    rep = report.build_report(run, mark)
    got = [(a.name, a.status, a.reason) for a in run.actions]
    for (name, status, reason), (gname, gstatus, greason) in zip(EXPECTED, got):
        assert (gname, gstatus) == (name, status)
        if reason:
            assert reason in greason
    assert len(got) == len(EXPECTED)
    # every executable handler ran, in name order, even after failures, with its arguments
    ran = world["order"].read_text().splitlines()
    assert ran == [f"{n} {EVENT} {world['tree']}" for n, s, _ in EXPECTED if s != "skipped"]
    acts = {a.name: a for a in run.actions}
    assert [m.line for m in acts["S20fail"].messages] == ["[ERROR] cannot import user bob"]
    assert "details" in acts["S20fail"].output  # stdout and stderr captured together
    assert acts["S25warn"].messages[0].level == "WARNING"
    assert acts["S50killed"].signal == "SIGKILL" and "about to die" in acts["S50killed"].output
    # the system log: the line naming an action goes to it; the others are general
    assert [m.source for m in acts["S05syslog"].messages] == [str(world["syslog"])]
    assert [m.line.split(": ", 1)[1] for m in rep.general] == ["[WARNING] an unrelated warning"]
    assert rep.failed == ["S05syslog", "S20fail", "S30errzero", "S50killed", "S60failed_word"]
    assert rep.exit_code == 1


def test_cli_run_builtin_report(cli, world):
    r = cli("run", world["tree"], "--events-dir", world["events"], "--syslog", world["syslog"],
            "--dest-root", world["tree"].parent / "vmail")
    assert r.exit_code == 1, r.output
    out = r.stdout
    assert "Checks before the import:" in out and "WARNING [root_ssh]" in out
    assert "WARNING etc/e-smith/templates-custom/etc/postfix/main.cf/10custom" in out
    lines = out.splitlines()
    status_of = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("S") and parts[1][1:3].isdigit():
            status_of[parts[1]] = parts[0]
    assert status_of == {
        "S05syslog": "ERROR", "S10ok": "ok", "S20fail": "FAILED", "S25warn": "ok", "S30errzero": "ERROR",
        "S40noexec": "skipped", "S50killed": "FAILED", "S60failed_word": "ERROR", "S90last": "ok",
    }
    assert "[ERROR] cannot import user bob" in out
    assert "[WARNING] Maildir of bob exists: skipped" in out
    assert "killed by SIGKILL" in out
    assert "[WARNING] an unrelated warning" in out
    assert "stamped outside the window" not in out and "before the run" not in out
    assert "Result: FAILED (5 of 9 actions failed)" in out
    assert "[2/9] S10ok: ok" in r.stderr  # progress as it goes


def test_cli_run_json(cli, world):
    r = cli("run", "--json", world["tree"], "--events-dir", world["events"], "--syslog", world["syslog"])
    assert r.exit_code == 1, r.output
    d = json.loads(r.stdout)
    rep = d["report"]
    assert [a["name"] for a in rep["actions"]] == [n for n, _, _ in EXPECTED]
    assert [a["status"] for a in rep["actions"]] == [s for _, s, _ in EXPECTED]
    assert rep["ok"] is False and rep["exit_code"] == 1 and rep["runner"] == "builtin"
    assert any("root_ssh" in c for c in d["checks"])
    assert r.stderr == ""  # no progress lines in JSON mode


def test_all_ok_exits_0_and_skips_are_shown(cli, tmp_path, sme_tree):
    edir = tmp_path / "ev" / EVENT
    edir.mkdir(parents=True)
    handler(edir, "S10a", "echo fine")
    handler(edir, "S20b", "echo '[WARNING] only a warning'")
    handler(edir, "S30c", "exit 1", executable=False)
    os.symlink(tmp_path / "missing", edir / "S40broken")
    r = cli("run", sme_tree, "--events-dir", tmp_path / "ev", "--syslog", tmp_path / "no-such-log")
    assert r.exit_code == 0, r.output
    assert "Result: OK (2 skipped, see above)" in r.stdout
    assert "not executable" in r.stdout and "broken symbolic link" in r.stdout
    assert "no-such-log does not exist" in r.stdout


def test_failed_action_without_tagged_lines_shows_its_last_output(cli, tmp_path, sme_tree):
    edir = tmp_path / "ev" / EVENT
    edir.mkdir(parents=True)
    handler(edir, "S10quiet", "for i in 1 2 3 4 5 6 7; do echo line$i; done\nexit 5")
    r = cli("run", sme_tree, "--events-dir", tmp_path / "ev", "--syslog", tmp_path / "none")
    assert r.exit_code == 1
    assert "last 5 lines of its output:" in r.stdout
    assert "| line7" in r.stdout and "| line3" in r.stdout and "line2" not in r.stdout


def test_unreadable_syslog_is_said(tmp_path):
    run = events.EventRun(EVENT, "/d", "builtin", "x", started=time.time(), finished=time.time())
    lines, note = report.read_syslog(report.SyslogMark(str(tmp_path)), run.started, run.finished)
    assert lines == [] and "not readable" in note


def test_missing_events_dir_is_bad_input(cli, tmp_path, sme_tree):
    r = cli("run", sme_tree, "--events-dir", tmp_path / "nope")
    assert r.exit_code == 2 and f"no handlers for the event {EVENT}" in r.stderr


def test_run_refuses_without_databases(cli, tmp_path, sme_tree):
    (sme_tree / "home/e-smith/db/accounts").unlink()
    edir = tmp_path / "ev" / EVENT
    edir.mkdir(parents=True)
    handler(edir, "S10a", f"touch {tmp_path}/ran")
    r = cli("run", sme_tree, "--events-dir", tmp_path / "ev")
    assert r.exit_code == 2 and "home/e-smith/db/accounts" in r.stderr
    assert not (tmp_path / "ran").exists()


def test_run_on_a_tree_already_imported(cli, tmp_path):
    (tmp_path / "m/home/e-smith").mkdir(parents=True)
    r = cli("run", tmp_path / "m", "--events-dir", tmp_path)
    assert r.exit_code == 2 and "already ran" in r.stderr


# --------------------------------------------------------------------------- signal-event -j


def fake_signal_event(tmp_path: Path, lines: list[str], rc: int) -> Path:
    args = tmp_path / "args"
    body = f'echo "$*" > {args}\n' + "".join(f"echo '{line}'\n" for line in lines) + f"exit {rc}"
    return handler(tmp_path, "signal-event", body)


def jl(**kw) -> str:
    return json.dumps(kw)


A = "/etc/e-smith/events/actions/"


def test_signal_event_json_lines_followed(cli, tmp_path, sme_tree):
    prog = fake_signal_event(
        tmp_path,
        [
            jl(type="event-start", event=EVENT, steps=3),
            jl(type="action-start", action=A + "nethserver-base-migrate", step=1),
            jl(type="action-done", action=A + "nethserver-base-migrate", exit=0, time="0.25"),
            "a plain line that is not JSON: [WARNING] noisy",
            jl(type="action-start", action=A + "nethserver-mail-migrate", step=2),
            jl(type="action-done", action=A + "nethserver-mail-migrate", exit=1, time="1.5"),
            jl(type="action-start", action=A + "nethserver-samba-migrate", step=3),
            jl(type="event-done", event=EVENT, exit=1),
        ],
        rc=1,
    )
    r = cli("run", "--json", sme_tree, "--signal-event", prog, "--syslog", tmp_path / "none")
    assert r.exit_code == 1, r.output
    assert (tmp_path / "args").read_text().split() == ["-j", EVENT, str(sme_tree)]
    rep = json.loads(r.stdout)["report"]
    assert rep["runner"] == "signal-event"
    got = [(a["name"], a["status"], a["exit_code"], a["seconds"]) for a in rep["actions"]]
    assert got[:2] == [("nethserver-base-migrate", "ok", 0, 0.25), ("nethserver-mail-migrate", "failed", 1, 1.5)]
    assert got[2][:2] == ("nethserver-samba-migrate", "unknown")
    assert rep["signal_event_exit"] == 1
    assert [m["line"] for m in rep["syslog"]["messages"]] == ["a plain line that is not JSON: [WARNING] noisy"]


def test_signal_event_success(cli, tmp_path, sme_tree):
    prog = fake_signal_event(
        tmp_path,
        [jl(action=A + "x", type="action-start"), jl(action=A + "x", type="action-done", exit=0, time=0.1)],
        rc=0,
    )
    r = cli("run", sme_tree, "--signal-event", prog, "--syslog", tmp_path / "none")
    assert r.exit_code == 0, r.output
    assert "(signal-event:" in r.stdout and "Result: OK" in r.stdout


@pytest.mark.parametrize("value, status", [(0, "ok"), ("0", "ok"), ("success", "ok"), (2, "failed"),
                                           ("failed", "failed"), ("running", "unknown")])
def test_signal_event_exit_values(value, status):
    f = events.JsonFollower()
    f.feed(jl(action=A + "x", type="action-start"))
    f.feed(jl(action=A + "x", type="action-done", status=value))
    assert f.results(0)[0].status == status


def test_signal_event_nonzero_alone_fails(cli, tmp_path, sme_tree):
    prog = fake_signal_event(tmp_path, [jl(action=A + "x", exit=0)], rc=4)
    r = cli("run", sme_tree, "--signal-event", prog, "--syslog", tmp_path / "none")
    assert r.exit_code == 1 and "signal-event itself exited with status 4" in r.stdout


def test_events_dir_given_wins_over_signal_event(cli, tmp_path, sme_tree):
    prog = fake_signal_event(tmp_path, [], rc=0)
    edir = tmp_path / "ev" / EVENT
    edir.mkdir(parents=True)
    handler(edir, "S10a", "exit 0")
    r = cli("run", sme_tree, "--signal-event", prog, "--events-dir", tmp_path / "ev", "--syslog", tmp_path / "n")
    assert r.exit_code == 0 and "(builtin:" in r.stdout
    assert not (tmp_path / "args").exists()


# --------------------------------------------------------------------------- report helpers


@pytest.mark.parametrize(
    "line, level",
    [
        ("[ERROR] x", "ERROR"),
        ("foo: [WARNING] y", "WARNING"),
        ("Action: /x/y FAILED: 1 [0.2]", "FAILED"),
        ("check FAIL", "FAILED"),
        ("FAILOVER configured", None),
        ("error in lower case", None),
        ("all fine", None),
    ],
)
def test_classify(line, level):
    assert report.classify(line) == level


@pytest.mark.parametrize(
    "line, expected",
    [
        ("Mar  5 10:11:12 host prog: x", (3, 5, 10, 11, 12)),
        ("Dec 31 23:59:59 host prog: x", (12, 31, 23, 59, 59)),
        ("2024-03-05T10:11:12.123456+00:00 host prog: x", None),
        ("no stamp here", "none"),
    ],
)
def test_parse_time(line, expected):
    ts = report.parse_time(line, 2024)
    if expected == "none":
        assert ts is None
    elif expected is None:
        assert ts == pytest.approx(1709633472.123456)
    else:
        t = time.localtime(ts)
        assert (t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec) == expected

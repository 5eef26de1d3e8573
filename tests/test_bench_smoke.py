"""The bench's checker and a tiny end-to-end bench run: correctness only, no timing assertions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from maildirsync.lab import corpus as C

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ is a top-level package of the repository, not installed

from bench.contenders import rsync_stats  # noqa: E402
from bench.verify import MAILDIRSYNC_POLICY, RSYNC_POLICY, Hasher, compare  # noqa: E402


@pytest.fixture
def pair(tmp_path):
    src = C.generate(tmp_path / "src", C.spec_for("tiny", users=2, messages=10))
    dst = {u: tmp_path / "dst" / f"{u}@example.org" / "Maildir" for u in src.maildirs}
    for u, md in src.maildirs.items():
        shutil.copytree(md, dst[u])  # copy2: content and mtimes
    return src.maildirs, dst


def _a_message(md: Path) -> Path:
    return next(p for p in sorted((md / "cur").iterdir()))


def test_faithful_copy_checks_out(pair):
    src, dst = pair
    report = compare(src, dst, RSYNC_POLICY, Hasher())
    assert report.ok, report.problems
    assert report.messages == sum(1 for md in src.values() for f in C.folders_of(md)
                                  for sub in ("cur", "new") for _ in (f / sub).iterdir())


def test_wrong_copies_are_caught(pair):
    src, dst = pair
    user = sorted(dst)[1]
    victim = _a_message(dst[user])
    st = victim.stat()
    victim.write_bytes(victim.read_bytes()[:-2] + b"X\n")  # same size, same mtime, other bytes
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    other = _a_message(dst[user] / ".Sent")
    os.utime(other, (1, 1))
    (dst[user] / "new" / "1.M1P1Q1.intruder,S=1").write_bytes(b"x")
    gone = _a_message(dst[user] / ".Drafts")
    gone.unlink()
    report = compare(src, dst, RSYNC_POLICY, Hasher())
    text = "\n".join(report.problems)
    assert report.problem_count == 4
    assert f"content differs {user}:cur/{victim.name}" in text
    assert f"mtime differs {user}:.Sent/cur/{other.name}" in text
    assert "extra" in text and "intruder" in text
    assert f"missing {user}:.Drafts/cur/{gone.name}" in text


def test_policies_on_files_maildirsync_does_not_copy(pair):
    src, dst = pair
    user = sorted(dst)[0]
    for md in dst.values():
        for f in C.folders_of(md):
            for cache in ("dovecot.index", "dovecot.index.cache", "dovecot.index.log"):
                (f / cache).unlink()
    (dst[user] / "dovecot-uidvalidity").unlink()
    os.utime(dst[user] / "dovecot-uidlist", (1, 1))
    assert compare(src, dst, MAILDIRSYNC_POLICY, Hasher()).ok
    mirror = compare(src, dst, RSYNC_POLICY, Hasher())
    assert not mirror.ok and any("dovecot.index" in p for p in mirror.problems)
    # Control files are compared by content for maildirsync too.
    (dst[user] / "dovecot-uidlist").write_bytes(b"3 V1 N1 G00\n")
    assert not compare(src, dst, MAILDIRSYNC_POLICY, Hasher()).ok


def test_rsync_stats_parse():
    text = ("Number of files: 2,215 (reg: 1,800, dir: 415)\nNumber of regular files transferred: 1,234\n"
            "Total bytes sent: 3,456\nTotal bytes received: 2,765,432\n")
    assert rsync_stats(text) == {"files": 1234, "sent": 3456, "received": 2765432}


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("rsync"), reason="needs root, sshd and rsync")
def test_small_bench_all_scenarios_loopback(tmp_path):
    """Issue 4's CI smoke run: the small corpus (20 000 messages), every scenario, every contender, on
    loopback (about 90 s here). It checks that every destination is right; the times go to the log."""
    out = tmp_path / "results"
    r = subprocess.run(
        [sys.executable, "-m", "bench.run", "--size", "small", "--reps", "1", "--profile", "loopback", "--no-plots",
         "--out", str(out), "--work", str(tmp_path / "work"), "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    print(r.stdout[-4000:], r.stderr[-4000:])  # the times, for the log; nothing asserted on them
    results = json.loads((out / "latest" / "results.json").read_text())
    samples = results["samples"]
    from maildirsync.lab.scenarios import SCENARIOS

    for contender in ("script", "rsync", "maildirsync"):
        mine = [s for s in samples if s["contender"] == contender]
        assert [s["scenario"] for s in mine] == list(SCENARIOS)
        bad = [(s["scenario"], s["status"], s.get("error"), s.get("problems")) for s in mine if s["status"] != "ok"]
        assert not bad, bad
        assert all(s["checked_messages"] > 0 for s in mine)
    assert r.returncode == 0, r.stderr[-2000:]
    initial = next(s for s in samples if s["contender"] == "rsync" and s["scenario"] == "initial")
    assert initial["files_transferred"] > 0 and initial["wire_bytes"] > 0
    assert (out / "latest" / "results.md").read_text().startswith("# maildirsync bench")

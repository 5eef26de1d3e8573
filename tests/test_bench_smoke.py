"""The bench's checker and a tiny end-to-end bench run: correctness only, no timing assertions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import xxhash

from maildirsync.lab import corpus as C

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ is a top-level package of the repository, not installed

from bench import dovecot, goals, netlab  # noqa: E402
from bench.contenders import DoveadmBackup, rsync_stats  # noqa: E402
from bench.run import SSHD_CONFIG, check_disk  # noqa: E402
from bench.verify import DOVEADM_POLICY, MAILDIRSYNC_POLICY, RSYNC_POLICY, Hasher, compare  # noqa: E402
from maildirsync.lab import scenarios as S  # noqa: E402

ROOT = os.geteuid() == 0


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


# --- dovecot-uidlist: checked for the UIDs it gives, not byte for byte ---------------------------------


def _ul(path: Path) -> tuple[str, list[tuple[int, str]]]:
    head, *lines = path.read_text().splitlines()
    return head, [(int(u), b[1:]) for u, b in (line.split(" ", 1) for line in lines)]


def _write_ul(path: Path, head: str, entries: list[tuple[int, str]]) -> None:
    path.write_text(head + "\n" + "".join(f"{u} :{b}\n" for u, b in entries))


def _v(head: str, **fields) -> str:
    parts = dict((f[0], f[1:]) for f in head.split()[1:])
    parts.update({k: str(v) for k, v in fields.items()})
    return "3 " + " ".join(f"{k}{v}" for k, v in parts.items())


def _swapped(head, entries, present):
    (u1, b1), (u2, b2) = [e for e in entries if e[1] in present][:2]
    return head, sorted([(u1, b2), (u2, b1)] + [e for e in entries if e[0] not in (u1, u2)])


UIDLIST_CASES = {
    # name: (the destination's list from the source's header, lines and the bases the destination holds,
    #        the problem expected or None). The source's list ends with the line of a message expunged since.
    "as on the source": (lambda h, e, present: (h, e), None),
    "merged: the stale line dropped, the header's N brought up": (
        lambda h, e, present: (_v(h, N=e[-1][0] + 1), [x for x in e if x[1] in present]), None),
    "two UIDs swapped": (_swapped, "UIDs differ"),
    "a message not numbered": (lambda h, e, present: (h, [x for x in e if x[1] != sorted(present)[0]]),
                               "not numbered"),
    "next UID lowered": (lambda h, e, present: (_v(h, N=1), e[:-1]), "next UID lowered"),
    "another UIDVALIDITY": (lambda h, e, present: (_v(h, V=1), e), "UIDVALIDITY differs"),
    "unreadable": (lambda h, e, present: ("garbage", []), "uidlist missing or unreadable"),
}


@pytest.mark.parametrize("case", UIDLIST_CASES)
def test_maildirsync_uidlists_are_checked_by_numbering(pair, case):
    src, dst = pair
    user = sorted(dst)[0]
    head, entries = _ul(src[user] / "dovecot-uidlist")
    entries.append((entries[-1][0] + 1, "1700000000.M1P1Q999.gone,S=1,W=1"))  # Dovecot keeps it till compaction
    _write_ul(src[user] / "dovecot-uidlist", head, entries)
    present = {n.split(":")[0] for sub in ("cur", "new") for n in os.listdir(dst[user] / sub)}
    change, problem = UIDLIST_CASES[case]
    _write_ul(dst[user] / "dovecot-uidlist", *change(head, entries, present))
    report = compare(src, dst, MAILDIRSYNC_POLICY, Hasher())
    text = "\n".join(report.problems)
    if problem is None:
        assert report.ok, text
    else:
        assert report.problem_count == 1 and problem in text, text


# --- doveadm backup: messages by content per folder ------------------------------------------------------


def _as_dsync_writes_it(src_md: Path, dst_md: Path) -> None:
    """A copy with other file names, other keyword letters (dovecot-keywords reversed), a list of the new
    bases under the same UIDs, and subscriptions in Dovecot 2.3's format: what doveadm backup leaves."""
    shutil.copytree(src_md, dst_md)
    for folder in C.folders_of(dst_md):
        kw = C.folders_of(dst_md) and (folder / "dovecot-keywords")
        names = kw.read_text().splitlines() if kw.exists() else []
        flip = {chr(ord("a") + i): chr(ord("a") + len(names) - 1 - i) for i in range(len(names))}
        if names:
            kw.write_text("".join(f"{i} {n.split(' ', 1)[1]}\n" for i, n in enumerate(reversed(names))))
        renamed = {}
        for sub in ("cur", "new"):
            for n in sorted(os.listdir(folder / sub)):
                base, _, info = n.partition(":2,")
                new_base = "dsync." + base.replace(".", "_")
                flags = "".join(sorted(flip.get(c, c) for c in info))
                new = new_base + (f":2,{flags}" if _ else "")
                os.rename(folder / sub / n, folder / sub / new)
                renamed[base] = new_base
        head, entries = _ul(folder / "dovecot-uidlist")
        _write_ul(folder / "dovecot-uidlist", head, [(u, renamed[b]) for u, b in entries if b in renamed])
    subs = (dst_md / "subscriptions").read_text().split()
    (dst_md / "subscriptions").write_text("V\t2\n\n" + "".join(f"{s.replace('.', chr(9))}\n" for s in subs))


@pytest.fixture
def dsync_pair(tmp_path):
    src = C.generate(tmp_path / "src", C.spec_for("tiny", users=2, messages=10, layout="sme8"))
    dst = {u: tmp_path / "dst" / f"{u}@example.org" / "Maildir" for u in src.maildirs}
    for u, md in src.maildirs.items():
        _as_dsync_writes_it(md, dst[u])
    return src.maildirs, dst


def _any_message(md: Path, with_keyword: bool = False) -> Path:
    for folder in C.folders_of(md):
        for p in sorted((folder / "cur").iterdir()):
            if not with_keyword or any(c.islower() for c in p.name.split(":2,")[1]):
                return p
    raise AssertionError("no such message")


def _reflag(p: Path, change) -> None:
    base, flags = p.name.split(":2,")
    p.rename(p.with_name(f"{base}:2,{''.join(sorted(change(flags)))}"))


DSYNC_DAMAGE = {
    # name: (damage done to one destination message, problem expected)
    "a flag lost": (lambda p: _reflag(p, lambda f: f.replace("S", "") if "S" in f else f + "F"), "flags differ"),
    "a keyword letter of another keyword": (
        lambda p: _reflag(p, lambda f: f.translate(str.maketrans("ab", "ba"))), "flags differ"),
    "the INTERNALDATE lost": (lambda p: os.utime(p, (1, 1)), "mtime differs"),
    "other content": (lambda p: p.write_bytes(p.read_bytes() + b"x"), "missing"),
    "gone": (lambda p: p.unlink(), "missing"),
}


def test_doveadm_policy_accepts_its_own_names_letters_and_formats(dsync_pair):
    src, dst = dsync_pair
    report = compare(src, dst, DOVEADM_POLICY, Hasher())
    assert report.ok, report.problems
    assert report.messages == sum(len(os.listdir(f / s)) for md in src.values() for f in C.folders_of(md)
                                  for s in ("cur", "new"))
    assert not compare(src, dst, MAILDIRSYNC_POLICY, Hasher()).ok  # by name, nothing matches


@pytest.mark.parametrize("damage", DSYNC_DAMAGE)
def test_doveadm_policy_catches_what_a_backup_must_keep(dsync_pair, damage):
    src, dst = dsync_pair
    change, problem = DSYNC_DAMAGE[damage]
    change(_any_message(dst[sorted(dst)[0]], with_keyword="keyword" in damage))
    report = compare(src, dst, DOVEADM_POLICY, Hasher())
    assert problem in "\n".join(report.problems), report.problems


def test_doveadm_policy_checks_uids_and_subscriptions(dsync_pair):
    src, dst = dsync_pair
    user = sorted(dst)[0]
    head, entries = _ul(dst[user] / "dovecot-uidlist")
    _write_ul(dst[user] / "dovecot-uidlist", head, [(u + 1000, b) for u, b in entries])
    (dst[user] / "subscriptions").write_text("V\t2\n\nSent\n")
    text = "\n".join(compare(src, dst, DOVEADM_POLICY, Hasher()).problems)
    assert "UIDs differ" in text and "subscriptions differ" in text


# --- goals, disk -------------------------------------------------------------------------------------


def _summary(ratios: dict, rss_kib: dict) -> dict:
    """A summary as report.summarise makes it: ratios[(versus, size, profile, scenario, metric)] = median."""
    out = {"cells": {}, "ratios": {}}
    for (versus, size, prof, scen, metric), median in ratios.items():
        st = {"median": median, "min": median, "max": median, "n": 3}
        out["ratios"].setdefault(versus, {}).setdefault(f"{size}|{prof}|{scen}", {})[metric] = st
    for (size, prof), kib in rss_kib.items():
        out["cells"][f"{size}|{prof}|initial|maildirsync"] = {"maxrss_kib": {"max": kib}}
    return out


GOAL_CASES = [
    # (goal text, where, measured ratios or RSS, verdict)
    ("initial", "medium, loopback", {("rsync", "medium", "loopback", "initial", "wall"): 0.69}, "met"),
    ("initial", "medium, loopback", {("rsync", "medium", "loopback", "initial", "wall"): 1.4}, "missed by 2.0×"),
    ("initial", "medium, loopback", {("rsync", "small", "loopback", "initial", "wall"): 0.5}, "not run"),
    ("no change", "large, loopback", {("rsync", "large", "loopback", "nochange", "wall"): 0.1}, "met"),
    ("10 % flags, bytes on the wire", "medium, loopback", {("rsync", "medium", "loopback", "flags", "wire"): 0.06},
     "missed by 1.2×"),
    ("moved: ≥ 10× faster than the old script", "medium, loopback",
     {("script", "medium", "loopback", "moved", "wall"): 0.09}, "met"),
    ("wan, 10 % flags: ≥ 10× faster than rsync", "medium, wan", {("rsync", "medium", "wan", "flags", "wall"): 0.2},
     "missed by 2.0×"),
]


@pytest.mark.parametrize("goal, where, measured, verdict", GOAL_CASES)
def test_each_goal_of_issue_10_is_set_beside_the_measured_ratio(goal, where, measured, verdict):
    rows = {(r[0], r[1]): r for r in goals.rows(_summary(measured, {}))}
    assert rows[(goal, where)][4] == verdict


@pytest.mark.parametrize("rss_kib, peaks, growth", [
    # peak RSS per (size, profile), KiB -> the verdict for each size, and for "no larger on large"
    ({("medium", "loopback"): 90_000, ("large", "loopback"): 80_000}, {"medium": "met", "large": "met"}, "met"),
    ({("medium", "loopback"): 90_000, ("large", "loopback"): 95_000}, {"medium": "met", "large": "met"}, "missed"),
    ({("medium", "loopback"): 120_000}, {"medium": "missed by 1.2×"}, "not run"),  # 123 MB
])
def test_peak_rss_goals(rss_kib, peaks, growth):
    rows = goals.rows(_summary({}, rss_kib))
    assert {r[1].split(",")[0]: r[4] for r in rows if r[0] == "peak RSS"} == peaks
    assert [r[4] for r in rows if r[0].startswith("peak RSS no larger")] == [growth]


@pytest.mark.skipif(dovecot.mail_user() is None, reason="no vmail or nobody user")
def test_doveadm_is_unavailable_below_a_directory_its_user_cannot_search(searchable_tmp):
    pw = dovecot.mail_user()
    private = searchable_tmp / "private"
    private.mkdir(mode=0o700)
    assert dovecot.unsearchable([private / "work" / "src"], pw) == private
    assert dovecot.unsearchable([searchable_tmp / "work" / "src"], pw) is None


def test_a_run_that_cannot_fit_on_the_disk_is_refused_before_it_starts(tmp_path):
    assert check_disk(tmp_path, [C.spec_for("tiny")], ["rsync", "maildirsync"]) is None
    huge = C.CorpusSpec(users=10_000, folders=100, messages=100_000)
    why = check_disk(tmp_path / "not" / "yet", [huge], ["rsync"])
    assert why and "GB" in why and "--work" in why


def test_rsync_stats_parse():
    text = ("Number of files: 2,215 (reg: 1,800, dir: 415)\nNumber of regular files transferred: 1,234\n"
            "Total bytes sent: 3,456\nTotal bytes received: 2,765,432\n")
    assert rsync_stats(text) == {"files": 1234, "sent": 3456, "received": 2765432}


NO_DOVEADM = dovecot.unavailable() if ROOT else "needs root"


@pytest.fixture
def searchable_tmp():
    """A scratch directory the doveadm contender's mail user can reach (pytest's tmp_path is under a
    directory only root can search; the bench's default work directory is under /var/tmp too)."""
    path = Path(tempfile.mkdtemp(prefix="msb-test-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _files(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root (directories aside): size, mtime, content hash."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, xxhash.xxh3_64_hexdigest(p.read_bytes()))
    return out


@pytest.mark.skipif(bool(NO_DOVEADM), reason=f"doveadm contender: {NO_DOVEADM}")
def test_doveadm_contender_keeps_messages_flags_and_uids_and_leaves_the_source_files_alone(searchable_tmp):
    """doveadm backup -R over a real sshd, user by user, through the scenarios as Dovecot does them: every
    destination checks out by content, flags and UIDs; the source's files are untouched (its Dovecot only
    takes the uidlist's dotlock, which moves the folders' own mtimes)."""
    tmp = searchable_tmp
    made = C.generate(tmp / "src", C.spec_for("tiny", users=2, messages=15, layout="sme8"))
    net = netlab.start(netlab.PROFILES["loopback"], tmp / "net", sshd_config=SSHD_CONFIG)
    try:
        c = DoveadmBackup(net, made.maildirs, made.users_dir, made.domain, tmp / "work")
        assert c.unavailable() is None
        c.reset()
        hasher = Hasher()
        for step, scenario in enumerate(("initial", "flags", "moved", "deleted", "new", "churn")):
            mutation = S.apply(scenario, made.root, "sme8", seed=1, step=step, uidlists="dovecot")
            before = _files(made.root)
            out = c.run()
            assert out.ok, (scenario, out.error)
            assert _files(made.root) == before, scenario
            report = compare(made.maildirs, c.dest_maildirs(), DOVEADM_POLICY, hasher)
            assert report.ok, (scenario, mutation, report.problems)
            assert report.messages == sum(len(os.listdir(f / sub)) for md in made.maildirs.values()
                                          for f in C.folders_of(md) for sub in ("cur", "new"))
    finally:
        net.close()


@pytest.mark.skipif(not ROOT or not shutil.which("rsync"), reason="needs root, sshd and rsync")
def test_profiled_tiny_bench_writes_one_profile_per_scenario(tmp_path, searchable_tmp):
    """--profile-maildirsync: one pstats file per maildirsync sample, readable by pstats, a text summary
    beside it, the report saying the times are profiled; doveadm beside the others where it is here."""
    import pstats

    profiles, out = tmp_path / "profiles", tmp_path / "results"
    contenders = "rsync,maildirsync" + ("" if NO_DOVEADM else ",doveadm")
    r = subprocess.run(
        [sys.executable, "-m", "bench.run", "--size", "tiny", "--users", "2", "--folders", "2", "--messages", "10",
         "--reps", "1", "--contenders", contenders, "--scenarios", "initial,flags,deleted",
         "--profile-maildirsync", str(profiles), "--no-plots", "--out", str(out), "--work", str(searchable_tmp),
         "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = json.loads((out / "latest" / "results.json").read_text())
    assert {(s["contender"], s["status"]) for s in results["samples"]} == {(c, "ok") for c in contenders.split(",")}
    made = sorted(p.name for p in profiles.glob("*.pstats"))
    assert made == ["tiny-loopback-rep1-0-initial.pstats", "tiny-loopback-rep1-1-flags.pstats",
                    "tiny-loopback-rep1-2-deleted.pstats"]
    for name in made:
        assert pstats.Stats(str(profiles / name)).total_calls > 1000
        assert "cumulative" in (profiles / name).with_suffix(".txt").read_text()
    assert all(s.get("profiled") for s in results["samples"] if s["contender"] == "maildirsync")
    md = (out / "latest" / "results.md").read_text()
    assert "**Profiled:**" in md and "## Issue 10 goals" in md


@pytest.mark.slow
@pytest.mark.skipif(not ROOT or not shutil.which("rsync") or not netlab.netns_usable(),
                    reason="needs root, network namespaces, sshd and rsync")
def test_wan_profile_with_a_subset_of_scenarios(tmp_path):
    """--profile wan with --scenarios initial,new,flags: the shaped link (tbf, and netem or the relay), only
    those syncs, every destination right (the reference runs' wan part, on the tiny corpus)."""
    out = tmp_path / "results"
    r = subprocess.run(
        [sys.executable, "-m", "bench.run", "--size", "tiny", "--reps", "1", "--profile", "wan", "--no-plots",
         "--contenders", "rsync,maildirsync", "--scenarios", "initial,new,flags", "--out", str(out),
         "--work", str(tmp_path / "work"), "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = json.loads((out / "latest" / "results.json").read_text())
    assert [(s["scenario"], s["status"]) for s in results["samples"] if s["contender"] == "maildirsync"] == [
        ("initial", "ok"), ("new", "ok"), ("flags", "ok")]
    assert "100 Mbit/s" in results["profiles"]["wan"]["emulation"]


@pytest.mark.skipif(not ROOT or not shutil.which("rsync"), reason="needs root, sshd and rsync")
def test_small_bench_all_scenarios_loopback(tmp_path):
    """Issue 4's CI smoke run: the small corpus (20 000 messages), every scenario as Dovecot does them, the
    two rsyncs and maildirsync, on loopback (about 90 s here; doveadm is run by the tiny tests above). It
    checks that every destination is right; the times go to the log."""
    out = tmp_path / "results"
    r = subprocess.run(
        [sys.executable, "-m", "bench.run", "--size", "small", "--reps", "1", "--profile", "loopback", "--no-plots",
         "--contenders", "script,rsync,maildirsync", "--out", str(out), "--work", str(tmp_path / "work"), "--quiet"],
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

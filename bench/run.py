"""maildirsync against rsync, on the same generated corpus, over the same sshd, in the same run.

    python -m bench.run --size medium                       # loopback, 3 repetitions, all scenarios
    python -m bench.run --size small --profile loopback,lan,wan
    python -m bench.run --size tiny --reps 1                 # the CI smoke run

For each corpus size and network profile, each repetition builds the source corpus afresh (same seed,
so the same tree), gives every contender an empty destination, then walks the scenarios in order; after
each mutation of the source every contender syncs in turn (the order rotates between repetitions) and
its destination is checked against the source. A contender that fails or ends wrong is reported so and
its time is left out of the statistics. Results go to ``bench/results/<run>/``: results.json, results.md
and PNG plots (see bench/README.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import netlab, report
from bench.contenders import CONTENDERS, Contender
from bench.verify import Hasher, compare
from maildirsync.lab import corpus, scenarios

REPO = Path(__file__).resolve().parent.parent
CIPHER = "aes128-gcm@openssh.com"
# Forced on the server, so every client (OpenSSH for rsync, asyncssh for maildirsync) uses it.
SSHD_CONFIG = f"Ciphers {CIPHER}\n"


class Progress:
    def __init__(self, total: int, quiet: bool = False):
        self.total, self.done, self.t0, self.quiet = total, 0, time.monotonic(), quiet
        self.tty = sys.stderr.isatty()

    def show(self, text: str, advance: bool = False) -> None:
        self.done += advance
        if self.quiet:
            return
        elapsed = time.monotonic() - self.t0
        line = f"[{self.done}/{self.total} {elapsed:6.0f}s] {text}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line[: shutil.get_terminal_size().columns - 1])
        elif advance:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\n")


def _version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def _meta(args) -> dict:
    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(), "rsync": _version(["rsync", "--version"]),
        "ssh": _version(["ssh", "-V"]), "cipher": CIPHER, "commit": commit + ("-dirty" if dirty else ""),
        "argv": sys.argv[1:], "reps": args.reps, "seed": args.seed, "cache": "warm (page cache not dropped)",
        "uidlists": args.uidlists,
    }


def measure(c: Contender, net: netlab.Network, source: dict[str, Path], hasher: Hasher) -> dict:
    wire0, scpu0 = net.wire_bytes(), netlab.server_cpu(net.server)
    out = c.run()
    netlab.wait_idle(net.server)
    sample = {
        "wall_s": round(out.wall_s, 4), "cpu_s": round(out.cpu_s, 4),
        "server_cpu_s": round(netlab.server_cpu(net.server) - scpu0, 3),
        "maxrss_kib": out.maxrss_kib, "wire_bytes": net.wire_bytes() - wire0,
        "app_bytes": out.app_bytes, "files_transferred": out.files_transferred, **out.extra,
    }
    if not out.ok:
        sample.update(status="failed", error=out.error)
        return sample
    check = compare(source, c.dest_maildirs(), c.policy, hasher)
    sample.update(status="ok" if check.ok else "wrong", checked_files=check.files, checked_messages=check.messages)
    if not check.ok:
        sample.update(problem_count=check.problem_count, problems=check.problems)
    return sample


def bench_one(spec: corpus.CorpusSpec, size_name: str, profile: netlab.Profile, args, work: Path,
              results: dict, progress: Progress, hasher: Hasher, outdir: Path) -> None:
    net = netlab.start(profile, work / f"net-{profile.name}", sshd_config=SSHD_CONFIG)
    results["profiles"][profile.name] = {"emulation": net.emulation, "rate_mbit": profile.rate_mbit,
                                         "rtt_ms": profile.rtt_ms}
    src = work / "src"
    try:
        users = corpus.user_names(spec.users)
        source_hint = {u: corpus.maildir_path(src, "sme8", u) for u in users}
        contenders = [CONTENDERS[k](net, source_hint, src / corpus.SME8_USERS, spec.domain, work,
                                    **({"jobs": args.jobs} if k == "maildirsync" else {}))
                      for k in args.contenders]
        unavailable = {c.key: c.unavailable() for c in contenders}
        for key, why in unavailable.items():
            if why:
                results["unavailable"][key] = why
        for rep in range(args.reps):
            if src.exists():
                subprocess.run(["rm", "-rf", str(src)], check=True)
            progress.show(f"{size_name}/{profile.name} rep {rep + 1}: generating {spec.total_messages} messages")
            made = corpus.generate(src, spec)
            results["corpora"][size_name] = {"messages": made.messages, "bytes": made.bytes,
                                             "users": spec.users, "folders": spec.folders,
                                             "per_folder": spec.messages, "seed": spec.seed}
            source = corpus.find_maildirs(src, "sme8")
            for c in contenders:
                c.reset()
            order = contenders[rep % len(contenders):] + contenders[: rep % len(contenders)]
            for step, scenario in enumerate(args.scenarios):
                mutation = scenarios.apply(scenario, src, "sme8", seed=args.seed, step=step,
                                           uidlists=args.uidlists).as_dict()
                for c in order:
                    base = {"size": size_name, "profile": profile.name, "rep": rep, "step": step,
                            "scenario": scenario, "contender": c.key, "mutation": mutation}
                    if unavailable[c.key]:
                        results["samples"].append({**base, "status": "unavailable"})
                        progress.show(f"{scenario}: {c.key} unavailable", advance=True)
                        continue
                    progress.show(f"{size_name}/{profile.name} rep {rep + 1}/{args.reps} {scenario}: {c.key} ...")
                    pstats_file = None
                    if c.key == "maildirsync" and args.profile_maildirsync:
                        pstats_file = args.profile_maildirsync / f"{size_name}-{profile.name}-rep{rep + 1}-{step}-{scenario}.pstats"
                        c.profile_to = pstats_file
                    sample = {**base, **measure(c, net, source, hasher)}
                    if pstats_file is not None:
                        sample["profiled"] = str(pstats_file)
                        profile_summary(pstats_file)
                    results["samples"].append(sample)
                    if len(hasher.cache) > 3_000_000:  # ~250 bytes each: the large corpus' trees are 1 M files each
                        hasher.cache.clear()
                    progress.show(f"{size_name}/{profile.name} rep {rep + 1}/{args.reps} {scenario}: {c.key} "
                                  f"{sample['status']} {sample['wall_s']:.2f}s", advance=True)
            report.write(results, outdir, plots=False)  # a long run can be inspected (or survive a crash)
    finally:
        net.close()


def profile_summary(path: Path) -> None:
    """Beside a pstats file, the functions with the most time of their own and the most cumulative time,
    as text (``python -m pstats FILE`` for the rest)."""
    import io
    import pstats

    if not path.exists():
        return
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf).strip_dirs()
    buf.write(f"{path.name}: times summed over threads\n\n")
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(30)
    path.with_suffix(".txt").write_text(buf.getvalue())


def disk_needed(spec: corpus.CorpusSpec, contenders: list[str]) -> int:
    """Bytes the scratch directory holds at most: the source and one destination per contender, every file
    in whole 4 KiB blocks (most messages are smaller than one), plus a quarter for what the scenarios and
    the contenders add (deliveries, directories' own blocks, indexes, state). Message sizes are sampled
    from the spec's own distribution (within 5 % of `du` on the small and large corpora)."""
    rng = random.Random(0)
    sizes = [max(corpus.draw_size(rng, spec), 600) for _ in range(20_000)]  # no message is below its headers
    per_message = sum(-(-n // 4096) * 4096 for n in sizes) / len(sizes)
    n = spec.messages
    # Per folder: cur/ new/ tmp/ and itself, dovecot.index, .cache, .log (~17 KiB), the uidlist, keywords.
    per_folder = 4 * 4096 + sum(-(-b // 4096) * 4096 for b in (256 + 40 * n, 1002 + 120 * n, 17 * 1024, 72 * n, 1))
    copy = spec.total_messages * per_message + spec.users * spec.folders * per_folder
    return int(copy * (1 + len(contenders)) * 1.25)


def check_disk(work: Path, specs: list[corpus.CorpusSpec], contenders: list[str]) -> str | None:
    """Why the run would not fit in ``work``'s file system, or None."""
    need = max(disk_needed(s, contenders) for s in specs)
    probe = work
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    files = int(max(s.total_messages for s in specs) * (1 + len(contenders)) * 1.25)
    inodes = os.statvfs(probe).f_favail
    if need > free:
        what = f"about {need / 1e9:.1f} GB under {work}, and only {free / 1e9:.1f} GB are free there"
    elif 0 < inodes < files:  # (0: a file system that does not count them)
        what = f"about {files} files under {work}, and its file system has room for only {inodes} more"
    else:
        return None
    return (f"the corpus, its {len(contenders)} destinations and their indexes need {what}: give --work a directory "
            "on a larger disk, or run fewer --contenders")


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--size", default="small", help="comma list of " + ", ".join(corpus.SIZES) + " (default small)")
    p.add_argument("--users", type=int, help="override the size's users (with --folders, --messages)")
    p.add_argument("--folders", type=int)
    p.add_argument("--messages", type=int, help="per folder")
    p.add_argument("--profile", default="loopback", help="comma list of " + ", ".join(netlab.PROFILES))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--contenders", default=",".join(CONTENDERS), help="comma list of " + ", ".join(CONTENDERS))
    p.add_argument("--scenarios", default=",".join(scenarios.SCENARIOS),
                   help="comma list, run in this order (default: all: %(default)s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--uidlists", choices=scenarios.UIDLISTS, default="dovecot",
                   help="dovecot: the corpus and scenarios leave dovecot-uidlist as Dovecot does (default); rewrite: "
                        "as the lab did before issue 10 (no history in the corpus, every touched list rewritten), "
                        "to compare with older results")
    p.add_argument("-j", "--jobs", type=int, help="maildirsync -j")
    p.add_argument("--profile-maildirsync", type=Path, metavar="DIR",
                   help="profile every maildirsync sample (MAILDIRSYNC_PROFILE): DIR/<size>-<profile>-rep<N>-<step>-"
                        "<scenario>.pstats, and a .txt summary beside it; profiled times are not comparable")
    p.add_argument("--work", type=Path, help="scratch directory (default: a fresh one under /var/tmp)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="results folder (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    a.sizes = a.size.split(",")
    a.profiles = a.profile.split(",")
    a.contenders = a.contenders.split(",")
    a.scenarios = a.scenarios.split(",")
    for name, allowed, given in (("size", corpus.SIZES, a.sizes), ("profile", netlab.PROFILES, a.profiles),
                                 ("contender", CONTENDERS, a.contenders),
                                 ("scenario", scenarios.SCENARIOS, a.scenarios)):
        bad = [g for g in given if g not in allowed]
        if bad:
            p.error(f"unknown {name} {bad} (choose from {', '.join(allowed)})")
    if a.scenarios[0] != "initial":
        p.error("the scenarios must start with 'initial' (destinations start empty)")
    if len(set(a.scenarios)) != len(a.scenarios):
        p.error("a scenario is given twice in --scenarios")
    if a.profile_maildirsync is not None:
        a.profile_maildirsync = a.profile_maildirsync.resolve()
        if "maildirsync" not in a.contenders:
            p.error("--profile-maildirsync needs the maildirsync contender")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = args.out / f"{stamp}-{'+'.join(args.sizes)}-{'+'.join(args.profiles)}"
    work = args.work or Path(os.environ.get("TMPDIR", "/var/tmp")) / f"maildirsync-bench-{os.getpid()}"
    history = {} if args.uidlists == "dovecot" else {"stale_lines": 0.0}
    specs = [corpus.spec_for(size, seed=args.seed, layout="sme8", users=args.users, folders=args.folders,
                             messages=args.messages, **history) for size in args.sizes]
    no_room = check_disk(work, specs, args.contenders)
    if no_room:
        print(f"bench: {no_room}", file=sys.stderr)
        return 2
    if args.profile_maildirsync is not None:
        args.profile_maildirsync.mkdir(parents=True, exist_ok=True)
    outdir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    results = {"meta": _meta(args), "profiles": {}, "corpora": {}, "unavailable": {}, "samples": []}
    results["meta"]["login_shell"] = netlab.quiet_login_shell(work) or "as the host has it"
    total = len(args.sizes) * len(args.profiles) * args.reps * len(args.scenarios) * len(args.contenders)
    progress = Progress(total, args.quiet)
    hasher = Hasher()
    try:
        for size, spec in zip(args.sizes, specs):
            for prof in args.profiles:
                bench_one(spec, size, netlab.PROFILES[prof], args, work, results, progress, hasher, outdir)
    finally:
        progress.end()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report.write(results, outdir, plots=not args.no_plots)
    latest = args.out / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(outdir.name)
    print((outdir / "results.md").read_text())
    print(f"results: {outdir}")
    bad = [s for s in results["samples"] if s["status"] in ("failed", "wrong")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

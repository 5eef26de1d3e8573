"""Statistics, Markdown and plots from the bench's samples.

    python -m bench.report RESULTS.json [MORE.json ...] --out DIR   # merge runs (e.g. small + medium)

Only samples whose destination checked out (``ok``) enter the statistics. Ratios are taken pair by pair:
maildirsync's sample against rsync's of the same size, profile, repetition and scenario, then summarised.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from bench import goals

ORDER = ("script", "rsync", "maildirsync", "doveadm")
COLORS = {"script": "tab:gray", "rsync": "tab:orange", "maildirsync": "tab:blue", "doveadm": "tab:green"}
LABELS = {"script": "(a) rsync per user", "rsync": "(b) rsync whole tree", "maildirsync": "(c) maildirsync",
          "doveadm": "(d) doveadm backup"}

def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise(results: dict) -> dict:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for s in results["samples"]:
        groups[(s["size"], s["profile"], s["scenario"], s["contender"])].append(s)
    cells = {}
    for key, samples in groups.items():
        ok = [s for s in samples if s["status"] == "ok"]
        cells["|".join(key)] = {
            "statuses": {st: sum(s["status"] == st for s in samples) for st in {s["status"] for s in samples}},
            "wall_s": _stats([s["wall_s"] for s in ok]),
            "cpu_s": _stats([s["cpu_s"] for s in ok]),
            "server_cpu_s": _stats([s["server_cpu_s"] for s in ok]),
            "maxrss_kib": _stats([s["maxrss_kib"] for s in ok]),
            "wire_bytes": _stats([s["wire_bytes"] for s in ok]),
            "app_bytes": _stats([s["app_bytes"] for s in ok if s.get("app_bytes") is not None]),
            "files_transferred": _stats([s["files_transferred"] for s in ok if s.get("files_transferred") is not None]),
        }
    pairs: dict[tuple, dict] = defaultdict(dict)
    for s in results["samples"]:
        if s["status"] == "ok":
            pairs[(s["size"], s["profile"], s["scenario"], s["rep"])][s["contender"]] = s
    ratios: dict[str, dict] = {}
    for other in ("rsync", "script", "doveadm"):
        by: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for (size, prof, scen, _rep), got in pairs.items():
            if "maildirsync" in got and other in got:
                m, o = got["maildirsync"], got[other]
                for metric, a, b in (("wall", m["wall_s"], o["wall_s"]), ("cpu", m["cpu_s"], o["cpu_s"]),
                                     ("wire", m["wire_bytes"], o["wire_bytes"])):
                    if b:
                        by[(size, prof, scen)][metric].append(a / b)
        for key, metrics in by.items():
            ratios.setdefault(other, {})["|".join(key)] = {k: _stats(v) for k, v in metrics.items()}
    return {"cells": cells, "ratios": ratios}


def _fmt_s(st: dict | None) -> str:
    if not st:
        return "—"
    return f"{st['median']:.2f} s ({st['min']:.2f}–{st['max']:.2f})"


def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def _fmt_ratio(st: dict | None) -> str:
    return "—" if not st else f"{st['median']:.3g}× ({st['min']:.3g}–{st['max']:.3g})"


def _status(cell: dict | None) -> str:
    if not cell:
        return "not run"
    bad = {k: v for k, v in cell["statuses"].items() if k != "ok"}
    return ", ".join(f"{v} {k}" for k, v in sorted(bad.items()))


def markdown(results: dict, summary: dict) -> str:
    meta = results["meta"]
    lines = [f"# maildirsync bench — {meta['date']}", "",
             f"Host: {meta['cpus']} × {meta['cpu']}, {meta['mem_gib']} GiB, kernel {meta['kernel']}; "
             f"{meta['rsync']}; {meta['ssh']}; cipher {meta['cipher']} for all; commit {meta['commit']}; "
             f"{meta['reps']} interleaved repetitions; {meta['cache']}; dovecot-uidlist "
             f"{'as Dovecot leaves it' if meta.get('uidlists', 'dovecot') == 'dovecot' else 'rewritten as the lab did before issue 10 (--uidlists rewrite)'}.",
             ""]
    codes = sorted({s["code"] for s in results["samples"] if s.get("code")})
    if len(codes) > 1:
        lines += [f"**Warning:** maildirsync's source changed during the run ({len(codes)} versions: "
                  f"{', '.join(codes)}); its repetitions did not all run the same code.", ""]
    for key, why in results.get("unavailable", {}).items():
        lines += [f"**{LABELS.get(key, key)} unavailable:** {why}", ""]
    if any(s.get("profiled") for s in results["samples"]):
        lines += ["**Profiled:** maildirsync ran under cProfile (`--profile-maildirsync`), which slows it down: "
                  "its times here are not comparable with the others'.", ""]
    for name, prof in results["profiles"].items():
        lines.append(f"- profile **{name}**: {prof['emulation']}")
    lines.append("")
    combos = sorted({(s["size"], s["profile"]) for s in results["samples"]}, key=lambda x: (
        results["corpora"].get(x[0], {}).get("messages", 0), x[1]))
    cells, ratios = summary["cells"], summary["ratios"]
    if any(s["contender"] == "maildirsync" for s in results["samples"]):
        lines += goals.markdown(summary)
    for size, prof in combos:
        c = results["corpora"].get(size, {})
        scen_order = list(dict.fromkeys(s["scenario"] for s in results["samples"] if s["size"] == size))
        conts = [k for k in ORDER if any(s["contender"] == k for s in results["samples"])]
        heads = []
        if "maildirsync" in conts:
            heads += ["(c)/(b) time", "(c)/(b) bytes"] if "rsync" in conts else []
            heads += ["(c)/(a) time"] if "script" in conts else []
            heads += ["(c)/(d) time"] if "doveadm" in conts else []
        lines += [f"## {size}: {c.get('messages', '?')} messages, {c.get('bytes', 0) / 2**20:.0f} MiB, "
                  f"{c.get('users', '?')} users × {c.get('folders', '?')} folders — {prof}", "",
                  "Wall time, median (min–max) over the repetitions whose destination checked out:", "",
                  "| scenario | " + " | ".join(LABELS[k] for k in conts) + " |" + "".join(f" {h} |" for h in heads),
                  "|---" * (len(conts) + 1 + len(heads)) + "|"]
        for scen in scen_order:
            row = [scen]
            for k in conts:
                cell = cells.get(f"{size}|{prof}|{scen}|{k}")
                bad = _status(cell)
                row.append(_fmt_s(cell and cell["wall_s"]) + (f" **{bad}**" if bad else ""))
            rb = ratios.get("rsync", {}).get(f"{size}|{prof}|{scen}", {})
            ra = ratios.get("script", {}).get(f"{size}|{prof}|{scen}", {})
            rd = ratios.get("doveadm", {}).get(f"{size}|{prof}|{scen}", {})
            picks = {"(c)/(b) time": rb.get("wall"), "(c)/(b) bytes": rb.get("wire"), "(c)/(a) time": ra.get("wall"),
                     "(c)/(d) time": rd.get("wall")}
            row += [_fmt_ratio(picks[h]) for h in heads]
            lines.append("| " + " | ".join(row) + " |")
        lines += ["", "Details (medians): client CPU, server CPU (sshd + remote side), peak RSS of the largest "
                  "client process, bytes on the wire (interface counters), bytes the tool reports, files transferred:",
                  "", "| scenario | contender | CPU s | server CPU s | peak RSS MiB | wire | tool bytes | files |",
                  "|---|---|---|---|---|---|---|---|"]
        for scen in scen_order:
            for k in conts:
                cell = cells.get(f"{size}|{prof}|{scen}|{k}")
                if not cell or not cell["wall_s"]:
                    continue
                med = lambda m: cell[m]["median"] if cell[m] else None  # noqa: E731
                rss = cell["maxrss_kib"]["max"] / 1024 if cell["maxrss_kib"] else None
                files = med("files_transferred")
                lines.append(f"| {scen} | {k} | {med('cpu_s'):.2f} | {med('server_cpu_s'):.2f} | "
                             f"{rss:.1f} | {_fmt_bytes(med('wire_bytes'))} | {_fmt_bytes(med('app_bytes'))} | "
                             f"{'—' if files is None else f'{files:.0f}'} |")
        if "maildirsync" in conts and ("rsync" in conts or "script" in conts):
            lines += ["", *goals.combo_rows(size, prof, scen_order, summary)]
        lines.append("")
    return "\n".join(lines) + "\n"


def make_plots(results: dict, summary: dict, outdir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    cells = summary["cells"]
    combos = sorted({(s["size"], s["profile"]) for s in results["samples"]})
    for size, prof in combos:
        scen = list(dict.fromkeys(s["scenario"] for s in results["samples"] if s["size"] == size))
        conts = [k for k in ORDER if any((cells.get(f"{size}|{prof}|{x}|{k}") or {}).get("wall_s") for x in scen)]
        for metric, ylabel, fname in (("wall_s", "wall time (s, log)", "time"), ("wire_bytes", "bytes on the wire (log)", "bytes")):
            fig, ax = plt.subplots(figsize=(10, 5))
            width = 0.8 / max(1, len(conts))
            for i, k in enumerate(conts):
                xs, ys, lo, hi = [], [], [], []
                for j, x in enumerate(scen):
                    st = (cells.get(f"{size}|{prof}|{x}|{k}") or {}).get(metric)
                    if st and st["median"] > 0:
                        xs.append(j + (i - (len(conts) - 1) / 2) * width)
                        ys.append(st["median"])
                        lo.append(st["median"] - st["min"])
                        hi.append(st["max"] - st["median"])
                ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=LABELS[k], color=COLORS[k])
            ax.set_yscale("log")
            ax.set_xticks(range(len(scen)), scen)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{size} corpus, {prof}: median of the repetitions (bars: min–max)")
            ax.legend()
            ax.grid(axis="y", which="both", alpha=0.3)
            path = outdir / f"{fname}_{size}_{prof}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=110)
            plt.close(fig)
            made.append(path)
    for prof in sorted({p for _, p in combos}):
        sizes = sorted({s for s, p in combos if p == prof}, key=lambda s: results["corpora"][s]["messages"])
        fig, ax = plt.subplots(figsize=(8, 5))
        for k in ORDER:
            for scen, style in (("initial", "-o"), ("nochange", "--s"), ("flags", ":^")):
                pts = [(results["corpora"][s]["messages"], cells[c]["wall_s"]["median"]) for s in sizes
                       if (c := f"{s}|{prof}|{scen}|{k}") in cells and cells[c]["wall_s"]]
                if pts:
                    ax.plot(*zip(*pts), style, label=f"{LABELS[k]}: {scen}", color=COLORS[k])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("messages in the corpus")
        ax.set_ylabel("wall time (s)")
        ax.set_title(f"time against corpus size, {prof}")
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=7)
        path = outdir / f"time_vs_size_{prof}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def write(results: dict, outdir: Path, plots: bool = True) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    summary = summarise(results)
    (outdir / "results.json").write_text(json.dumps({**results, "summary": summary}, indent=1))
    (outdir / "results.md").write_text(markdown(results, summary))
    if plots:
        try:
            make_plots(results, summary, outdir)
        except ImportError:
            (outdir / "PLOTS-SKIPPED.txt").write_text("matplotlib is not installed: pip install -e '.[bench]'\n")


def merge(paths: list[Path]) -> dict:
    merged = None
    for p in paths:
        r = json.loads(Path(p).read_text())
        r.pop("summary", None)
        if merged is None:
            merged = r
            continue
        merged["samples"] += r["samples"]
        merged["corpora"].update(r["corpora"])
        merged["profiles"].update(r["profiles"])
        merged["unavailable"].update(r.get("unavailable", {}))
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n")[0])
    p.add_argument("results", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    write(merge(a.results), a.out)
    print((a.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Issue 10's goals ("What to reach"), each set beside what the run measured, and whether it is met.

A ratio goal is maildirsync's sample over the other contender's of the same size, profile, repetition and
scenario (pair by pair), summarised by the median over the repetitions; met when the median is at most the
bound. "≥ 10× faster" is a ratio of at most 0.1. Peak RSS is the largest of maildirsync's samples. A goal
whose size or profile the run did not include says "not run"; merge runs (``python -m bench.report``) to
put medium, large and wan side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

INCREMENTAL = ("nochange", "new", "flags", "moved", "deleted", "churn")  # every sync after the first
RSS_BOUND_MB = 100  # decimal MB, as the tables


@dataclass(frozen=True)
class Goal:
    goal: str
    size: str
    profile: str
    scenario: str
    metric: str  # "wall" or "wire"
    versus: str  # "rsync" (b, whole tree) or "script" (a, the old per-user loop)
    bound: float


GOALS = (
    Goal("initial", "medium", "loopback", "initial", "wall", "rsync", 0.7),
    Goal("no change", "medium", "loopback", "nochange", "wall", "rsync", 0.3),
    Goal("no change", "large", "loopback", "nochange", "wall", "rsync", 0.1),
    Goal("+1 % new", "medium", "loopback", "new", "wall", "rsync", 0.4),
    Goal("1 % moved", "medium", "loopback", "moved", "wall", "rsync", 0.4),
    Goal("1 % deleted", "medium", "loopback", "deleted", "wall", "rsync", 0.4),
    Goal("10 % flags", "medium", "loopback", "flags", "wall", "rsync", 0.25),
    Goal("10 % flags, bytes on the wire", "medium", "loopback", "flags", "wire", "rsync", 0.05),
    *(Goal(f"{s}: ≥ 10× faster than the old script", "medium", "loopback", s, "wall", "script", 0.1)
      for s in INCREMENTAL),
    Goal("wan, 10 % flags: ≥ 10× faster than rsync", "medium", "wan", "flags", "wall", "rsync", 0.1),
)
VERSUS = {"rsync": "(b)", "script": "(a)"}


def _verdict(value: float | None, bound: float) -> str:
    if value is None:
        return "not run"
    return "met" if value <= bound else f"missed by {value / bound:.1f}×"


def _ratio(summary: dict, g: Goal, size: str | None = None) -> dict | None:
    return summary["ratios"].get(g.versus, {}).get(f"{size or g.size}|{g.profile}|{g.scenario}", {}).get(g.metric)


def _fmt(st: dict | None) -> str:
    if not st:
        return "—"
    spread = f", {st['min']:.3g}–{st['max']:.3g}" if st["n"] > 1 else ""
    return f"{st['median']:.3g}× (n={st['n']}{spread})"


def peak_rss_mb(summary: dict, size: str, profile: str) -> float | None:
    """maildirsync's largest peak RSS over every scenario of this size and profile, in MB."""
    peaks = [c["maxrss_kib"]["max"] for k, c in summary["cells"].items()
             if k.startswith(f"{size}|{profile}|") and k.endswith("|maildirsync") and c["maxrss_kib"]]
    return max(peaks) * 1024 / 1e6 if peaks else None


def rows(summary: dict) -> list[tuple[str, str, str, str, str]]:
    """(goal, where, bound, measured, verdict) for every goal of the issue."""
    out = []
    for g in GOALS:
        st = _ratio(summary, g)
        bound = f"≤ {g.bound:g}× {VERSUS[g.versus]} {g.metric}"
        out.append((g.goal, f"{g.size}, {g.profile}", bound, _fmt(st), _verdict(st and st["median"], g.bound)))
    combos = sorted({tuple(k.split("|")[:2]) for k in summary["cells"] if k.endswith("|maildirsync")})
    for size, profile in combos or [("every size", "—")]:
        peak = peak_rss_mb(summary, size, profile) if combos else None
        out.append(("peak RSS", f"{size}, {profile}", f"≤ {RSS_BOUND_MB} MB",
                    "—" if peak is None else f"{peak:.0f} MB", _verdict(peak, RSS_BOUND_MB)))
    medium, large = peak_rss_mb(summary, "medium", "loopback"), peak_rss_mb(summary, "large", "loopback")
    out.append(("peak RSS no larger on large than on medium", "large vs medium, loopback", "large ≤ medium",
                "—" if None in (medium, large) else f"{large:.0f} MB vs {medium:.0f} MB",
                "not run" if None in (medium, large) else ("met" if large <= medium else "missed")))
    return out


def markdown(summary: dict) -> list[str]:
    lines = ["## Issue 10 goals", "",
             "maildirsync (c) over rsync (b) or the old script (a), pair by pair, median over the repetitions:", "",
             "| goal | corpus, profile | target | measured | verdict |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(summary)]
    return lines + [""]


def combo_rows(size: str, profile: str, scenarios: list[str], summary: dict) -> list[str]:
    """The ratio goals applied to one size and profile: its own where the issue sets one, else the medium
    corpus' for reference."""
    picked: dict[tuple, Goal] = {}
    for g in GOALS:
        if g.profile == profile and g.scenario in scenarios:
            key = (g.scenario, g.metric, g.versus)
            if key not in picked or g.size == size:
                picked[key] = g
    out = []
    for g in sorted(picked.values(), key=lambda g: (scenarios.index(g.scenario), g.versus != "rsync", g.metric)):
        st = _ratio(summary, g, size)
        verdict = _verdict(st and st["median"], g.bound)
        if g.size != size and st:
            verdict += f" (the goal is set for {g.size})"
        out.append(f"| {g.scenario} | {g.metric} vs {VERSUS[g.versus]} | ≤ {g.bound:g}× | {_fmt(st)} | {verdict} |")
    peak = peak_rss_mb(summary, size, profile)
    out.append(f"| all | peak RSS | ≤ {RSS_BOUND_MB} MB | {'—' if peak is None else f'{peak:.0f} MB'} | "
               f"{_verdict(peak, RSS_BOUND_MB)} |")
    return ["Goals of issue 10, maildirsync (c):", "", "| scenario | metric | goal | measured | verdict |",
            "|---|---|---|---|---|", *out]

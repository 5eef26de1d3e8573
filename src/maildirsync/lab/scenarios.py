"""Mutations of a source Maildir tree between two syncs, done the way a live Dovecot 2.x does them.

A flag change or a first read is a rename that keeps the base (``new/x`` -> ``cur/x:2,S``) and nothing
else: ``dovecot-uidlist`` lists bases, so Dovecot leaves it alone. A delivery is a new file in ``new/``
whose mtime is its delivery time, and its line is appended to the folder's ``dovecot-uidlist`` (the same
file, larger; the header untouched). A move between folders is a rename into the other folder keeping the
name (what Dovecot's hard-link copy does, its GUID being the base), appended there under a new UID. An
expunge is an unlink whose line stays in the list. Dovecot recreates a list (a new file; stale lines
dropped, the header's next UID brought up) when at most 75 % of its lines name a message still there;
``churn`` is that compaction done to every folder, with the index logs Dovecot writes as it goes. Every
folder touched has its ``dovecot.index.log`` grown. The tree is read from disk each time, so scenarios
compose in any order and work on any tree built by :mod:`maildirsync.lab.corpus`.

That is ``uidlists="dovecot"``, what the bench and the command line use. ``apply``'s default is
``uidlists="rewrite"``, the lab's earlier simplification kept for the engine's tests, which compare a
destination's ``dovecot-uidlist`` with the source's byte for byte: every touched folder's list recreated
with exactly its messages (no stale line, the header's next UID up to date), flag changes included.

The same tree, scenario, seed and step give the same result.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from maildirsync.compat import randbytes
from maildirsync.lab.corpus import (
    CORPUS_END,
    KIB,
    CorpusSpec,
    append_uidlist,
    base_of,
    draw_size,
    find_maildirs,
    folders_of,
    grow_index_log,
    make_message,
    message_name,
    read_uidlist,
    wants_compaction,
    write_message,
)

# In the order the bench runs them.
SCENARIOS = ("initial", "nochange", "new", "flags", "moved", "deleted", "churn")
UIDLISTS = ("dovecot", "rewrite")
FRACTIONS = {"new": 0.01, "flags": 0.10, "moved": 0.01, "deleted": 0.01}
_DEFAULTS = CorpusSpec(users=1, folders=1, messages=1)  # sizes, domain and host of new deliveries


@dataclass
class Mutation:
    scenario: str
    added: int = 0
    added_bytes: int = 0
    flag_changes: int = 0
    new_to_cur: int = 0
    moved: int = 0
    deleted: int = 0
    uidlists_appended: int = 0  # lines added at the end of the same file
    uidlists_rewritten: int = 0  # recreated (compacted): a new file
    stale_lines_dropped: int = 0
    index_logs_grown: int = 0
    touched: set = field(default_factory=set, repr=False)  # folders whose index log grows

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("touched")
        return d


@dataclass(frozen=True)
class Msg:
    user: str
    folder: Path
    sub: str  # "cur" or "new"
    name: str

    @property
    def path(self) -> Path:
        return self.folder / self.sub / self.name


def inventory(root: Path, layout: str) -> tuple[list[Msg], dict[str, list[Path]]]:
    """Every message of the tree in a stable order, and each user's folders."""
    msgs: list[Msg] = []
    folders: dict[str, list[Path]] = {}
    for user, maildir in find_maildirs(root, layout).items():
        folders[user] = folders_of(maildir)
        for folder in folders[user]:
            for sub in ("cur", "new"):
                names = sorted(n for n in os.listdir(folder / sub) if not n.startswith("."))
                msgs.extend(Msg(user, folder, sub, n) for n in names)
    return msgs, folders


def _pick(rng: random.Random, msgs: list[Msg], fraction: float) -> list[Msg]:
    k = min(len(msgs), max(1, round(len(msgs) * fraction))) if msgs else 0
    return [msgs[i] for i in sorted(rng.sample(range(len(msgs)), k))]


def _flags_of(name: str) -> str:
    return name.split(":2,", 1)[1] if ":2," in name else ""


def _keyword_count(folder: Path) -> int:
    try:
        return len((folder / "dovecot-keywords").read_text().splitlines())
    except FileNotFoundError:
        return 0


def _new_flags(rng: random.Random, flags: str, nkeywords: int) -> str:
    """One user action on a read message: (un)read, (un)flag, reply, or a keyword (label, junk)."""
    s = set(flags)
    r = rng.random()
    if r < 0.5:
        s ^= {"S"}
    elif r < 0.75 or (r >= 0.9 and not nkeywords):
        s ^= {"F"}
    elif r < 0.9:
        s ^= {"R"}
        if "R" in s:
            s.add("S")  # answering reads the message
    else:
        s ^= {chr(ord("a") + rng.randrange(nkeywords))}
    return "".join(sorted(s))


class _Mutator:
    """One scenario's changes to the tree, and what they mean for each folder's uidlist."""

    def __init__(self, scenario: str, root: Path, layout: str, seed: int, step: int, uidlists: str = "dovecot"):
        self.m = Mutation(scenario)
        self.rewrite = uidlists == "rewrite"
        self.seed, self.step = seed, step
        self.rng = random.Random(f"scenario:{scenario}:{seed}:{step}")
        self.msgs, self.folders = inventory(Path(root), layout)
        self.appended: dict[Path, list[str]] = {}  # folder -> bases that get the next UIDs
        self.compact: set[Path] = set()  # folders whose list is recreated whatever its stale share
        self.listed: dict[Path, set[str]] = {}  # folder -> the bases its list has a line for

    def new(self, frac: float) -> None:
        rng, users = self.rng, sorted(self.folders)
        for _ in range(max(1, round(len(self.msgs) * frac))):
            user = rng.choice(users)
            folders = self.folders[user]
            # Most mail lands in INBOX; filters drop some into other folders; Sent gets IMAP APPENDs.
            folder = folders[0] if rng.random() < 0.7 or len(folders) == 1 else rng.choice(folders[1:])
            sent = folder.name == ".Sent"
            q = read_uidlist(folder).next_uid + len(self.appended.get(folder, []))
            t = CORPUS_END + 86400 * self.step + rng.randrange(86400)
            data = make_message(rng, self.seed, t, f"{user}@{_DEFAULTS.domain}", _DEFAULTS.host,
                                draw_size(rng, _DEFAULTS), sent)
            # Pids above the corpus' range and Q = the folder's next UID keep every new base unique.
            name = message_name(t, rng.randrange(1_000_000), 4_100_000 + rng.randrange(100_000), q,
                                _DEFAULTS.host, len(data), len(data) + data.count(b"\n"), "S" if sent else None)
            write_message(folder / ("cur" if sent else "new") / name, data, t)
            self.appended.setdefault(folder, []).append(base_of(name))
            self.m.touched.add(folder)
            self.m.added += 1
            self.m.added_bytes += len(data)

    def flags(self, frac: float) -> None:
        for msg in _pick(self.rng, self.msgs, frac):
            base = base_of(msg.name)
            if msg.sub == "new":
                new_name = base + ":2,S"  # first read
                self.m.new_to_cur += 1
            else:
                new_name = base + ":2," + _new_flags(self.rng, _flags_of(msg.name), _keyword_count(msg.folder))
            if msg.sub == "cur" and new_name == msg.name:
                continue
            os.rename(msg.path, msg.folder / "cur" / new_name)
            self.m.touched.add(msg.folder)
            self.m.flag_changes += 1

    def _listed(self, folder: Path) -> set[str]:
        if folder not in self.listed:
            self.listed[folder] = {b for _, b in read_uidlist(folder).entries}
        return self.listed[folder]

    def moved(self, frac: float) -> None:
        for msg in _pick(self.rng, self.msgs, frac):
            # Not back into a folder whose list still has the base (a stale line): Dovecot would give the
            # copy a new name there.
            base = base_of(msg.name)
            others = [f for f in self.folders[msg.user] if f != msg.folder and base not in self._listed(f)]
            if not others:
                continue
            dest = self.rng.choice(others)
            name = msg.name if ":2," in msg.name else msg.name + ":2,"
            os.rename(msg.path, dest / "cur" / name)
            self.appended.setdefault(dest, []).append(base_of(name))
            self.m.touched |= {msg.folder, dest}
            self.m.moved += 1

    def deleted(self, frac: float) -> None:
        for msg in _pick(self.rng, self.msgs, frac):
            os.unlink(msg.path)
            self.m.touched.add(msg.folder)
            self.m.deleted += 1

    def churn(self, _frac: float) -> None:
        # Dovecot compacts its uidlists (stale lines dropped, a new file even when none is) and logs every
        # session to the index log; the main index is recreated from time to time.
        rng = self.rng
        for folders in self.folders.values():
            for folder in folders:
                self.m.touched.add(folder)
                self.compact.add(folder)
                index = folder / "dovecot.index"
                if rng.random() < 0.5 and index.exists():
                    tmp = folder / "dovecot.index.tmp"
                    tmp.write_bytes(b"\x07\x03" + randbytes(rng, max(0, index.stat().st_size - 2)))
                    os.replace(tmp, index)
            lindex = folders[0] / "dovecot.list.index.log"
            if lindex.exists():
                with open(lindex, "ab") as f:
                    f.write(randbytes(rng, rng.randint(1, 4) * KIB))

    def sync_uidlists(self) -> None:
        """What Dovecot's next sync of each touched folder does to its uidlist: the messages new to it get
        the next UIDs, appended; the list is recreated instead when compaction is due (or asked for).
        Renamed and expunged messages alone leave it as it is. Each touched folder's index log grows."""
        for folder in sorted(self.m.touched):
            new = self.appended.get(folder, [])
            if self.rewrite:
                self.compact.add(folder)
            if new or folder in self.compact or self.m.deleted or self.m.moved:
                ul = read_uidlist(folder)
                present = {base_of(n) for sub in ("cur", "new") for n in os.listdir(folder / sub)}
                lines = len(ul.entries) + len(new)
                live = sum(b in present for _, b in ul.entries) + len(new)
                added = [(ul.next_uid + i, b) for i, b in enumerate(new)]
                if folder in self.compact or wants_compaction(lines, live):
                    ul.entries += added
                    out = ul.compacted(present)
                    out.write(folder)
                    self.m.uidlists_rewritten += 1
                    self.m.stale_lines_dropped += lines - len(out.entries)
                elif added:
                    append_uidlist(folder, added)
                    self.m.uidlists_appended += 1
            grow_index_log(folder, self.rng, self.rng.randint(1, 8) * 256)
            self.m.index_logs_grown += 1


def apply(scenario: str, root: Path, layout: str, *, seed: int = 1, step: int = 0,
          fraction: float | None = None, uidlists: str = "rewrite") -> Mutation:
    """Mutate the tree at ``root`` for ``scenario`` (one of SCENARIOS); ``step`` tells repeated
    applications apart (new deliveries are dated after the corpus and after earlier steps). ``uidlists``:
    "dovecot" (what Dovecot does to them) or "rewrite" (see the module's docstring)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (choose from {SCENARIOS})")
    if uidlists not in UIDLISTS:
        raise ValueError(f"unknown uidlists {uidlists!r} (choose from {UIDLISTS})")
    if scenario in ("initial", "nochange"):
        return Mutation(scenario)
    mutator = _Mutator(scenario, root, layout, seed, step, uidlists)
    getattr(mutator, scenario)(FRACTIONS.get(scenario, 0.0) if fraction is None else fraction)
    mutator.sync_uidlists()
    return mutator.m


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m maildirsync.lab.scenarios", description=__doc__.split("\n")[0])
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("root", type=Path)
    p.add_argument("--layout", choices=("plain", "sme8"), default="plain")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--step", type=int, default=0)
    p.add_argument("--fraction", type=float)
    p.add_argument("--uidlists", choices=UIDLISTS, default="dovecot",
                   help="dovecot: what Dovecot does to dovecot-uidlist (default); rewrite: every touched one recreated")
    a = p.parse_args(argv)
    print(apply(a.scenario, a.root, a.layout, seed=a.seed, step=a.step, fraction=a.fraction,
                uidlists=a.uidlists).as_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())

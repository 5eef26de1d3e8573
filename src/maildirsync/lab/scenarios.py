"""Mutations of a source Maildir tree between two syncs, done the way a live Dovecot does them.

A flag change or a first read is a rename that keeps the base (``new/x`` -> ``cur/x:2,S``); a move between
folders is a rename into the other folder keeping the name; an expunge is an unlink; a delivery is a new
file in ``new/`` whose mtime is its delivery time. Every folder touched gets its ``dovecot-uidlist``
rewritten consistently with the names (moved messages get a new UID in their new folder) and its
``dovecot.index.log`` grown. The tree is read from disk each time, so scenarios compose in any order and
work on any tree built by :mod:`maildirsync.lab.corpus`.

The same tree, scenario, seed and step give the same result.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from maildirsync.lab.corpus import (
    CORPUS_END,
    KIB,
    CorpusSpec,
    base_of,
    draw_size,
    find_maildirs,
    folders_of,
    grow_index_log,
    make_message,
    message_name,
    read_uidlist,
    write_message,
)

# In the order the bench runs them.
SCENARIOS = ("initial", "nochange", "new", "flags", "moved", "deleted", "churn")
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
    uidlists_rewritten: int = 0
    index_logs_grown: int = 0
    touched: set = field(default_factory=set, repr=False)  # folders whose control files must follow

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


def _sync_uidlists(mutation: Mutation, rng: random.Random, renames: dict[str, str], removed: set[str],
                   appended: dict[Path, list[str]]) -> None:
    """Rewrite the uidlist of every touched folder: renamed entries take their new names (matched by base),
    removed ones go, appended ones get the next UIDs. Grow each touched folder's index log."""
    for folder in sorted(mutation.touched):
        ul = read_uidlist(folder)
        key = str(folder)
        entries = []
        for uid, name in ul.entries:
            k = f"{key}\0{base_of(name)}"
            if k in removed:
                continue
            entries.append((uid, renames.get(k, name)))
        for name in appended.get(folder, []):
            entries.append((ul.nextuid, name))
            ul.nextuid += 1
        ul.entries = entries
        ul.write(folder)
        grow_index_log(folder, rng, rng.randint(1, 8) * 256)
        mutation.uidlists_rewritten += 1
        mutation.index_logs_grown += 1


def apply(scenario: str, root: Path, layout: str, *, seed: int = 1, step: int = 0,
          fraction: float | None = None) -> Mutation:
    """Mutate the tree at ``root`` for ``scenario`` (one of SCENARIOS); ``step`` tells repeated
    applications apart (new deliveries are dated after the corpus and after earlier steps)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (choose from {SCENARIOS})")
    m = Mutation(scenario)
    if scenario in ("initial", "nochange"):
        return m
    rng = random.Random(f"scenario:{scenario}:{seed}:{step}")
    msgs, folders = inventory(Path(root), layout)
    frac = FRACTIONS.get(scenario, 0.0) if fraction is None else fraction
    renames: dict[str, str] = {}  # "<folder>\0<base>" -> new name, for the uidlist
    removed: set[str] = set()
    appended: dict[Path, list[str]] = {}

    if scenario == "new":
        users = sorted(folders)
        for _ in range(max(1, round(len(msgs) * frac))):
            user = rng.choice(users)
            # Most mail lands in INBOX; filters drop some into other folders; Sent gets IMAP APPENDs.
            folder = folders[user][0] if rng.random() < 0.7 or len(folders[user]) == 1 else rng.choice(folders[user][1:])
            sent = folder.name == ".Sent"
            ul = read_uidlist(folder)
            q = ul.nextuid + len(appended.get(folder, []))
            t = CORPUS_END + 86400 * step + rng.randrange(86400)
            size = draw_size(rng, _DEFAULTS)
            data = make_message(rng, seed, t, f"{user}@{_DEFAULTS.domain}", _DEFAULTS.host, size, sent)
            # Pids above the corpus' range and Q = the folder's next UID keep every new base unique.
            name = message_name(t, rng.randrange(1_000_000), 4_100_000 + rng.randrange(100_000), q,
                                _DEFAULTS.host, len(data), len(data) + data.count(b"\n"), "S" if sent else None)
            write_message(folder / ("cur" if sent else "new") / name, data, t)
            appended.setdefault(folder, []).append(name)
            m.touched.add(folder)
            m.added += 1
            m.added_bytes += len(data)

    elif scenario == "flags":
        for msg in _pick(rng, msgs, frac):
            if msg.sub == "new":
                new_sub, new_name = "cur", base_of(msg.name) + ":2,S"
                m.new_to_cur += 1
            else:
                flags = _new_flags(rng, _flags_of(msg.name), _keyword_count(msg.folder))
                new_sub, new_name = "cur", base_of(msg.name) + ":2," + flags
            if new_sub == msg.sub and new_name == msg.name:
                continue
            os.rename(msg.path, msg.folder / new_sub / new_name)
            renames[f"{msg.folder}\0{base_of(msg.name)}"] = new_name
            m.touched.add(msg.folder)
            m.flag_changes += 1

    elif scenario == "moved":
        for msg in _pick(rng, msgs, frac):
            others = [f for f in folders[msg.user] if f != msg.folder]
            if not others:
                continue
            dest = rng.choice(others)
            name = msg.name if ":2," in msg.name else msg.name + ":2,"
            os.rename(msg.path, dest / "cur" / name)
            removed.add(f"{msg.folder}\0{base_of(msg.name)}")
            appended.setdefault(dest, []).append(name)
            m.touched |= {msg.folder, dest}
            m.moved += 1

    elif scenario == "deleted":
        for msg in _pick(rng, msgs, frac):
            os.unlink(msg.path)
            removed.add(f"{msg.folder}\0{base_of(msg.name)}")
            m.touched.add(msg.folder)
            m.deleted += 1

    elif scenario == "churn":
        # Dovecot compacts its uidlist (same lines, new file) and logs every session to the index log;
        # the main index is recreated from time to time.
        for user_folders in folders.values():
            for folder in user_folders:
                m.touched.add(folder)
                if rng.random() < 0.5:
                    index = folder / "dovecot.index"
                    if index.exists():
                        size = index.stat().st_size
                        tmp = folder / "dovecot.index.tmp"
                        tmp.write_bytes(b"\x07\x03" + rng.randbytes(max(0, size - 2)))
                        os.replace(tmp, index)
            lindex = user_folders[0] / "dovecot.list.index.log"
            if lindex.exists():
                with open(lindex, "ab") as f:
                    f.write(rng.randbytes(rng.randint(1, 4) * KIB))

    _sync_uidlists(m, rng, renames, removed, appended)
    return m


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m maildirsync.lab.scenarios", description=__doc__.split("\n")[0])
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("root", type=Path)
    p.add_argument("--layout", choices=("plain", "sme8"), default="plain")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--step", type=int, default=0)
    p.add_argument("--fraction", type=float)
    a = p.parse_args(argv)
    print(apply(a.scenario, a.root, a.layout, seed=a.seed, step=a.step, fraction=a.fraction).as_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())

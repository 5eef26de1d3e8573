"""``maildirsync verify``: re-hash destination messages against what the index says we wrote."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .executor import hash_file
from .errors import UsageError
from .index import StateDir
from .maildir import folder_dir, folder_display, show


@dataclass
class UserCheck:
    user: str
    checked: int = 0
    changed_there: int = 0  # renamed or deleted on the destination since: normal after the switch
    corrupt: int = 0  # same name, other content: the destination copy is damaged
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        verdict = "DIFFERENT CONTENT" if self.corrupt else "ok"
        return (
            f"{self.user}: {verdict}: {self.checked} checked, {self.corrupt} with other content, "
            f"{self.changed_there} renamed or deleted on the destination since the last sync"
        )

    def as_dict(self) -> dict:
        return {
            "user": self.user,
            "checked": self.checked,
            "corrupt": self.corrupt,
            "changed_on_destination": self.changed_there,
            "problems": self.problems,
        }


def run(state: StateDir, dest: dict[str, Path], only: list[str]) -> list[UserCheck]:
    if not (state.index_path / "data.mdb").exists():
        raise UsageError(f"no index at {state.index_path}: nothing was synced from that source yet")
    state.acquire("maildirsync verify")  # files must not move under us
    try:
        index, _note = state.open_index(readonly=True)
        try:
            users = sorted(u.decode("utf-8", "surrogateescape") for u in index.all_status())
            out = []
            for user in users:
                if (only and user not in only) or user not in dest:
                    continue
                out.append(_check(user, os.fsencode(dest[user]), index.user_records(user.encode())))
            return out
        finally:
            index.close()
    finally:
        state.release()


def _check(user: str, root: bytes, recs) -> UserCheck:
    c = UserCheck(user)
    for folder, byb in sorted(recs.items()):
        fdir = folder_dir(root, folder)
        for _base, rec in sorted(byb.items()):
            p = fdir + b"/" + rec.dst_subdir + b"/" + rec.dst_name
            c.checked += 1
            try:
                h, n = hash_file(p)
            except FileNotFoundError:
                c.changed_there += 1
                continue
            if h != rec.hash or n != rec.size:
                c.corrupt += 1
                c.problems.append(f"{folder_display(folder)}/{rec.dst_subdir.decode()}/{show(rec.dst_name)}: content differs")
    return c

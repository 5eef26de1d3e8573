"""Is a destination a faithful copy of the source? Names, sizes, mtimes and content hashes, per user.

What is compared depends on what a contender promises:

* rsync (``-r -l -t --delete``) promises a mirror: every file, its size, content and mtime.
* maildirsync never copies Dovecot's cache files (DESIGN.md §2: ``dovecot.index*``, ``dovecot.list.index*``,
  ``dovecot-uidvalidity*``, ``maildirsize``...), which the destination server rebuilds, so they are left out
  on both sides; messages must match in name, size, content and mtime (the IMAP INTERNALDATE); control
  files (``dovecot-uidlist``, ``dovecot-keywords``, ``subscriptions``, ``maildirfolder``) must match in
  content — their mtime is not part of maildirsync's promise.

``tmp/`` (deliveries in progress) is never compared, nor is anything a contender leaves outside the
users' Maildirs. A file found only on the destination is an error for every contender.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from maildirsync.maildir import FileKind, classify


def _is_message(rel: tuple[str, ...]) -> bool:
    return len(rel) >= 2 and rel[-2] in ("cur", "new")


class Hasher:
    """Content hashes cached by (device, inode, size, mtime, ctime): any write or utime changes ctime,
    which user space cannot set back, so a cache hit means the same bytes."""

    def __init__(self) -> None:
        self.cache: dict[tuple, str] = {}

    def digest(self, path: str, st: os.stat_result) -> str:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        h = self.cache.get(key)
        if h is None:
            hasher = xxhash.xxh3_128()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    hasher.update(chunk)
            h = self.cache[key] = hasher.hexdigest()
        return h


@dataclass
class Policy:
    name: str
    skip_cache: bool  # leave Dovecot cache files out of the comparison
    strict_mtime: bool  # every file's mtime must match, not only the messages'

    def skip(self, rel: tuple[str, ...]) -> bool:
        if len(rel) >= 2 and rel[-2] == "tmp":  # a folder's tmp/ (Maildir++ folders are ".X", never "tmp")
            return True
        if self.skip_cache and not _is_message(rel):
            return classify(rel[-1].encode("utf-8", "surrogateescape")) is FileKind.CACHE
        return False


RSYNC_POLICY = Policy("mirror", skip_cache=False, strict_mtime=True)
MAILDIRSYNC_POLICY = Policy("maildir", skip_cache=True, strict_mtime=False)


@dataclass
class Report:
    files: int = 0
    messages: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < 20:
            self.problems.append(text)


def scan(maildir: Path, policy: Policy, hasher: Hasher) -> dict[tuple[str, ...], tuple[int, int, str]]:
    out = {}
    root = str(maildir)
    for dirpath, _dirs, files in os.walk(root):
        reldir = tuple(Path(os.path.relpath(dirpath, root)).parts) if dirpath != root else ()
        for name in files:
            rel = reldir + (name,)
            if policy.skip(rel):
                continue
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[rel] = (st.st_size, int(st.st_mtime), hasher.digest(path, st) if os.path.isfile(path) else "link")
    return out


def compare(src: dict[str, Path], dst: dict[str, Path], policy: Policy, hasher: Hasher) -> Report:
    """Compare each user's source Maildir with its destination Maildir."""
    report = Report()
    for user in sorted(src):
        if user not in dst or not Path(dst[user]).is_dir():
            report.add(f"{user}: destination Maildir missing")
            continue
        a = scan(src[user], policy, hasher)
        b = scan(dst[user], policy, hasher)
        report.files += len(a)
        for rel in sorted(a.keys() | b.keys()):
            where = f"{user}:{'/'.join(rel)}"
            if rel not in b:
                report.add(f"missing {where}")
            elif rel not in a:
                report.add(f"extra {where}")
            elif a[rel][0] != b[rel][0] or a[rel][2] != b[rel][2]:
                report.add(f"content differs {where} ({a[rel][0]} vs {b[rel][0]} bytes)")
            elif a[rel][1] != b[rel][1] and (policy.strict_mtime or _is_message(rel)):
                report.add(f"mtime differs {where} ({a[rel][1]} vs {b[rel][1]})")
            elif _is_message(rel):
                report.messages += 1
    for user in sorted(set(dst) - set(src)):
        report.add(f"{user}: destination has a user the source lacks")
    return report

"""Is a destination a faithful copy of the source? Per user, by what each contender promises.

* rsync (``-r -l -t --delete``) promises a mirror: every file, its size, content and mtime.
* maildirsync never copies Dovecot's cache files (DESIGN.md §2: ``dovecot.index*``, ``dovecot.list.index*``,
  ``dovecot-uidvalidity*``, ``maildirsize``...), which the destination server rebuilds, so they are left out
  on both sides; messages must match in name, size, content and mtime (the IMAP INTERNALDATE); control
  files (``dovecot-keywords``, ``subscriptions``, ``maildirfolder``) in content — their mtime is not part of
  its promise. ``dovecot-uidlist`` is merged, not copied (DESIGN.md §3), so it is checked for what it
  means: the source's UIDVALIDITY, every message the destination holds numbered with the source's UID,
  no UID naming another message, a next UID not below the source's. (Dovecot leaves lines of expunged
  messages and a header behind its appended lines: a merged list need not repeat them byte for byte.)
* ``doveadm backup`` keeps UIDs and flags but writes its own files (names, ``dovecot-keywords`` letters, the
  list), so messages are compared by content per folder: each source message once in the same folder with
  its mtime, its flags (keywords by name) and its UID, under the source's UIDVALIDITY; the subscriptions
  as a set.

``tmp/`` (deliveries in progress) is never compared, nor is anything a contender leaves outside the
users' Maildirs. A message (or file, for the mirror) found only on the destination is an error.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from maildirsync.maildir import FileKind, classify

UIDLIST = "dovecot-uidlist"


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
    uids_by_numbering: bool = False  # dovecot-uidlist checked for the UIDs it gives, not byte for byte
    by_content: bool = False  # messages matched by content per folder, whatever their names

    def skip(self, rel: tuple[str, ...]) -> bool:
        if len(rel) >= 2 and rel[-2] == "tmp":  # a folder's tmp/ (Maildir++ folders are ".X", never "tmp")
            return True
        if self.skip_cache and not _is_message(rel):
            return classify(rel[-1].encode("utf-8", "surrogateescape")) is FileKind.CACHE
        return False


RSYNC_POLICY = Policy("mirror", skip_cache=False, strict_mtime=True)
MAILDIRSYNC_POLICY = Policy("maildir", skip_cache=True, strict_mtime=False, uids_by_numbering=True)
DOVEADM_POLICY = Policy("content", skip_cache=True, strict_mtime=False, uids_by_numbering=True, by_content=True)


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


# --- dovecot-uidlist, read independently of maildirsync's own parser -----------------------------------


@dataclass
class Numbering:
    uidvalidity: int
    next_uid: int  # past the header's N and every line (Dovecot appends lines without rewriting the header)
    uids: dict[str, int]  # base -> UID
    bases: dict[int, str]  # UID -> base


def read_numbering(path: Path) -> Numbering | None:
    """A version 1 or 3 ``dovecot-uidlist``; None when there is none or it cannot be read."""
    try:
        lines = Path(path).read_bytes().decode("utf-8", "surrogateescape").split("\n")
    except OSError:
        return None
    head = lines[0].split()
    try:
        if head[:1] == ["3"]:
            fields = {f[0]: f[1:] for f in head[1:]}
            uidvalidity, next_uid = int(fields["V"]), int(fields["N"])
        elif head[:1] == ["1"]:
            uidvalidity, next_uid = int(head[1]), int(head[2])
        else:
            return None
        uids: dict[str, int] = {}
        bases: dict[int, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            uid_s, _, rest = line.partition(" ")
            if head[0] == "3":  # "<uid> [<ext> ...] :<name>"
                rest = rest[1:] if rest.startswith(":") else rest[rest.index(" :") + 2 :]
            base = rest.split(":", 1)[0]
            uid = int(uid_s)
            uids[base], bases[uid] = uid, base
            next_uid = max(next_uid, uid + 1)
    except (KeyError, ValueError, IndexError):
        return None
    return Numbering(uidvalidity, next_uid, uids, bases)


def _base(name: str) -> str:
    return name.split(":", 1)[0]


def check_numbering(report: Report, where: str, src: Numbering | None, dst: Numbering | None,
                    held: dict[str, str]) -> None:
    """The UID invariant for one folder. ``held``: destination base -> source base of each message the
    destination holds (the same base, for a copy that keeps names)."""
    if src is None:
        return  # the source never numbered this folder: nothing to keep
    if dst is None:
        report.add(f"uidlist missing or unreadable {where}")
        return
    if dst.uidvalidity != src.uidvalidity:
        report.add(f"UIDVALIDITY differs {where} ({src.uidvalidity} vs {dst.uidvalidity})")
        return
    wrong = []
    for dbase, sbase in sorted(held.items()):
        want, got = src.uids.get(sbase), dst.uids.get(dbase)
        if got is None:
            wrong.append(f"{dbase} not numbered")
        elif want is not None and got != want:
            wrong.append(f"{dbase} UID {got}, the source's {want}")
        elif want is None and src.bases.get(got, sbase) != sbase:
            wrong.append(f"{dbase} UID {got}, which the source gave another message")
    if wrong:
        report.add(f"UIDs differ {where}: {len(wrong)} message(s), e.g. {'; '.join(wrong[:3])}")
    if dst.next_uid < src.next_uid:
        report.add(f"next UID lowered {where} ({src.next_uid} vs {dst.next_uid}): UIDs would be given again")


# --- comparisons -------------------------------------------------------------------------------------


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
        if policy.by_content:
            _by_content(report, user, Path(src[user]), Path(dst[user]), a, b)
        else:
            _by_name(report, user, Path(src[user]), Path(dst[user]), a, b, policy)
    for user in sorted(set(dst) - set(src)):
        report.add(f"{user}: destination has a user the source lacks")
    return report


def _by_name(report: Report, user: str, smd: Path, dmd: Path, a: dict, b: dict, policy: Policy) -> None:
    for rel in sorted(a.keys() | b.keys()):
        where = f"{user}:{'/'.join(rel)}"
        if policy.uids_by_numbering and rel[-1] == UIDLIST:
            continue  # below, folder by folder
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
    if policy.uids_by_numbering:
        held: dict[tuple[str, ...], dict[str, str]] = defaultdict(dict)
        for rel in b:
            if _is_message(rel):
                held[rel[:-2]][_base(rel[-1])] = _base(rel[-1])
        for folder in sorted({rel[:-1] for rel in a.keys() | b.keys() if rel[-1] == UIDLIST} | set(held)):
            where = f"{user}:{'/'.join(folder + (UIDLIST,))}"
            check_numbering(report, where, read_numbering(smd.joinpath(*folder, UIDLIST)),
                            read_numbering(dmd.joinpath(*folder, UIDLIST)), held.get(folder, {}))


def _keywords(folder: Path) -> dict[str, str]:
    """Keyword letter -> name, from the folder's ``dovecot-keywords`` (``<index> <name>`` lines)."""
    try:
        lines = (folder / "dovecot-keywords").read_text(errors="surrogateescape").splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        i, _, name = line.partition(" ")
        if i.isdigit() and int(i) < 26:
            out[chr(ord("a") + int(i))] = name
    return out


def _flags(name: str, keywords: dict[str, str]) -> frozenset:
    info = name.split(":2,", 1)[1] if ":2," in name else ""
    return frozenset(c if c.isupper() else "kw:" + keywords.get(c, "?" + c) for c in info)


def _messages_by_folder(md: Path, scanned: dict) -> dict[tuple[str, ...], dict[str, list]]:
    """folder -> content hash -> [(name, size, mtime, flags), ...] of its messages."""
    out: dict[tuple[str, ...], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    kw: dict[tuple[str, ...], dict[str, str]] = {}
    for rel, (size, mtime, digest) in scanned.items():
        if not _is_message(rel):
            continue
        folder = rel[:-2]
        if folder not in kw:
            kw[folder] = _keywords(md.joinpath(*folder))
        out[folder][digest].append((rel[-1], size, mtime, _flags(rel[-1], kw[folder])))
    return out


def _subscriptions(md: Path) -> set[str] | None:
    """The subscribed names. Dovecot 2.3 writes its own format: a ``V<tab>2`` line, then each name with
    its hierarchy levels separated by tabs; the SME file is one name a line, ``.`` between levels."""
    try:
        lines = (md / "subscriptions").read_text(errors="surrogateescape").splitlines()
    except OSError:
        return None
    if lines[:1] == ["V\t2"]:
        lines = [line.replace("\t", ".") for line in lines[1:]]
    return {line for line in lines if line}


def _by_content(report: Report, user: str, smd: Path, dmd: Path, a: dict, b: dict) -> None:
    sm, dm = _messages_by_folder(smd, a), _messages_by_folder(dmd, b)
    for folder in sorted(sm.keys() | dm.keys()):
        fname = "/".join(folder) or "INBOX"
        sfold, dfold = sm.get(folder, {}), dm.get(folder, {})
        held: dict[str, str] = {}
        for digest in sorted(sfold.keys() | dfold.keys()):
            s, d = sorted(sfold.get(digest, [])), sorted(dfold.get(digest, []))
            for extra in d[len(s):]:
                report.add(f"extra {user}:{fname}: {extra[0]}")
            for missing in s[len(d):]:
                report.add(f"missing {user}:{fname}: {missing[0]}")
            for (sname, _size, smtime, sflags), (dname, _dsize, dmtime, dflags) in zip(s, d):
                where = f"{user}:{fname}: {sname}"
                if smtime != dmtime:
                    report.add(f"mtime differs {where} ({smtime} vs {dmtime})")
                elif sflags != dflags:
                    report.add(f"flags differ {where} ({''.join(sorted(sflags))} vs {''.join(sorted(dflags))})")
                else:
                    report.messages += 1
                held[_base(dname)] = _base(sname)
        check_numbering(report, f"{user}:{fname}", read_numbering(smd.joinpath(*folder, UIDLIST)),
                        read_numbering(dmd.joinpath(*folder, UIDLIST)), held)
    if _subscriptions(smd) not in (None, _subscriptions(dmd)):
        report.add(f"subscriptions differ {user}: {sorted(_subscriptions(smd) or ())} vs "
                   f"{sorted(_subscriptions(dmd) or ())}")

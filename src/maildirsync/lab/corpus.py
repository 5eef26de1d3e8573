"""Synthetic Dovecot Maildir++ trees: U users x F folders x N messages, as an SME/Dovecot server leaves them.

Everything a sync tool meets on a real source is there: Dovecot delivery names carrying ``S=``/``W=``,
log-normal sizes with a long tail, flags and per-folder keywords, ~1% unread mail still in ``new/``, mtimes
equal to the delivery time in the name (the IMAP INTERNALDATE), a ``dovecot-uidlist`` numbering every message
as Dovecot 2.x writes it (bases only; with the named sizes, lines of expunged messages not compacted yet and
lines appended since the header was written), ``dovecot-keywords``, ``dovecot.index*`` caches,
``subscriptions`` and ``maildirfolder``.

The same spec and seed give the same tree byte for byte: each user draws from its own ``Random`` seeded by
``(seed, user index)``, so the worker that happens to build a user does not matter. Message bodies are
slices of a few shared text/base64 blocks built once per process: randomness per message, never per byte.

CLI: ``python -m maildirsync.lab.corpus --size small --seed 1 --layout sme8 OUT``.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import contextlib
import email.utils
import functools
import math
import multiprocessing
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from maildirsync.compat import randbytes

KIB = 1024
MIB = 1024 * KIB

# Deliveries span these years; scenarios deliver after CORPUS_END so their names never collide with ours.
CORPUS_START = calendar.timegm((2016, 1, 1, 0, 0, 0))
CORPUS_END = calendar.timegm((2024, 6, 1, 0, 0, 0))

LAYOUTS = ("plain", "sme8")
SME8_USERS = Path("home/e-smith/files/users")
SME8_ADMIN = Path("home/e-smith/Maildir")


@dataclass(frozen=True)
class CorpusSpec:
    users: int
    folders: int  # per user, INBOX included
    messages: int  # per folder
    seed: int = 1
    layout: str = "plain"
    median_size: int = 5 * KIB
    sigma: float = 1.25  # of ln(size); with the attachments below the mean is ~13 KiB
    big_fraction: float = 0.001  # messages carrying a large attachment, the long tail
    big_min: int = 1 * MIB
    big_max: int = 6 * MIB
    min_size: int = 700
    new_fraction: float = 0.01  # unread deliveries still in new/
    # A folder's history as its dovecot-uidlist shows it: of the UIDs given to messages expunged since, the
    # share whose line is still there (Dovecot compacts the list only once a quarter of it is stale); when
    # above 0 the list was also last rewritten somewhere in the folder's history, its later lines appended,
    # so the header's N is the one of that rewrite. 0: every line a message on disk, N up to date.
    stale_lines: float = 0.0
    domain: str = "example.org"
    host: str = "sme8.example.org"  # the delivering host, as it appears in message names

    @property
    def total_messages(self) -> int:
        return self.users * self.folders * self.messages


# small ~20k, medium ~200k, large ~1M (smaller messages, so the tree stays a few GB).
# The named sizes carry the history Dovecot leaves (stale lines, appended lists); a bare CorpusSpec does not.
SIZES: dict[str, CorpusSpec] = {
    "tiny": CorpusSpec(users=3, folders=3, messages=20, stale_lines=0.5),
    "small": CorpusSpec(users=20, folders=10, messages=100, stale_lines=0.5),
    "medium": CorpusSpec(users=100, folders=20, messages=100, stale_lines=0.5),
    "large": CorpusSpec(users=200, folders=20, messages=250, median_size=2 * KIB, sigma=1.0, big_fraction=0.0001,
                        stale_lines=0.5),
}


def spec_for(size: str, **overrides) -> CorpusSpec:
    """A named size with fields replaced, e.g. ``spec_for("tiny", seed=3, layout="sme8")``."""
    return replace(SIZES[size], **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Corpus:
    root: Path
    layout: str
    domain: str
    maildirs: dict[str, Path]  # user -> Maildir, admin included
    messages: int = 0
    bytes: int = 0

    @property
    def users_dir(self) -> Path:
        """Where the per-user Maildirs live (``<users_dir>/<user>/Maildir``)."""
        return self.root / SME8_USERS if self.layout == "sme8" else self.root

    @property
    def admin_maildir(self) -> Path:
        return self.maildirs["admin"]


# --- names -------------------------------------------------------------------------------------------

_SURNAMES = (
    "rossi bianchi romano colombo ricci marino greco bruno gallo conti deluca mancini costa giordano "
    "rizzo lombardi moretti barbieri fontana santoro mariani rinaldi caruso ferrara galli martini leone "
    "longo gentile martinelli vitale serra coppola farina villa cattaneo ferri smith jones taylor brown "
    "wilson evans thomas johnson roberts walker wright robinson thompson white hughes edwards green"
).split()

_FOLDERS = (
    "", ".Sent", ".Drafts", ".Trash", ".Junk", ".Archive", ".Archive.2023", ".Archive.2022",
    ".Clients", ".Clients.Acme", ".Clients.Bianchi &- Figli", ".Cr&AOk-dit", ".Fornitori", ".Projects",
    ".Projects.2024", ".Newsletters", ".Receipts", ".Personal", ".Travel", ".Archive.2021",
)

_KEYWORDS = ("$Forwarded", "$Junk", "$NonJunk", "$MDNSent", "$Label1", "$Label2", "$Label3", "Junk", "NonJunk")


def user_names(n: int) -> list[str]:
    """``admin`` then SME-style logins (initial + surname), unique, deterministic."""
    names = ["admin"]
    i = 0
    while len(names) < n:
        surname = _SURNAMES[i % len(_SURNAMES)]
        initial = "abcdefghijklmnopqrstuvwxyz"[(i * 7 + i // len(_SURNAMES)) % 26]
        name = initial + surname
        if i >= 26 * len(_SURNAMES):
            name += str(i)
        if name not in names:
            names.append(name)
        i += 1
    return names[:n]


def folder_names(n: int) -> list[str]:
    """Maildir++ folder directory names, ``""`` being INBOX; beyond the list, older yearly archives."""
    names = list(_FOLDERS[:n])
    year = 2020
    while len(names) < n:
        names.append(f".Archive.{year}")
        year -= 1
    return names


def message_name(t: int, usec: int, pid: int, q: int, host: str, size: int, vsize: int, flags: str | None) -> str:
    """Dovecot's delivery name; ``flags`` None means a message in ``new/`` (no info part)."""
    base = f"{t}.M{usec}P{pid}Q{q}.{host},S={size},W={vsize}"
    return base if flags is None else f"{base}:2,{flags}"


def base_of(name: str) -> str:
    return name.split(":", 1)[0]


# --- dovecot-uidlist ---------------------------------------------------------------------------------


@dataclass
class Uidlist:
    """Dovecot's ``dovecot-uidlist``, version 3, as Dovecot 2.x writes it (``maildir-uidlist.c``): a header
    ``3 V<uidvalidity> N<nextuid> G<guid>`` then one ``<uid> [<ext>] :<base>`` line per message in UID
    order, the *base* only (the name up to ``:``), so a flag change never touches the file.

    Dovecot writes the header only when it recreates the file; a delivery appends its lines after the
    last byte, so ``nextuid`` is the next UID as of the last rewrite and the real next UID is past the
    last line (:attr:`next_uid`). An expunge leaves its line until the list is compacted, so lines may
    name messages that are gone (stale lines)."""

    uidvalidity: int
    nextuid: int  # the header's N: as of the last rewrite
    guid: str
    entries: list[tuple[int, str]]  # (uid, base) of every line, stale ones included

    @property
    def next_uid(self) -> int:
        """The UID the next message gets: Dovecot reads the header's N and every line after it."""
        return max(self.nextuid, self.entries[-1][0] + 1 if self.entries else 1)

    def dumps(self) -> bytes:
        return (self._header() + "".join(_line(uid, base) for uid, base in self.entries)).encode()

    def _header(self) -> str:
        return f"3 V{self.uidvalidity} N{self.nextuid} G{self.guid}\n"

    @classmethod
    def loads(cls, data: bytes) -> Uidlist:
        lines = data.decode().splitlines()
        if not lines or not lines[0].startswith("3 "):
            raise ValueError(f"not a version 3 dovecot-uidlist: {lines[:1]!r}")
        fields = {f[0]: f[1:] for f in lines[0].split()[1:]}
        entries = []
        for line in lines[1:]:
            # "<uid> [<ext> ...] :<filename>": extension fields never start with ':', the name does.
            uid, _, rest = line.partition(" ")
            i = rest.find(" :") if not rest.startswith(":") else -1
            name = rest[1:] if i < 0 else rest[i + 2 :]
            entries.append((int(uid), base_of(name)))
        return cls(int(fields["V"]), int(fields["N"]), fields.get("G", ""), entries)

    def write(self, folder: Path) -> None:
        """Recreate the file as Dovecot does: under its dotlock, a new ``dovecot-uidlist.tmp`` renamed
        over the old one (a new inode), the header saying the next UID."""
        with _dotlock(folder):
            tmp = folder / "dovecot-uidlist.tmp"
            tmp.write_bytes(self.dumps())
            os.replace(tmp, folder / "dovecot-uidlist")

    def compacted(self, present: set[str]) -> Uidlist:
        """The list as Dovecot rewrites it: the lines of messages still there, the header's N brought up."""
        return Uidlist(self.uidvalidity, self.next_uid, self.guid, [e for e in self.entries if e[1] in present])


def _line(uid: int, base: str) -> str:
    return f"{uid} :{base}\n"


def wants_compaction(lines: int, live: int) -> bool:
    """Dovecot recreates the list when at most 75 % of its lines name a message still there
    (``UIDLIST_COMPRESS_PERCENTAGE``, ``maildir_uidlist_want_compress``)."""
    return lines > 0 and lines * 75 // 100 >= live


@contextlib.contextmanager
def _dotlock(folder: Path):
    # Dovecot holds dovecot-uidlist.lock while it appends or recreates: the folder's mtime moves too.
    lock = folder / "dovecot-uidlist.lock"
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        yield
    finally:
        os.unlink(lock)


def append_uidlist(folder: Path, entries: list[tuple[int, str]]) -> None:
    """What a delivery (or a message moved in) does to the list: its lines appended to the same file,
    under the dotlock; the header is left as it is."""
    with _dotlock(folder), open(folder / "dovecot-uidlist", "a") as f:
        f.write("".join(_line(uid, base) for uid, base in entries))


def read_uidlist(folder: Path) -> Uidlist:
    return Uidlist.loads((folder / "dovecot-uidlist").read_bytes())


# --- tree discovery (shared with the scenarios and the bench) ------------------------------------------


def find_maildirs(root: Path, layout: str) -> dict[str, Path]:
    """user -> Maildir of a generated tree, sorted by user."""
    root = Path(root)
    found: dict[str, Path] = {}
    users_dir = root / SME8_USERS if layout == "sme8" else root
    if layout == "sme8" and (root / SME8_ADMIN).is_dir():
        found["admin"] = root / SME8_ADMIN
    if users_dir.is_dir():
        for entry in sorted(os.listdir(users_dir)):
            if (users_dir / entry / "Maildir").is_dir():
                found[entry] = users_dir / entry / "Maildir"
    return dict(sorted(found.items()))


def folders_of(maildir: Path) -> list[Path]:
    """INBOX first, then the Maildir++ sub-folders in name order."""
    subs = sorted(e for e in os.listdir(maildir) if e.startswith(".") and e not in (".", "..") and (maildir / e).is_dir())
    return [Path(maildir)] + [Path(maildir) / s for s in subs]


# --- content ---------------------------------------------------------------------------------------

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there been one all we their has would when if so no will more can out up about "
    "meeting invoice report attached please find below regards thanks project order delivery payment "
    "schedule update review contract proposal client supplier office agenda budget quarter customer "
    "grazie cordiali saluti fattura ordine consegna riunione allegato progetto preventivo"
).split()


@functools.lru_cache(maxsize=4)
def _blocks(seed: int) -> tuple[bytes, bytes]:
    """A text block and a base64 block, built once per process and seed; bodies are slices of them."""
    rng = random.Random(f"blocks:{seed}")
    lines, line, total = [], [], 0
    while total < 256 * KIB:
        line.append(rng.choice(_WORDS))
        if sum(len(w) + 1 for w in line) > 66 or rng.random() < 0.01:
            text = " ".join(line) + ("\n\n" if rng.random() < 0.1 else "\n")
            lines.append(text)
            total += len(text)
            line = []
    text = "".join(lines).encode()
    b64 = base64.encodebytes(randbytes(rng, 768 * KIB))
    return text, b64


def _take(block: bytes, offset: int, n: int) -> bytes:
    """``n`` bytes of ``block`` from ``offset``, wrapping around."""
    if n <= 0:
        return b""
    offset %= len(block)
    if offset + n <= len(block):
        return block[offset : offset + n]
    out = [block[offset:]]
    left = n - len(out[0])
    while left > 0:
        out.append(block[:left])
        left -= len(out[-1])
    return b"".join(out)


def _person(rng: random.Random) -> tuple[str, str]:
    first = rng.choice(("Marco", "Giulia", "Luca", "Anna", "Paolo", "Sara", "John", "Emma", "Peter", "Laura"))
    last = rng.choice(_SURNAMES).capitalize()
    domain = rng.choice(("example.com", "example.net", "fornitore.example", "client.example", "mail.example"))
    return f"{first} {last}", f"{first.lower()}.{last.lower()}@{domain}"


def make_message(rng: random.Random, seed: int, t: int, to_addr: str, host: str, size: int, sent: bool) -> bytes:
    """An RFC 822 message of about ``size`` bytes (exactly, unless the headers alone are longer)."""
    text, b64 = _blocks(seed)
    name, addr = _person(rng)
    frm, to = (f"{to_addr}", f"{name} <{addr}>") if sent else (f"{name} <{addr}>", to_addr)
    date = email.utils.formatdate(t, localtime=False)
    subject = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 7))).capitalize()
    msgid = f"<{t}.{rng.getrandbits(48):012x}@{addr.split('@')[1]}>"
    head = [
        f"Return-Path: <{addr}>",
        f"Delivered-To: {to_addr}",
        f"Received: from mx.{addr.split('@')[1]} (mx.{addr.split('@')[1]} [192.0.2.{rng.randint(1, 254)}])",
        f"\tby {host} (Postfix) with ESMTP id {rng.getrandbits(40):010X}",
        f"\tfor <{to_addr}>; {date}",
        f"Message-ID: {msgid}",
        f"Date: {date}",
        f"From: {frm}",
        f"To: {to}",
        f"Subject: {subject}",
        "MIME-Version: 1.0",
    ]
    big = size > 64 * KIB
    if not big:
        head += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", "", ""]
        header = "\n".join(head).encode()
        return header + _body(_take(text, rng.randrange(len(text)), size - len(header)))
    boundary = f"=_{rng.getrandbits(64):016x}"
    head += [f'Content-Type: multipart/mixed; boundary="{boundary}"', "", "This is a multi-part message in MIME format.",
             f"--{boundary}", "Content-Type: text/plain; charset=utf-8", "", ""]
    part = _take(text, rng.randrange(len(text)), rng.randint(200, 3000))
    att = (f"\n--{boundary}\nContent-Type: application/pdf; name=\"doc{rng.randint(1, 999)}.pdf\"\n"
           "Content-Transfer-Encoding: base64\nContent-Disposition: attachment\n\n").encode()
    tail = f"\n--{boundary}--\n".encode()
    header = "\n".join(head).encode()
    fill = size - len(header) - len(part) - len(att) - len(tail)
    return header + part + att + _take(b64, rng.randrange(len(b64)), fill) + tail


def _body(chunk: bytes) -> bytes:
    return chunk[:-1] + b"\n" if chunk else b"\n"


def draw_size(rng: random.Random, spec: CorpusSpec) -> int:
    if rng.random() < spec.big_fraction:
        return int(math.exp(rng.uniform(math.log(spec.big_min), math.log(spec.big_max))))
    size = int(rng.lognormvariate(math.log(spec.median_size), spec.sigma))
    return max(spec.min_size, min(size, spec.big_max))


def draw_flags(rng: random.Random, folder: str, nkeywords: int) -> str:
    """Flags in ASCII order: system flags (uppercase) sort before keyword letters."""
    flags = set()
    if folder == ".Drafts":
        flags |= {"D", "S"}
    elif folder == ".Sent" or rng.random() < 0.9:
        flags.add("S")
    if "S" in flags and rng.random() < 0.08:
        flags.add("R")
    if rng.random() < 0.04:
        flags.add("F")
    if rng.random() < 0.005:
        flags.add("T")
    if nkeywords and rng.random() < 0.1:
        flags |= {chr(ord("a") + rng.randrange(nkeywords)) for _ in range(rng.randint(1, 2))}
    return "".join(sorted(flags))


def write_message(path: Path, data: bytes, t: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.utime(path, (t, t))


def grow_index_log(folder: Path, rng: random.Random, nbytes: int) -> None:
    """Append transaction records to ``dovecot.index.log``, as every Dovecot session does."""
    with open(folder / "dovecot.index.log", "ab") as f:
        f.write(randbytes(rng, nbytes))


def _write_caches(folder: Path, rng: random.Random, count: int) -> None:
    # Opaque to us and never synced by maildirsync; only their presence, sizes and churn matter.
    (folder / "dovecot.index").write_bytes(b"\x07\x03" + randbytes(rng, 254 + 40 * count))
    (folder / "dovecot.index.cache").write_bytes(b"\x01\x02" + randbytes(rng, 1000 + 120 * count))
    (folder / "dovecot.index.log").write_bytes(b"\x01\x03" + randbytes(rng, rng.randint(2, 32) * KIB))


# --- generation --------------------------------------------------------------------------------------


def _pid_for(user_index: int, folder_index: int) -> int:
    # Distinct per (user, folder) so two folders never share a base by accident; 7919 is prime to 4e6.
    return 1000 + ((user_index * 64 + folder_index) * 7919) % 4_000_000


def _folder_years(folder: str) -> tuple[int, int]:
    if folder.startswith(".Archive.") and folder[9:].isdigit():
        y = int(folder[9:])
        return calendar.timegm((y, 1, 1, 0, 0, 0)), calendar.timegm((y + 1, 1, 1, 0, 0, 0)) - 1
    return CORPUS_START, CORPUS_END


def _generate_user(args: tuple[CorpusSpec, int, str, str]) -> tuple[int, int]:
    spec, index, user, maildir_s = args
    rng = random.Random(f"corpus:{spec.seed}:{index}")
    maildir = Path(maildir_s)
    address = f"{user}@{spec.domain}"
    folders = folder_names(spec.folders)
    count = total = 0
    for fi, folder in enumerate(folders):
        fdir = maildir / folder if folder else maildir
        for sub in ("cur", "new", "tmp"):
            (fdir / sub).mkdir(parents=True, exist_ok=True)
        if folder:
            (fdir / "maildirfolder").write_bytes(b"")
        keywords = [] if rng.random() < 0.3 else rng.sample(_KEYWORDS, rng.randint(1, 5))
        if keywords:
            (fdir / "dovecot-keywords").write_text("".join(f"{i} {k}\n" for i, k in enumerate(keywords)))
        lo, hi = _folder_years(folder)
        times = sorted(rng.randint(lo, hi) for _ in range(spec.messages))
        n_new = int(spec.messages * spec.new_fraction + rng.random())
        pid = _pid_for(index, fi)
        uid = 0
        entries = []
        for q, t in enumerate(times, start=1):
            size = draw_size(rng, spec)
            data = make_message(rng, spec.seed, t, address, spec.host, size, sent=folder == ".Sent")
            is_new = q > spec.messages - n_new
            flags = None if is_new else draw_flags(rng, folder, len(keywords))
            name = message_name(t, rng.randrange(1_000_000), pid, q, spec.host, len(data),
                                len(data) + data.count(b"\n"), flags)
            write_message(fdir / ("new" if is_new else "cur") / name, data, t)
            if rng.random() < 0.03:  # a UID given to a message expunged since: a gap, or a stale line
                uid += 1
                if spec.stale_lines and rng.random() < spec.stale_lines:
                    gone = draw_size(rng, spec)
                    # Q beyond the folder's messages: a base no message of the tree has.
                    entries.append((uid, message_name(t, rng.randrange(1_000_000), pid, spec.messages + uid,
                                                      spec.host, gone, gone + gone // 40, None)))
            uid += 1
            entries.append((uid, base_of(name)))
            count += 1
            total += len(data)
        ul = Uidlist(lo - rng.randint(0, 86400 * 30), uid + 1, f"{rng.getrandbits(128):032x}", entries)
        if spec.stale_lines and entries:
            # Rewritten last after its first `cut` lines, appended to since: the stale lines before the cut
            # went with that rewrite, the header's N is the one it wrote.
            cut = rng.randint(0, len(entries))
            live = {base_of(n) for n in os.listdir(fdir / "cur") + os.listdir(fdir / "new")}
            ul.entries = [e for e in entries[:cut] if e[1] in live] + entries[cut:]
            ul.nextuid = entries[cut - 1][0] + 1 if cut else 1
        ul.write(fdir)
        _write_caches(fdir, rng, len(entries))
        # Server files were last written when the last message arrived: deterministic, and plausible.
        _stamp(fdir, max(times, default=lo))
    (maildir / "subscriptions").write_text("".join(f"{f[1:]}\n" for f in folders if f))
    uidv = rng.randint(CORPUS_START, CORPUS_END)
    (maildir / "dovecot-uidvalidity").write_text(f"{uidv:08x}\n")
    (maildir / f"dovecot-uidvalidity.{uidv:08x}").write_bytes(b"")
    (maildir / "dovecot.list.index.log").write_bytes(randbytes(rng, 4 * KIB))
    _stamp(maildir, CORPUS_END)
    return count, total


def _stamp(folder: Path, t: int) -> None:
    """Give the non-message files at the top of ``folder`` the mtime ``t``."""
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            os.utime(entry.path, (t, t))


def maildir_path(root: Path, layout: str, user: str) -> Path:
    if layout == "sme8":
        return root / (SME8_ADMIN if user == "admin" else SME8_USERS / user / "Maildir")
    if layout == "plain":
        return root / user / "Maildir"
    raise ValueError(f"unknown layout {layout!r} (choose from {LAYOUTS})")


def generate(out: Path, spec: CorpusSpec, *, processes: int | None = None) -> Corpus:
    """Build the tree under ``out`` (which must not hold a previous corpus) and describe it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    users = user_names(spec.users)
    maildirs = {u: maildir_path(out, spec.layout, u) for u in users}
    jobs = [(spec, i, u, str(maildirs[u])) for i, u in enumerate(users)]
    if processes is None:
        processes = min(os.cpu_count() or 1, len(jobs))
    if processes <= 1 or spec.total_messages < 2000:
        results = [_generate_user(j) for j in jobs]
    else:
        # fork: workers inherit the imported module; each job is one user, results are tiny.
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            results = pool.map(_generate_user, jobs, chunksize=1)
    return Corpus(out, spec.layout, spec.domain, dict(sorted(maildirs.items())),
                  sum(r[0] for r in results), sum(r[1] for r in results))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m maildirsync.lab.corpus", description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--layout", choices=LAYOUTS, default="plain")
    p.add_argument("--users", type=int)
    p.add_argument("--folders", type=int)
    p.add_argument("--messages", type=int, help="per folder")
    p.add_argument("-j", "--processes", type=int)
    a = p.parse_args(argv)
    spec = spec_for(a.size, seed=a.seed, layout=a.layout, users=a.users, folders=a.folders, messages=a.messages)
    if a.out.exists() and any(a.out.iterdir()):
        p.error(f"{a.out} is not empty")
    t0 = time.monotonic()
    corpus = generate(a.out, spec, processes=a.processes)
    print(f"{corpus.messages} messages, {corpus.bytes / MIB:.1f} MiB, {len(corpus.maildirs)} users "
          f"in {time.monotonic() - t0:.1f}s -> {a.out} ({spec.layout}; spec {asdict(spec)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dovecot keyword letters (``a``-``z`` in a message's flags) and their names in ``dovecot-keywords``.

Once the destination server has its own ``dovecot-keywords``, a letter from the source may mean another
keyword there; letters are then translated by name (DESIGN.md §3, control files)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .compat import SLOTS

LETTERS = b"abcdefghijklmnopqrstuvwxyz"


def parse(text: bytes | None) -> dict[int, bytes]:
    """``dovecot-keywords`` lines are ``<index> <name>``; index 0 is letter ``a``."""
    out: dict[int, bytes] = {}
    for line in (text or b"").splitlines():
        idx, _, name = line.partition(b" ")
        if idx.isdigit() and name and int(idx) < len(LETTERS):
            out[int(idx)] = name
    return out


def render(entries: dict[int, bytes]) -> bytes:
    return b"".join(b"%d %s\n" % (i, n) for i, n in sorted(entries.items()))


@dataclass(**SLOTS)
class Translation:
    """Source letter -> destination letter; ``added`` are names the destination file lacks and gets."""

    table: dict[int, int | None] = field(default_factory=dict)  # None: drop the letter
    added: dict[int, bytes] = field(default_factory=dict)
    dst_entries: dict[int, bytes] = field(default_factory=dict)

    def apply(self, flags: bytes) -> bytes:
        if not self.table:
            return flags
        out = (self.table.get(c, c) for c in flags)
        return bytes(c for c in out if c is not None)


def translate(src_text: bytes | None, dst_text: bytes | None) -> Translation:
    src, dst = parse(src_text), parse(dst_text)
    by_name = {name: i for i, name in dst.items()}
    merged = dict(dst)
    tr = Translation(dst_entries=merged)
    for i, name in sorted(src.items()):
        j = by_name.get(name)
        if j is None:
            free = [k for k in range(len(LETTERS)) if k not in merged]
            if not free:
                continue  # the destination has 26 keywords already: the letter cannot be kept
            j = free[0]
            merged[j] = name
            tr.added[j] = name
            by_name[name] = j
        if i != j:
            tr.table[LETTERS[i]] = LETTERS[j]
    # A source letter whose keyword has no name, or could not get a slot, must not turn into
    # another keyword on the destination: drop it.
    for i in range(len(LETTERS)):
        if i not in src and i in merged and LETTERS[i] not in tr.table:
            tr.table[LETTERS[i]] = None
    return tr

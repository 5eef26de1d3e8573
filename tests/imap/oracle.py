"""The expected destination after a re-sync, derived from IMAP snapshots alone.

DESIGN.md §3 read at the level a mail client sees: a message is known by its body (unique per
folder in the test history), flags merge per flag, destination-side mail and changes win,
nothing is resurrected, and UIDs already shown to clients never change.
"""
from __future__ import annotations

from . import snapshot as s


def merge(dest: tuple, base: tuple, source: tuple) -> tuple:
    """DESIGN.md §3 per-flag merge: destination flags + added on source - removed on source."""
    return tuple(sorted((set(dest) | (set(source) - set(base))) - (set(base) - set(source))))


def selectable(snap: s.MailboxSnapshot) -> dict[str, s.FolderState]:
    return {n: f for n, f in snap.folders.items() if not f.attributes}


def expected_messages(d1, d_switch, s1, s2) -> dict[str, dict[str, tuple]]:
    """Per folder, body hash -> (flags, keywords, internaldate, size, uid or None for 'new').

    d1: destination after the first sync; d_switch: destination after users worked on it;
    s1/s2: source at the first and second sync.
    """
    expected: dict[str, dict[str, tuple]] = {}
    empty = s.FolderState("", ())
    for name in set(selectable(d_switch)) | set(selectable(s2)):
        was = d1.folders.get(name, empty).by_hash()
        now = d_switch.folders.get(name, empty).by_hash()
        base = s1.folders.get(name, empty).by_hash()
        src = s2.folders.get(name, empty).by_hash()
        folder = expected[name] = {}
        for h, m in now.items():
            if h not in base:  # delivered or saved on the destination: always kept
                folder[h] = (m.flags, m.keywords, m.internaldate, m.size, m.uid)
            elif h in src:  # on both sides: per-flag merge
                folder[h] = (merge(m.flags, base[h].flags, src[h].flags),
                             merge(m.keywords, base[h].keywords, src[h].keywords),
                             m.internaldate, m.size, m.uid)
            elif h in was and (was[h].flags, was[h].keywords) != (m.flags, m.keywords):
                folder[h] = (m.flags, m.keywords, m.internaldate, m.size, m.uid)  # touched there
            # else: gone from the source and untouched on the destination -> deleted
        for h, m in src.items():
            if h not in base:  # new on the source
                folder[h] = (m.flags, m.keywords, m.internaldate, m.size, None)
            # in base but not in `now`: expunged on the destination, never resurrected
    return expected


def check_after_resync(user, d1, d_switch, s1, s2, d2) -> list[str]:
    """Every way the destination after the second sync breaks DESIGN.md §3; [] if none."""
    problems = []
    if set(d2.folders) != set(d_switch.folders) | set(s2.folders):
        problems.append(f"folders {sorted(d2.folders)} != "
                        f"{sorted(set(d_switch.folders) | set(s2.folders))}")
    if set(d2.subscriptions) != set(d_switch.subscriptions) | set(s2.subscriptions):
        problems.append(f"subscriptions {d2.subscriptions} != destination's "
                        f"{d_switch.subscriptions} merged with source's {s2.subscriptions}")
    for name, folder in selectable(d1).items():
        now = d2.folders.get(name)
        if now is not None and now.uidvalidity != folder.uidvalidity:
            problems.append(f"{name}: UIDVALIDITY {folder.uidvalidity} -> {now.uidvalidity}")
    for name, want in sorted(expected_messages(d1, d_switch, s1, s2).items()):
        got_folder = d2.folders.get(name, s.FolderState(name, ()))
        got = got_folder.by_hash()
        if len(got) != len(got_folder.messages):
            problems.append(f"{name}: duplicate messages ({len(got_folder.messages)} UIDs, "
                            f"{len(got)} distinct bodies)")
        for h in sorted(set(want) - set(got)):
            problems.append(f"{name}: lost message {h[:12]} (expected {want[h]})")
        for h in sorted(set(got) - set(want)):
            problems.append(f"{name}: unexpected message {h[:12]} uid {got[h].uid} "
                            f"(resurrected or not deleted)")
        floor = d_switch.folders[name].uidnext if name in d_switch.folders else 1
        synced_first = d1.folders.get(name, s.FolderState(name, ()))
        carried = {m.body_sha256: m.uid for m in synced_first.messages.values()}
        for h in sorted(set(want) & set(got)):
            flags, keywords, date, size, uid = want[h]
            m = got[h]
            actual = (m.flags, m.keywords, m.internaldate, m.size)
            if actual != (flags, keywords, date, size):
                problems.append(f"{name} uid {m.uid}: (flags, keywords, date, size) {actual} "
                                f"!= expected {(flags, keywords, date, size)}")
            if uid is not None and m.uid != uid:
                problems.append(f"{name}: message {h[:12]} renumbered {uid} -> {m.uid}")
            if h in carried and m.uid != carried[h]:
                problems.append(f"{name}: synced message {h[:12]} changed UID "
                                f"{carried[h]} -> {m.uid}")
            if uid is None and m.uid < floor:
                problems.append(f"{name}: new message {h[:12]} got uid {m.uid} below "
                                f"UIDNEXT {floor} that clients already saw")
    return [f"{user}: {p}" for p in problems]

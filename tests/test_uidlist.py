"""dovecot-uidlist, versions 1 and 3, and the UID merge of DESIGN.md §3 ("The UID invariant"), pure."""

from __future__ import annotations

import pytest

from maildirsync import uidlist
from maildirsync.uidlist import Uidlist, UidlistError, merge, parse, render

A, B, C, D, E = (b"1600000001.M1P1.host,S=10", b"1600000002.M2P1.host,S=20", b"1600000003.M3P1.host,S=30",
                 b"1600000004.M4P1.host,S=40", b"1600000005.M5P1.host,S=50")  # fmt: skip
MINE = b"1700000000.M9P9.dest,S=99"  # delivered on the destination after the switch


def v1(uv, nxt, *entries) -> bytes:
    return b"1 %d %d\n" % (uv, nxt) + b"".join(b"%d %s:2,S\n" % (u, b) for u, b in entries)


def v3(uv, nxt, *entries, extra=b" G0123456789abcdef0123456789abcdef") -> bytes:
    return b"3 V%d N%d%s\n" % (uv, nxt, extra) + b"".join(b"%d :%s\n" % (u, b) for u, b in entries)


def present(*bases) -> dict:
    return {b: b + b":2,S" for b in bases}


# --- reading and writing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, version, uv, nxt, uids",
    [
        (v1(1600000000, 4, (1, A), (3, B)), 1, 1600000000, 4, {1: A, 3: B}),
        (v3(7, 10, (2, A), (9, C)), 3, 7, 10, {2: A, 9: C}),
        (b"3 V7 N3 G0123 Pabc\n1 W123 P9 :" + A + b"\n2 :" + B + b"\n", 3, 7, 3, {1: A, 2: B}),
        (b"3 V7 N1\n5 :" + A + b"\n", 3, 7, 6, {5: A}),  # next UID below a line: raised, as Dovecot does
        (b"1 7 5\n", 1, 7, 5, {}),
        (v1(7, 3, (1, A)) + b"\n\n", 1, 7, 3, {1: A}),  # blank lines are nothing
    ],
    ids=["v1", "v3", "v3-extensions", "v3-next-below-last", "v1-empty", "trailing-blank-lines"],
)
def test_parse(data, version, uv, nxt, uids):
    u = parse(data)
    assert (u.version, u.uidvalidity, u.next_uid, u.uids()) == (version, uv, nxt, uids)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"2 7 3\n1 0 " + A + b"\n", id="version-2"),
        pytest.param(b"1 seven 3\n", id="bad-v1-header"),
        pytest.param(b"3 N3\n", id="no-uidvalidity"),
        pytest.param(b"3 V7 N9\n2 :" + A + b"\n1 :" + B + b"\n", id="uids-out-of-order"),
        pytest.param(b"3 V7 N9\n2 :" + A + b"\n2 :" + B + b"\n", id="uid-twice"),
        pytest.param(b"3 V7 N9\n1 :../../etc/passwd\n", id="slash-in-name"),
        pytest.param(b"3 V7 N9\n1 " + A + b"\n", id="v3-line-without-colon"),
        pytest.param(b"1 7 2\n2 " + A + b"\n", id="v1-uid-at-next"),
        pytest.param(b"3 V7 N9\nx :" + A + b"\n", id="uid-not-a-number"),
    ],
)
def test_what_dovecot_would_call_corrupted_is_refused(data):
    with pytest.raises(UidlistError):
        parse(data)


@pytest.mark.parametrize(
    "data",
    [v1(1600000000, 4, (1, A), (3, B)), v3(7, 10, (2, A), (9, C)), b"3 V7 N3 G01 Pabc\n1 W123 P9 :" + A + b"\n"],
    ids=["v1", "v3", "v3-extensions"],
)
def test_render_gives_back_the_bytes_read(data):
    assert render(parse(data)) == data


def test_render_new_entries_in_each_version():
    u = Uidlist(1, 7, 5, [], [uidlist.Entry(2, A, A + b":2,RS")])
    assert render(u) == b"1 7 5\n2 " + A + b":2,RS\n"
    u = Uidlist(3, 7, 5, [b"G01"], [uidlist.Entry(2, A, A, b"W12")])
    assert render(u) == b"3 V7 N5 G01\n2 W12 :" + A + b"\n"


# --- the merge: one row per case of DESIGN.md §3 ---------------------------------------------------------

# (case, source file, destination file or None, destination's messages after the run, which are ours,
#  options, expected: uid -> base (None: leave the file), next UID, UIDVALIDITY, version, reindex, renumbered, own)
MERGE = [
    ("no destination file: the source's, byte for byte",
     v3(7, 4, (1, A), (3, B)), None, (A, B), (A, B), {},
     ({1: A, 3: B}, 4, 7, 3, False, 0, False)),
    ("no destination file, a message not fetched (yet): left out",
     v3(7, 4, (1, A), (3, B)), None, (A,), (A,), {},
     ({1: A}, 4, 7, 3, False, 0, False)),
    ("destination rewrote the source's version 1 as version 3 and the source took mail: version 3, source's UIDs",
     v1(7, 5, (1, A), (2, B), (4, C)), v3(7, 3, (1, A), (2, B)), (A, B, C), (A, B, C), {},
     ({1: A, 2: B, 4: C}, 5, 7, 3, False, 0, False)),
    ("destination still version 1 (never opened there): stays version 1",
     v3(7, 5, (1, A), (4, C)), v1(7, 2, (1, A)), (A, C), (A, C), {},
     ({1: A, 4: C}, 5, 7, 1, False, 0, False)),
    ("destination numbered a message the source numbered otherwise: source's UIDs, its index rebuilt",
     v3(7, 5, (3, A), (4, B)), v3(7, 5, (3, B), (4, A)), (A, B), (A, B), {"has_index": True},
     ({3: A, 4: B}, 5, 7, 3, True, 0, False)),
    ("destination numbered what the source has not yet: the source's next UID back, index rebuilt",
     v3(7, 3, (1, A), (2, B)), v3(7, 5, (1, A), (2, B), (3, C), (4, D)), (A, B, C, D), (A, B, C, D),
     {"has_index": True, "on_source": {A, B, C, D}.__contains__},
     ({1: A, 2: B}, 3, 7, 3, True, 0, False)),
    ("nothing to change: the file is left alone",
     v3(7, 3, (1, A), (2, B)), v3(7, 3, (1, A), (2, B)), (A, B), (A, B), {},
     (None, None, None, None, False, 0, False)),
    ("kept on the destination, gone from the source (--no-delete): keeps its UID",
     v3(7, 6, (1, A), (5, C)), v3(7, 5, (1, A), (3, B)), (A, B, C), (A, B, C), {"has_index": True},
     ({1: A, 3: B, 5: C}, 6, 7, 3, False, 0, False)),
    ("kept on the destination, its UID given to another message by the source since: dropped, reindexed",
     v3(7, 6, (1, A), (3, C)), v3(7, 3, (1, A), (3, B)), (A, B, C), (A, B, C), {"has_index": True},
     ({1: A, 3: C}, 6, 7, 3, True, 0, False)),
    ("source's UIDVALIDITY changed, the destination's is the one we wrote: follow the source, reindex",
     v3(8, 3, (1, A), (2, B)), v3(7, 3, (1, A), (2, B)), (A, B), (A, B), {"has_index": True, "uidvalidity_ours": 7},
     ({1: A, 2: B}, 3, 8, 3, True, 0, False)),
    ("mail of the destination's own (after the switch): its numbering extended, the source's UIDs kept above it",
     v3(7, 9, (1, A), (2, B), (7, D), (8, E)), v3(7, 5, (1, A), (2, B), (4, MINE)), (A, B, MINE, D, E), (A, B, D, E),
     {},
     ({1: A, 2: B, 4: MINE, 7: D, 8: E}, 9, 7, 3, False, 0, True)),
    ("after the switch, a straggler whose UID the destination gave already: a UID above both sides', counted",
     v3(7, 6, (1, A), (4, C), (5, D)), v3(7, 5, (1, A), (4, MINE)), (A, MINE, C, D), (A, C, D), {},
     ({1: A, 4: MINE, 5: D, 6: C}, 7, 7, 3, False, 1, True)),
    ("after the switch even with the destination's own mail expunged since (sticky): still only extended",
     v3(7, 4, (1, A), (3, C)), v3(7, 5, (1, A), (4, MINE)), (A, C), (A, C), {"own_before": True},
     ({1: A, 5: C}, 6, 7, 3, False, 1, True)),
    ("after the switch, never a reindex, never the next UID lowered",
     v3(7, 3, (1, A), (2, B)), v3(7, 9, (1, A), (2, B), (8, MINE)), (A, B, MINE), (A, B), {"has_index": True},
     (None, None, None, None, False, 0, True)),
    ("a UIDVALIDITY of the destination server's own (made before our first sync): kept, extended, said",
     v3(7, 3, (1, A), (2, B)), v3(99, 1), (A, B), (A, B), {},
     ({1: A, 2: B}, 3, 99, 3, False, 2, False)),
    ("the source never numbered the folder: nothing to follow",
     None, v3(7, 2, (1, A)), (A, B), (A, B), {},
     (None, None, None, None, False, 0, False)),
]


@pytest.mark.parametrize("case, src, dst, msgs, ours, opts, expected", MERGE, ids=[r[0] for r in MERGE])
def test_merge(case, src, dst, msgs, ours, opts, expected):
    uids, nxt, uv, version, reindex, renumbered, own = expected
    m = merge(parse(src) if src else None, parse(dst) if dst else None, present(*msgs), ours, dst_raw=dst, **opts)
    assert (m.reindex, m.renumbered, m.own) == (reindex, renumbered, own)
    if uids is None:
        assert m.uidlist is None
        return
    u = m.uidlist
    assert (u.uids(), u.next_uid, u.uidvalidity, u.version) == (uids, nxt, uv, version)
    again = parse(render(u))  # what we write, Dovecot reads back the same
    assert (again.uids(), again.next_uid, again.uidvalidity) == (uids, nxt, uv)
    if "UIDVALIDITY of the destination server" in case:
        assert m.notes and "INBOX" in m.notes[0] and m.uidvalidity is None  # never taken for ours


def test_mirror_of_an_untouched_source_is_its_bytes():
    data = b"3 V7 N4 G0123 Pabc\n1 W123 P9 :" + A + b"\n3 :" + B + b"\n"
    m = merge(parse(data), None, present(A, B), (A, B))
    assert render(m.uidlist) == data


# Dovecot appends a line per new message without rewriting the header (its N stays behind) and keeps the
# lines of expunged messages until it compacts the file. Where the source's file, so, says what the merge
# says, it is written as it is: later runs can then carry it without reading it line by line.
STALE = b"3 V7 N2 G01\n1 :" + A + b"\n2 :" + B + b"\n3 :" + C + b"\n"
AS_READ = [
    ("header behind its lines, a line of a message expunged on the source: the source's bytes",
     STALE, None, present(A, C), {A, C}, True),
    ("the same over the destination's earlier copy", STALE, v3(7, 3, (1, A), (2, B), extra=b" G01"),
     present(A, C), {A, C}, True),
    ("a line of a message the source still has, not here yet: merged, its line left out",
     STALE, None, present(A, C), {A, B, C}, False),
    ("nothing says what the source still has: merged", STALE, None, present(A, C), None, False),
    ("one kept on the destination, gone from the source (--no-delete): merged, it keeps its UID",
     v3(7, 6, (1, A), (5, C)), v3(7, 5, (1, A), (3, B)), present(A, B, C), {A, C}, False),
    ("version 1 naming other flags than the file here has: merged",
     v1(7, 3, (1, A), (2, B)), None, {A: A + b":2,FS", B: B + b":2,S"}, {A, B}, False),
]


@pytest.mark.parametrize("case, src, dst, here, on_src, as_read", AS_READ, ids=[r[0] for r in AS_READ])
def test_the_source_file_as_read_is_written_where_it_says_the_same(case, src, dst, here, on_src, as_read):
    on_source = on_src.__contains__ if on_src is not None else None
    m = merge(parse(src), parse(dst) if dst else None, here, set(here), dst_raw=dst, on_source=on_source, src_raw=src)
    assert m.uidlist is not None and not m.own
    assert (m.raw == src) is as_read and (m.raw is None) is not as_read
    written = parse(m.data())
    # Either way Dovecot reads the UIDs the merge gives, for every message here, and the same next UID.
    assert {b: e.uid for b, e in written.by_base().items() if b in here} == {e.base: e.uid for e in m.uidlist.entries}
    assert written.next_uid == m.uidlist.next_uid


def test_the_source_file_already_here_is_left_alone():
    m = merge(parse(STALE), parse(STALE), present(A, C), (A, C), dst_raw=STALE, on_source={A, C}.__contains__,
              src_raw=STALE)  # fmt: skip
    assert m.uidlist is None and not m.reindex


def test_version_3_destination_keeps_its_own_lines_for_the_same_message():
    """Dovecot adds extension fields (W<vsize>) to the lines it rewrites; merging them away would make
    the destination rewrite the file again after every sync."""
    src = v1(7, 3, (1, A), (2, B))
    dst = b"3 V7 N2 Gabc\n1 W999 :" + A + b"\n"
    m = merge(parse(src), parse(dst), present(A, B), (A, B), dst_raw=dst)
    assert render(m.uidlist) == b"3 V7 N3 Gabc\n1 W999 :" + A + b"\n2 :" + B + b"\n"

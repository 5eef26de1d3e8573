"""The three-way rules of DESIGN.md §3, one parametrized row each, against the pure planner."""

from __future__ import annotations

import pytest

from maildirsync import maildir
from maildirsync.index import Ctl, FolderState, Rec
from maildirsync.listing import Folder, Mailbox, Msg
from maildirsync.plan import Inputs, Options, make_plan

B = b"1600000000.M1P1.src,S=100"
H = b"h" * 16
T = 1_600_000_000 * 10**9


def box(spec: dict, errors=()) -> Mailbox:
    """spec: {folder: [(subdir, name, size, mtime), ...]}"""
    mb = Mailbox(errors=list(errors))
    for folder, msgs in spec.items():
        f = Folder()
        for sub, name, size, mtime in msgs:
            p = maildir.parse_name(name)
            f.msgs[p.base] = Msg(sub, name, size, mtime, p)
        mb.folders[folder] = f
    return mb


def rec(src=(b"cur", B + b":2,S"), dst=(b"cur", B + b":2,S"), size=100, mtime=T):
    return Rec(src[0], src[1], dst[0], dst[1], size, mtime, H)


def m(sub, name, size=100, mtime=T):
    return (sub, name, size, mtime)


def plan(src, dst, recs, **opts):
    errors = opts.pop("errors", ())
    return make_plan(Inputs(box(src, errors), box(dst), recs, {}, options=Options(**opts)))


def kinds(p):
    return [(a.kind, a.folder, a.dst) for a in p.actions if a.kind != "mkdir"]


RULES = [
    # (rule, source now, destination now, index, expected (kind, folder, destination name))
    (
        "new base, absent on destination: fetch",
        {b"": [m(b"new", B)]},
        {b"": []},
        {},
        [("fetch", b"", (b"new", B))],
    ),
    (
        "new base, same base and size on destination: adopt, then apply the source flags",
        {b"": [m(b"cur", B + b":2,RS")]},
        {b"": [m(b"cur", B + b":2,S")]},
        {},
        [("adopt", b"", (b"cur", B + b":2,RS"))],
    ),
    (
        "new base, same base but other content on destination: conflict, keep both",
        {b"": [m(b"cur", B + b":2,S")]},
        {b"": [m(b"cur", B + b":2,S", size=99)]},
        {},
        [("conflict", b"", (b"cur", b"1600000000.M1P1.src-conflict1,S=100:2,S"))],
    ),
    (
        "new base that left another folder of the same user: local move, no download",
        {b"": [], b".Archive": [m(b"cur", B + b":2,S")]},
        {b"": [m(b"cur", B + b":2,S")], b".Archive": []},
        {b"": {B: rec()}},
        [("move", b".Archive", (b"cur", B + b":2,S"))],
    ),
    (
        "new base still present in another folder (a copy): local copy, no download",
        {b"": [m(b"cur", B + b":2,S")], b".Archive": [m(b"cur", B + b":2,S")]},
        {b"": [m(b"cur", B + b":2,S")], b".Archive": []},
        {b"": {B: rec()}},
        [("copy", b".Archive", (b"cur", B + b":2,S"))],
    ),
    (
        "renamed on the source (flags), unchanged on the destination: rename",
        {b"": [m(b"cur", B + b":2,RS")]},
        {b"": [m(b"cur", B + b":2,S")]},
        {b"": {B: rec()}},
        [("rename", b"", (b"cur", B + b":2,RS"))],
    ),
    (
        "first read on the source (new -> cur): rename",
        {b"": [m(b"cur", B + b":2,S")]},
        {b"": [m(b"new", B)]},
        {b"": {B: rec(src=(b"new", B), dst=(b"new", B))}},
        [("rename", b"", (b"cur", B + b":2,S"))],
    ),
    (
        "renamed on both sides: per-flag merge",
        {b"": [m(b"cur", B + b":2,RS")]},
        {b"": [m(b"cur", B + b":2,FS")]},
        {b"": {B: rec()}},
        [("rename", b"", (b"cur", B + b":2,FRS"))],
    ),
    (
        "renamed on both sides, merge equals the destination: index only",
        {b"": [m(b"cur", B + b":2,")]},
        {b"": [m(b"cur", B + b":2,")]},
        {b"": {B: rec()}},
        [("record", b"", (b"cur", B + b":2,"))],
    ),
    (
        "renamed on the source, other content under the base on the destination: conflict, keep both",
        {b"": [m(b"cur", B + b":2,RS")]},
        {b"": [m(b"cur", B + b":2,FS", size=99)]},
        {b"": {B: rec()}},
        [("conflict", b"", (b"cur", b"1600000000.M1P1.src-conflict1,S=100:2,RS"))],
    ),
    (
        "renamed on the source, other content there under the very name the merge gives: conflict",
        {b"": [m(b"cur", B + b":2,")]},
        {b"": [m(b"cur", B + b":2,", size=99)]},
        {b"": {B: rec()}},
        [("conflict", b"", (b"cur", b"1600000000.M1P1.src-conflict1,S=100:2,"))],
    ),
    (
        "unchanged on the source, flags changed on the destination: leave it",
        {b"": [m(b"cur", B + b":2,S")]},
        {b"": [m(b"cur", B + b":2,FS")]},
        {b"": {B: rec()}},
        [],
    ),
    (
        "unchanged on the source, deleted on the destination: not resurrected, remembered as deleted there",
        {b"": [m(b"cur", B + b":2,S")]},
        {b"": []},
        {b"": {B: rec()}},
        [("record", b"", None)],
    ),
    (
        "renamed on the source, deleted on the destination: not resurrected",
        {b"": [m(b"cur", B + b":2,RS")]},
        {b"": []},
        {b"": {B: rec()}},
        [("record", b"", None)],
    ),
    (
        "deleted on the destination in an earlier run: nothing more",
        {b"": [m(b"cur", B + b":2,RS")]},
        {b"": []},
        {b"": {B: rec(dst=(b"cur", b""))}},
        [],
    ),
    (
        "same name, content changed on the source (size): re-fetch",
        {b"": [m(b"cur", B + b":2,S", size=120)]},
        {b"": [m(b"cur", B + b":2,S")]},
        {b"": {B: rec()}},
        [("refetch", b"", (b"cur", B + b":2,S"))],
    ),
    (
        "same name, content changed on the source (mtime): re-fetch",
        {b"": [m(b"cur", B + b":2,S", mtime=T + 5 * 10**9)]},
        {b"": [m(b"cur", B + b":2,S")]},
        {b"": {B: rec()}},
        [("refetch", b"", (b"cur", B + b":2,S"))],
    ),
    (
        "whole-second mtime from SFTP is not a content change",
        {b"": [m(b"cur", B + b":2,S", mtime=T)]},
        {b"": [m(b"cur", B + b":2,S", mtime=T + 123_456_789)]},
        {b"": {B: rec(mtime=T + 123_456_789)}},
        [],
    ),
    (
        "gone from the source, unchanged on the destination: delete (1 of 4: under the guard)",
        {b"": [m(b"cur", b"keep%d:2,S" % i) for i in range(3)]},
        {b"": [m(b"cur", B + b":2,S")] + [m(b"cur", b"keep%d:2,S" % i) for i in range(3)]},
        {b"": {B: rec(), **{b"keep%d" % i: rec((b"cur", b"keep%d:2,S" % i), (b"cur", b"keep%d:2,S" % i)) for i in range(3)}}},
        [("delete", b"", None)],
    ),
    (
        "gone from the source, flags changed on the destination: kept (forgotten by the index)",
        {b"": []},
        {b"": [m(b"cur", B + b":2,FS")]},
        {b"": {B: rec()}},
        [("forget", b"", None)],
    ),
    (
        "gone from the source, deleted on the destination too: forgotten",
        {b"": []},
        {b"": []},
        {b"": {B: rec()}},
        [("forget", b"", None)],
    ),
    (
        "on the destination only, not in the index: never touched",
        {b"": []},
        {b"": [m(b"cur", B + b":2,S")]},
        {},
        [],
    ),
]


@pytest.mark.parametrize("rule, src, dst, recs, expected", RULES, ids=[r[0] for r in RULES])
def test_rule(rule, src, dst, recs, expected):
    assert kinds(plan(src, dst, recs)) == expected


def test_delete_is_off_with_no_delete():
    p = plan({b"": []}, {b"": [m(b"cur", B + b":2,S")]}, {b"": {B: rec()}}, delete=False)
    assert kinds(p) == []
    assert b"" in p.held


def test_no_delete_and_no_forget_after_a_listing_error():
    p = plan({b"": []}, {b"": [m(b"cur", B + b":2,S")]}, {b"": {B: rec()}}, errors=[".Sent: permission denied"])
    assert kinds(p) == []
    assert any("nothing is deleted" in w for w in p.warnings)


def test_move_becomes_copy_when_deletes_are_off():
    src = {b"": [], b".Archive": [m(b"cur", B + b":2,S")]}
    dst = {b"": [m(b"cur", B + b":2,S")], b".Archive": []}
    p = plan(src, dst, {b"": {B: rec()}}, delete=False)
    assert [a.kind for a in p.actions] == ["copy"]


@pytest.mark.parametrize("deleted, total, max_delete, guarded", [(2, 4, 50, False), (3, 4, 50, True), (4, 4, 100, False)])
def test_deletion_ratio_guard(deleted, total, max_delete, guarded):
    names = [b"m%d" % i for i in range(total)]
    recs = {b"": {n: rec((b"cur", n + b":2,S"), (b"cur", n + b":2,S")) for n in names}}
    dst = {b"": [m(b"cur", n + b":2,S") for n in names]}
    src = {b"": [m(b"cur", n + b":2,S") for n in names[deleted:]]}
    p = plan(src, dst, recs, max_delete=max_delete)
    dels = [a for a in p.actions if a.kind == "delete"]
    assert len(dels) == (0 if guarded else deleted)
    assert bool(p.warnings) == guarded
    if guarded:
        assert "--max-delete" in p.warnings[0]


def test_actions_are_ordered_so_nothing_is_lost():
    """Moves come before deletes; control files after every message, but dovecot-keywords before them all
    (Dovecot must know a keyword letter when it first sees a message); the UID merge last of all."""
    from maildirsync.uidplan import plan_uids

    src = {b"": [m(b"cur", b"new1:2,S")], b".A": [m(b"cur", B + b":2,S")]}
    src_box = box(src)
    src_box.folders[b""].controls[b"subscriptions"] = (10, T)
    src_box.folders[b".A"].controls[b"dovecot-keywords"] = (10, T)
    dst = {b"": [m(b"cur", B + b":2,S"), m(b"cur", b"gone:2,S")]}
    recs = {b"": {B: rec(), b"gone": rec((b"cur", b"gone:2,S"), (b"cur", b"gone:2,S"))}}
    inp = Inputs(src_box, box(dst), recs, {}, options=Options(max_delete=100))
    p = make_plan(inp)
    plan_uids(p, inp, {b".A": (b"3 V1 N2\n1 :" + B + b"\n", None, (20, T))})
    assert [(a.kind, a.base) for a in p.actions] == [
        ("mkdir", b""), ("control", b"dovecot-keywords"), ("move", B), ("fetch", b"new1"), ("delete", b"gone"),
        ("control", b"subscriptions"), ("control", b"dovecot-uidlist"),
    ]  # fmt: skip


CTL = Ctl(10, T, "abc", 10, T)


@pytest.mark.parametrize(
    "name, state, dst_has, dst_hash, src_stamp, expected",
    [
        (b"dovecot-keywords", None, False, None, (10, T), "carry"),  # first sync
        (b"dovecot-keywords", CTL, True, "abc", (12, T + 1), "carry"),  # still ours, source changed
        (b"dovecot-keywords", CTL, True, "abc", (10, T), None),  # nothing changed
        (b"dovecot-keywords", CTL, True, "zzz", (12, T + 1), None),  # destination server owns it now
        (b"dovecot-keywords", None, True, "zzz", (10, T), "check"),  # no record: ours only if identical
        # Never carried, never left alone: merged (test_uidlist.py), whatever the state
        (b"dovecot-uidlist", None, False, None, (10, T), None),
        (b"dovecot-uidlist", CTL, True, "zzz", (12, T + 1), None),
        (b"subscriptions", CTL, True, "zzz", (12, T + 1), "merge"),  # the destination's own: merged
        (b"subscriptions", CTL, True, "zzz", (10, T), None),
    ],
)
def test_control_files(name, state, dst_has, dst_hash, src_stamp, expected):
    src, dst = box({b"": []}), box({b"": []})
    src.folders[b""].controls[name] = src_stamp
    if dst_has:
        dst.folders[b""].controls[name] = (10, T)
    states = {b"": FolderState({}, {name: state})} if state else {}
    hashes = {(b"", name): dst_hash} if dst_hash else {}
    p = make_plan(Inputs(src, dst, {}, states, hashes))
    got = [a.note for a in p.actions if a.kind == "control"]
    assert got == ([expected] if expected else [])


def test_keyword_letters_translated_when_destination_owns_its_keywords():
    from maildirsync.keywords import translate

    t = translate(b"0 $Work\n", b"0 $Other\n")
    src, dst = box({b"": [m(b"cur", B + b":2,Sa")]}), box({b"": []})
    p = make_plan(Inputs(src, dst, {}, {}, {}, {b"": t}))
    fetch = [a for a in p.actions if a.kind == "fetch"][0]
    assert fetch.dst == (b"cur", B + b":2,Sb")
    assert [a.note for a in p.actions if a.kind == "control"] == ["keywords"]


def test_plan_is_pure_and_repeatable():
    src = {b"": [m(b"cur", B + b":2,RS")], b".X": [m(b"new", b"n1")]}
    dst = {b"": [m(b"cur", B + b":2,S")]}
    recs = {b"": {B: rec()}}
    assert [a.key() for a in plan(src, dst, recs).actions] == [a.key() for a in plan(src, dst, recs).actions]

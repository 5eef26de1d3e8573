"""The per-folder shortcuts of views.py and listing.py answer exactly what the slow definition does: a
name's base found by searching the folder's names blob, and a listing's suspect bytes found by translate()."""

import random

import pytest

from maildirsync import listing, maildir, views

B = b"1700000000.M1P2.sme8,S=3000"


def _by_parsing(blobs, base, sep):
    return sorted((sub, n) for sub, blob in blobs.items() for n in blob.split(b"\0")
                  if n and maildir.parse_name(n, sep).base == base)  # fmt: skip


@pytest.mark.parametrize(
    "cur, new, base, sep, expected",
    [
        ([B + b":2,S"], [], B, b":", [(b"cur", B + b":2,S")]),
        ([], [B], B, b":", [(b"new", B)]),
        ([B + b":2,"], [B], B, b":", [(b"cur", B + b":2,"), (b"new", B)]),  # a rename raced the listing
        ([B + b"x:2,S", b"a" + B + b":2,S"], [B + b"x"], B, b":", []),  # a longer base, a base ending in it
        ([B + b":2,S:x"], [], B, b":", []),  # the last separator decides: its base is B:2,S
        ([B + b":2,S:x"], [], B + b":2,S", b":", [(b"cur", B + b":2,S:x")]),
        ([B + b"!2,S"], [], B, b"!", [(b"cur", B + b"!2,S")]),  # another separator
        ([B + b"!2,S"], [], B, b":", []),
        ([], [], B, b":", []),
        ([b"x", B + b":2,RS", b"y:2,"], [b"z"], B, b":", [(b"cur", B + b":2,RS")]),  # first, middle, last
    ],
)
def test_names_with_base(cur, new, base, sep, expected):
    blobs = {b"cur": b"".join(n + b"\0" for n in cur), b"new": b"".join(n + b"\0" for n in new)}
    assert sorted(views.names_with_base(blobs, base, sep)) == expected == _by_parsing(blobs, base, sep)


def test_names_with_base_agrees_with_parsing_every_name():
    rnd = random.Random(7)
    parts = [b"1", b"1.M", b":", b"2,", b"S", b"!", b",S=9", b"x"]
    for _ in range(2000):
        names = {b"".join(rnd.choice(parts) for _ in range(rnd.randint(1, 5))) for _ in range(rnd.randint(0, 6))}
        names.discard(b"")
        blobs = {b"cur": b"".join(n + b"\0" for n in names if rnd.random() < 0.5)}
        blobs[b"new"] = b"".join(n + b"\0" for n in names if n + b"\0" not in blobs[b"cur"])
        sep = rnd.choice([b":", b"!"])
        for base in {maildir.parse_name(n, sep).base for n in names} | {b"1", b"1.M"}:
            assert sorted(views.names_with_base(blobs, base, sep)) == _by_parsing(blobs, base, sep)


def _record(name: bytes) -> bytes:
    return name + b"/3000/1700000000.000000000"


@pytest.mark.parametrize("byte", [*range(0x01, 0x20), 0x7F])
def test_listing_problems_sees_every_suspect_byte(byte):
    box = listing.Mailbox()
    blob = _record(B + b":2,S") + b"\0" + _record(b"17.M" + bytes([byte]) + b"x:2,") + b"\0"
    listing.problems(box, b".Sent/cur", blob)
    assert len(box.rejected) + len(box.skipped) == 1


@pytest.mark.parametrize("byte", [0x20, 0x7E, 0x80, 0xFF])
def test_listing_problems_passes_plain_bytes(byte):
    box = listing.Mailbox()
    listing.problems(box, b".Sent/cur", _record(b"17.M" + bytes([byte]) + b"x:2,S") + b"\0")
    assert box.rejected == box.skipped == []


def test_bases_of_is_what_parse_name_says():
    rnd = random.Random(11)
    parts = [b"1", b"1.M", b":", b"2,", b"S", b"!", b",S=9", b"x"]
    for _ in range(2000):
        names = [b"".join(rnd.choice(parts) for _ in range(rnd.randint(1, 5))) for _ in range(rnd.randint(0, 6))]
        sep = rnd.choice([b":", b"!"])
        blob = b"".join(n + b"\0" for n in names)
        assert views.bases_of(blob, sep) == {maildir.parse_name(n, sep).base for n in names} - {b""}


@pytest.mark.parametrize(
    "blob",
    [b"", b"\0", b"a", b"a\0", b"a\0b\0", b"a\0\0b\0", b"\0a\0", b"a\0b", b"a\0\0", b"a/1/2.0\0b/3/4.5\0"],
)
def test_records_are_the_non_empty_fields_of_a_blob(blob):
    from maildirsync.transport import records

    assert records(blob) == [r for r in blob.split(b"\0") if r]


@pytest.mark.parametrize("flags", [b"", b"S", b"SR", b"RS", b"SSa", b"TSaDR", b"ba", b"SabS"])
def test_sort_flags_sorts_and_dedups_every_time(flags):
    assert maildir.sort_flags(flags) == bytes(sorted(set(flags))) == maildir.sort_flags(bytes(flags))

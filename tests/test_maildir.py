"""Maildir facts (DESIGN.md §2): names, flags, separators, folders and file kinds."""

import pytest

from maildirsync import keywords, maildir
from maildirsync.maildir import FileKind


@pytest.mark.parametrize(
    "name, sep, base, info, flags",
    [
        (b"1600000000.M1P2.host,S=120,W=123:2,RS", b":", b"1600000000.M1P2.host,S=120,W=123", b"2,RS", b"RS"),
        (b"1600000000.M1P2.host!2,S", b"!", b"1600000000.M1P2.host", b"2,S", b"S"),
        (b"1600000000.M1P2.host;2,FS", b";", b"1600000000.M1P2.host", b"2,FS", b"FS"),
        (b"1600000000.M1P2.host", b":", b"1600000000.M1P2.host", b"", None),  # new/: no info part
        (b"1600000000.M1P2.host:2,", b":", b"1600000000.M1P2.host", b"2,", b""),
        (b"1600000000.M1P2.host:2,Sab", b":", b"1600000000.M1P2.host", b"2,Sab", b"Sab"),  # keywords a, b
        (b"1600000000.M1P2.host:1,experimental", b":", b"1600000000.M1P2.host", b"1,experimental", None),
        (b"caf\xe9\xff.host:2,S", b":", b"caf\xe9\xff.host", b"2,S", b"S"),  # not UTF-8: kept byte for byte
    ],
)
def test_parse_name(name, sep, base, info, flags):
    p = maildir.parse_name(name, sep)
    assert (p.base, p.info, p.flags) == (base, info, flags)
    assert p.name == name
    assert maildir.base_of(name, sep) == base


@pytest.mark.parametrize(
    "name, sep",
    [(b"a:2,S:x", b":"), (b"a", b"!"), (b":2,S", b":"), (b"a:", b":"), (b"", b":"), (b"a!2,S:2,T", b"!")],
)
def test_base_of_splits_as_parse_name_does(name, sep):
    """The shortcut many callers take must name the base parse_name gives (on the last separator)."""
    assert maildir.base_of(name, sep) == maildir.parse_name(name, sep).base


def test_a_parsed_name_is_a_value():
    a, b = maildir.parse_name(b"x:2,S"), maildir.parse_name(b"x:2,S")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.base = b"y"  # type: ignore[misc]


@pytest.mark.parametrize(
    "names, sep",
    [
        ([b"a:2,S", b"b"], b":"),
        ([b"a!2,S"], b"!"),
        ([b"a;2,RS"], b";"),
        ([b"a", b"b"], b":"),
    ],
)
def test_detect_separator(names, sep):
    assert maildir.detect_separator(names) == sep


def test_with_flags_sorts_in_ascii_order():
    p = maildir.parse_name(b"x:2,S")
    assert p.with_flags(b"TSaDR", b":").name == b"x:2,DRSTa"


@pytest.mark.parametrize(
    "name, kind",
    [
        (b"dovecot-uidlist", FileKind.CONTROL),
        (b"dovecot-keywords", FileKind.CONTROL),
        (b"subscriptions", FileKind.CONTROL),
        (b"maildirfolder", FileKind.CONTROL),
        (b"courierimapuiddb", FileKind.CONTROL),
        (b"courierimapsubscribed", FileKind.CONTROL),
        (b"dovecot.index", FileKind.CACHE),
        (b"dovecot.index.log", FileKind.CACHE),
        (b"dovecot.index.cache", FileKind.CACHE),
        (b"dovecot.list.index.log", FileKind.CACHE),
        (b"dovecot.mailbox.log", FileKind.CACHE),
        (b"dovecot-uidvalidity", FileKind.CACHE),
        (b"dovecot-uidvalidity.5f5e1000", FileKind.CACHE),
        (b"maildirsize", FileKind.CACHE),
        (b"random.txt", FileKind.OTHER),
    ],
)
def test_classify(name, kind):
    assert maildir.classify(name) is kind


@pytest.mark.parametrize(
    "name, bad",
    [
        (b"ok:2,S", False),
        (b"caf\xe9", False),
        (b"", True),
        (b".", True),
        (b"..", True),
        (b"a/b", True),
        (b"a\x00b", True),
        (b"a\nb", True),
        (b"a\x1bb", True),
        (b"x" * 256, True),
    ],
)
def test_bad_name(name, bad):
    assert (maildir.bad_name(name) is not None) == bad


@pytest.mark.parametrize(
    "name, ok",
    [(b".Sent", True), (b".Archive.2019", True), (b".&AOk-t&AOk-", True), (b".", False), (b"..", False), (b"cur", False)],
)
def test_folder_names(name, ok):
    assert maildir.is_folder_name(name) == ok


@pytest.mark.parametrize(
    "dest, old_src, new_src, merged",
    [
        (b"S", b"S", b"RS", b"RS"),  # source added R
        (b"FS", b"S", b"RS", b"FRS"),  # destination added F, source added R: both kept
        (b"FS", b"FS", b"S", b"S"),  # source removed F
        (b"S", b"FS", b"FS", b"S"),  # destination removed F, source did nothing: stays removed
        (b"DS", b"S", b"", b"D"),  # source removed S (marked unread)
        (b"Sa", b"S", b"Sb", b"Sab"),  # keyword letters merge like flags
    ],
)
def test_merge_flags(dest, old_src, new_src, merged):
    assert maildir.merge_flags(dest, old_src, new_src) == merged


def test_keyword_translation_by_name():
    src = b"0 $Work\n1 $Todo\n"
    dst = b"0 $Todo\n"
    t = keywords.translate(src, dst)
    assert t.apply(b"Sab") == b"Sba"  # $Work gets a new letter b, $Todo is a there
    assert t.added == {1: b"$Work"}
    assert keywords.render(t.dst_entries) == b"0 $Todo\n1 $Work\n"


def test_show_escapes_control_and_invalid_bytes():
    assert maildir.show(b"a\x1bb\xff") == "a\\x1bb\\xff"

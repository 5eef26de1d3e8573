"""The e-smith database format, as DESIGN.md section 5 states it, and nothing dropped silently: every line
is a record, a comment, a blank, or a problem with its line number (issue 11, part 2)."""

from __future__ import annotations

import re

import pytest

from importer import esmithdb
from importer_fixtures import ACCOUNTS, HOSTILE_ACCOUNTS


@pytest.mark.parametrize(
    "line, key, rtype, props",
    [
        ("DomainName=example.com", "DomainName", "example.com", {}),
        ("SystemName=", "SystemName", "", {}),
        ("alice=user|FirstName|Alice", "alice", "user", {"FirstName": "Alice"}),
        ("k=t|A|1|B|2", "k", "t", {"A": "1", "B": "2"}),
        (r"k=t|P|a\|b", "k", "t", {"P": "a|b"}),
        (r"k=t|P|one\ntwo", "k", "t", {"P": "one\ntwo"}),
        (r"k=t|P|x\|y\nz|Q|", "k", "t", {"P": "x|y\nz", "Q": ""}),
        ("k=t|P|a=b=c", "k", "t", {"P": "a=b=c"}),  # split on the first '=' only
        ("url=http://x/?a=1", "url", "http://x/?a=1", {}),
        (r"k=plain\|value", "k", "plain|value", {}),  # escaped pipe: still a plain value
        ("k=t|Members|alice,bob\n", "k", "t", {"Members": "alice,bob"}),
        ("k=t|P| spaced value ", "k", "t", {"P": " spaced value "}),  # property values are kept as written
    ],
)
def test_canonical_lines(line, key, rtype, props):
    notes: list[str] = []
    rec = esmithdb.parse_line(line, notes)
    assert rec is not None
    assert (rec.key, rec.type, rec.props) == (key, rtype, props)
    assert notes == []


@pytest.mark.parametrize("line", ["", "   ", "\n", "# comment", "#k=v|a|b", "#", "  # indented comment", "\t#tab"])
def test_ignored_lines(line):
    """Comments after blanks are comments, as NethServer's reader (esmith::config) has it."""
    assert esmithdb.parse_line(line) is None


# line, the record read from it (None: no record), what the problem says
NOT_CANONICAL = [
    ("no equals sign", None, "no '='"),
    ("=value", None, "empty key"),
    ("alice =user|FirstName|Alice", ("alice", "user", {"FirstName": "Alice"}), "blanks around the key"),
    ("alice= user|FirstName|Alice", ("alice", "user", {"FirstName": "Alice"}), "blanks around the type"),
    (" DomainName=example.com ", ("DomainName", "example.com", {}), "blanks around the key"),
    ("DomainName=example.com  ", ("DomainName", "example.com", {}), "blanks around the value"),
    ("k=t|A|1|B", ("k", "t", {"A": "1", "B": ""}), "property 'B' has no value"),
    ("k=t|A|1|A|2", ("k", "t", {"A": "2"}), "property 'A' given twice"),
    ("k=t| A |1", ("k", "t", {"A": "1"}), "blanks around the property name"),
    (r"k=t|P|a\tb", ("k", "t", {"P": r"a\tb"}), r"unknown escape '\t'"),
    (r"k=t|P|a\\b", ("k", "t", {"P": "a\\\\b"}), r"unknown escape '\\'"),
    ("k=t|P|a\\", ("k", "t", {"P": "a\\"}), "lone backslash"),
    ("k=|P|1", ("k", "", {"P": "1"}), "no type"),
    ("k=t|P|a\x01b", ("k", "t", {"P": "a\x01b"}), "control characters"),
    ("my key=t|P|1", ("my key", "t", {"P": "1"}), "contains blanks"),
]


@pytest.mark.parametrize("line, read, says", NOT_CANONICAL, ids=[r[0] for r in NOT_CANONICAL])
def test_lines_not_in_canonical_form_are_read_or_reported_with_their_line(line, read, says):
    db = esmithdb.parse_text(f"a=b\n{line}\nc=d|P|1\n", "accounts")
    assert [p.line for p in db.problems] == [2]
    p = db.problems[0]
    assert says in p.reason, p.reason
    if read is None:
        assert not p.kept and set(db.records) == {"a", "c"}
    else:
        key, rtype, props = read
        assert p.kept and p.read_as and p.key == key
        rec = db.get(key)
        assert (rec.type, rec.props, rec.line) == (rtype, props, 2)


def test_duplicate_key_the_last_one_wins_and_both_lines_are_named():
    db = esmithdb.parse_text("k=t|A|1\nx=y\nk=t|A|2\n")
    assert db.get("k").props == {"A": "2"} and db.get("k").line == 3
    [p] = db.problems
    assert p.line == 3 and "line 1 is overridden" in p.reason


def test_crlf_file_is_read_and_said_once():
    db = esmithdb.parse_text("a=b|P|1\r\nc=d\r\n# c\r\ne=f\r\n")
    assert db.get("a").props == {"P": "1"} and db.value("c") == "d" and db.value("e") == "f"
    [p] = db.problems
    assert p.line == 1 and "3 lines, from line 1 end with a carriage return" in p.reason


def test_every_line_of_a_hostile_file_is_a_record_a_comment_or_a_problem(hostile_accounts):
    db = esmithdb.load(hostile_accounts)
    lines = hostile_accounts.read_text(encoding="latin-1").split("\n")
    recorded = {r.line for r in db.records.values()}
    problems = {p.line for p in db.problems}
    # a line a later duplicate overrides is named in that duplicate's problem
    overridden = {int(m) for p in db.problems for m in re.findall(r"line (\d+) is overridden", p.reason)}
    assert overridden == {10}  # carol's first line
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert n in recorded | problems | overridden, (n, line)
    # what the fixture holds, each kind once at least
    assert db.get("jdoe") is None and any(p.key == "jdoe" and not p.kept for p in db.problems)
    assert db.get("spaced").type == "user" and db.get("Upper").type == "User"


def test_accounts_fixture_parses(tmp_path):
    p = tmp_path / "accounts"
    p.write_text(ACCOUNTS)
    db = esmithdb.load(p)
    assert db.problems == []
    assert db.get("bob").props["LastName"] == "O|Brien"
    assert db.get("bob").props["Description"] == "line one\nline two"
    assert db.get("bob").props["ForwardAddress"] == ""
    assert {r.key for r in db.of_type("system")} == {"admin", "root", "shared", "www"}
    assert db.prop("staff", "Members") == "alice,bob"
    assert db.value("nonexistent", "dflt") == "dflt"
    assert "alice" in db and len(db) == 13


def test_latin1_file_is_read_and_said(tmp_path):
    p = tmp_path / "accounts"
    p.write_bytes("a=b\njos\xe9=user|FirstName|Jos\xe9\n".encode("latin-1"))
    db = esmithdb.load(p)
    assert db.get("jos\xe9").props["FirstName"] == "Jos\xe9"
    [pb] = db.problems
    assert pb.line == 2 and "not valid UTF-8" in pb.reason


def test_hostile_accounts_text_is_what_the_fixture_says():
    assert "jdoe user|" in HOSTILE_ACCOUNTS  # the line that gives no record: no '='

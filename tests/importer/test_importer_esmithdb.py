"""The e-smith database format, exactly as DESIGN.md section 5 states it."""

from __future__ import annotations

import pytest

from importer import esmithdb
from importer_fixtures import ACCOUNTS


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
        ("k=t|P|v\r\n", "k", "t", {"P": "v"}),
    ],
)
def test_parse_line(line, key, rtype, props):
    rec = esmithdb.parse_line(line)
    assert rec is not None
    assert (rec.key, rec.type, rec.props) == (key, rtype, props)


def test_plain_entry_value():
    rec = esmithdb.parse_line("DomainName=example.com")
    assert rec.value == "example.com" and rec.props == {}


@pytest.mark.parametrize("line", ["", "   ", "\n", "# comment", "#k=v|a|b", "#"])
def test_ignored_lines(line):
    assert esmithdb.parse_line(line) is None


@pytest.mark.parametrize(
    "line, reason",
    [("no equals sign", "no '='"), ("=value", "empty key"), ("  # indented comment", "no '='")],
)
def test_bad_lines_are_reported_not_fatal(line, reason):
    db = esmithdb.parse_text(f"a=b\n{line}\nc=d|P|1\n")
    assert set(db.records) == {"a", "c"}
    assert len(db.problems) == 1
    assert db.problems[0].line == 2 and reason in db.problems[0].reason


def test_odd_props_and_duplicates_reported():
    db = esmithdb.parse_text("k=t|A|1|B\nk=t|A|2\n")
    assert db.get("k").props == {"A": "2"}  # the last one wins
    reasons = [p.reason for p in db.problems]
    assert any("without a value" in r for r in reasons)
    assert any("duplicate" in r for r in reasons)


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


def test_latin1_file_does_not_fail(tmp_path):
    p = tmp_path / "accounts"
    p.write_bytes("jos\xe9=user|FirstName|Jos\xe9\n".encode("latin-1"))
    db = esmithdb.load(p)
    assert db.get("jos\xe9").props["FirstName"] == "Jos\xe9"

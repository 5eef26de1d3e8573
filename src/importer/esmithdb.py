"""Parser for e-smith databases (``home/e-smith/db/{accounts,configuration,domains}``).

The format, as DESIGN.md section 5 states it::

    key=type|prop|value|prop|value

* a line is split on the first ``=``: the key, then the rest;
* the rest is split on ``|`` not preceded by ``\\``;
* in each piece ``\\|`` reads as ``|`` and ``\\n`` as a newline;
* comment lines (``#``, after optional blanks, as NethServer's own reader
  ``esmith::config`` has it) and blank lines are ignored;
* a value without ``|`` is a plain ``Key=value`` entry: a record whose
  ``type`` is that value and which has no properties.

Nothing is dropped silently: every line that is not a comment, not blank and
not in that canonical form ends in :attr:`EsmithDB.problems` with its line
number, and says whether a record was still read from it (``kept``) and how
(``read_as``). Lines not in canonical form are read the forgiving way (blanks
around the key and the type stripped, an unknown escape kept as written), because
an administrator reading ``inspect`` wants to see the account, not lose it; the
problem says that NethServer's reader, which strips nothing, may see it otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_SPLIT = re.compile(r"(?<!\\)\|")
_ESCAPE = re.compile(r"\\(.?)", re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class Record:
    key: str
    type: str
    props: dict[str, str] = field(default_factory=dict)
    line: int = 0  # where it was read (the last line, for a duplicate key)

    @property
    def value(self) -> str:
        """For a plain ``Key=value`` entry, the value (it is stored as the type)."""
        return self.type

    def get(self, prop: str, default: str | None = None) -> str | None:
        return self.props.get(prop, default)


@dataclass
class Problem:
    line: int
    text: str
    reason: str
    kept: bool = False  # a record was still read from the line
    read_as: str | None = None  # how, when kept (``key=type|...`` after the fixes)
    key: str | None = None  # the key the line names, when one could be told


@dataclass
class EsmithDB:
    path: str
    records: dict[str, Record] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def get(self, key: str) -> Record | None:
        return self.records.get(key)

    def prop(self, key: str, prop: str, default: str | None = None) -> str | None:
        rec = self.records.get(key)
        if rec is None:
            return default
        return rec.props.get(prop, default)

    def value(self, key: str, default: str | None = None) -> str | None:
        rec = self.records.get(key)
        return rec.type if rec is not None else default

    def of_type(self, *types: str) -> list[Record]:
        return [r for r in self.records.values() if r.type in types]

    def problems_of(self, key: str) -> list[Problem]:
        return [p for p in self.problems if p.key == key]

    def __iter__(self):
        return iter(self.records.values())

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, key: object) -> bool:
        return key in self.records


class LineError(ValueError):
    """A line no record can be read from; ``key`` is the key it seems to name, if any."""

    def __init__(self, reason: str, key: str | None = None) -> None:
        super().__init__(reason)
        self.key = key


def _unescape(piece: str, notes: list[str]) -> str:
    """``\\|`` -> ``|`` and ``\\n`` -> newline, in one left-to-right pass; any other
    backslash is kept as written, with a note."""

    def sub(m: re.Match) -> str:
        c = m.group(1)
        if c == "|":
            return "|"
        if c == "n":
            return "\n"
        if c == "":
            notes.append("ends with a lone backslash (kept as written)")
        else:
            notes.append(f"unknown escape '\\{c}' (kept as written)")
        return m.group(0)

    return _ESCAPE.sub(sub, piece)


def unescape(piece: str) -> str:
    return _unescape(piece, [])


def _shown(rec: Record) -> str:
    def esc(s: str) -> str:  # the format has no escape for a backslash: one read as such is shown as such
        return s.replace("|", "\\|").replace("\n", "\\n")

    return "|".join([f"{rec.key}={esc(rec.type)}"] + [f"{esc(k)}|{esc(v)}" for k, v in rec.props.items()])


def parse_line(line: str, notes: list[str] | None = None) -> Record | None:
    """Parse one line; ``None`` for comments and blank lines.

    Raises :class:`LineError` for a line no record can be read from. ``notes``
    collects what was not canonical in a line that still gave a record.
    """
    notes = [] if notes is None else notes
    line = line.rstrip("\n")
    if line.endswith("\r"):
        line = line[:-1]
        notes.append("ends with a carriage return (CRLF; NethServer's reader keeps it in the value)")
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    if _CONTROL.search(line):
        notes.append("holds control characters")
    if "=" not in line:
        # the key it was meant to have: what comes before the first blank or '|' ("jdoe user|..." names jdoe)
        raise LineError("no '=': not a record (NethServer's reader takes the whole line as a key without value)",
                        re.split(r"[\s|]", line.strip(), maxsplit=1)[0] or None)  # fmt: skip
    raw_key, rest = line.split("=", 1)
    key = raw_key.strip()
    if not key:
        raise LineError("empty key")
    if key != raw_key:
        notes.append(f"blanks around the key {key!r} (NethServer's reader keeps them, and may not find the record)")
    if re.search(r"\s", key):
        notes.append(f"the key {key!r} contains blanks")
    pieces = [_unescape(p, notes) for p in _SPLIT.split(rest)]
    rtype, props_flat = pieces[0], pieces[1:]
    if rtype.strip() != rtype:
        notes.append(f"blanks around the {'type' if props_flat else 'value'} {rtype.strip()!r}")
        rtype = rtype.strip()
    if props_flat and not rtype:
        notes.append("no type before the properties")
    props: dict[str, str] = {}
    for i in range(0, len(props_flat), 2):
        name = props_flat[i]
        if name.strip() != name:
            notes.append(f"blanks around the property name {name.strip()!r}")
            name = name.strip()
        if i + 1 >= len(props_flat):
            notes.append(f"property {name!r} has no value (read as empty)")
        if name in props:
            notes.append(f"property {name!r} given twice (the last one wins)")
        props[name] = props_flat[i + 1] if i + 1 < len(props_flat) else ""
    return Record(key=key, type=rtype, props=props)


def _first_bad_utf8_line(data: bytes) -> int:
    for n, raw in enumerate(data.split(b"\n"), 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return n
    return 0  # pragma: no cover - only called when the whole file fails to decode


def parse_text(text: str, path: str = "<text>") -> EsmithDB:
    db = EsmithDB(path=path)
    cr_lines: list[int] = []
    for n, line in enumerate(text.split("\n"), 1):
        notes: list[str] = []
        try:
            rec = parse_line(line, notes)
        except LineError as e:
            db.problems.append(Problem(n, line.rstrip("\r"), str(e), kept=False, key=e.key))
            continue
        if rec is None:
            continue
        rec.line = n
        if notes and notes[0].startswith("ends with a carriage return"):
            cr_lines.append(n)
            notes = notes[1:]
        if rec.key in db.records:
            notes.append(f"duplicate key {rec.key!r}: line {db.records[rec.key].line} is overridden by this one "
                         "(the last one wins, as in NethServer's reader)")  # fmt: skip
        if notes:
            db.problems.append(Problem(n, line.rstrip("\r"), "; ".join(notes), kept=True, read_as=_shown(rec),
                                       key=rec.key))  # fmt: skip
        db.records[rec.key] = rec
    if cr_lines:
        # One problem for the whole file: a file saved with CRLF has it on every line.
        where = f"line {cr_lines[0]}" if len(cr_lines) == 1 else f"{len(cr_lines)} lines, from line {cr_lines[0]}"
        db.problems.append(Problem(cr_lines[0], "", f"{where} end with a carriage return (CRLF): read without it; "
                                   "NethServer's reader keeps it at the end of each value", kept=True))  # fmt: skip
    db.problems.sort(key=lambda p: p.line)
    return db


def load(path: str | Path) -> EsmithDB:
    """Read a db file. The files are ASCII/UTF-8 in practice; a file that is not valid
    UTF-8 is read as Latin-1 rather than failing the whole parse, and says so."""
    p = Path(path)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
        bad = 0
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        bad = _first_bad_utf8_line(data)
    db = parse_text(text, str(p))
    if bad:
        db.problems.insert(0, Problem(bad, "", "the file is not valid UTF-8 (first at this line): read as Latin-1",
                                      kept=True))  # fmt: skip
    return db

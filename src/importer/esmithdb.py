"""Parser for e-smith databases (``home/e-smith/db/{accounts,configuration,domains}``).

The format, exactly as DESIGN.md section 5 states it::

    key=type|prop|value|prop|value

* a line is split on the first ``=``: the key, then the rest;
* the rest is split on ``|`` not preceded by ``\\``;
* in each piece ``\\|`` reads as ``|`` and ``\\n`` as a newline;
* lines starting with ``#`` and blank lines are ignored;
* a value without ``|`` is a plain ``Key=value`` entry: a record whose
  ``type`` is that value and which has no properties.

Malformed lines (no ``=``, an empty key, a property without value) do not
stop the parse: they are reported in :attr:`EsmithDB.problems` with their line
number, so that ``inspect`` can show them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_SPLIT = re.compile(r"(?<!\\)\|")


def unescape(piece: str) -> str:
    """``\\|`` -> ``|`` and ``\\n`` -> newline, in one left-to-right pass."""
    return re.sub(r"\\([|n])", lambda m: "|" if m.group(1) == "|" else "\n", piece)


@dataclass
class Record:
    key: str
    type: str
    props: dict[str, str] = field(default_factory=dict)

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

    def __iter__(self):
        return iter(self.records.values())

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, key: object) -> bool:
        return key in self.records


def parse_line(line: str) -> Record | None:
    """Parse one line; ``None`` for comments and blank lines.

    Raises :class:`ValueError` for a line that is neither.
    """
    line = line.rstrip("\r\n")
    if not line.strip() or line.startswith("#"):
        return None
    if "=" not in line:
        raise ValueError("no '=' in line")
    key, rest = line.split("=", 1)
    if not key:
        raise ValueError("empty key")
    pieces = [unescape(p) for p in _SPLIT.split(rest)]
    rtype, props_flat = pieces[0], pieces[1:]
    props: dict[str, str] = {}
    for i in range(0, len(props_flat), 2):
        name = props_flat[i]
        props[name] = props_flat[i + 1] if i + 1 < len(props_flat) else ""
    rec = Record(key=key, type=rtype, props=props)
    if len(props_flat) % 2:
        raise _OddProps(rec)
    return rec


class _OddProps(ValueError):
    def __init__(self, rec: Record) -> None:
        super().__init__("property without a value (read as empty)")
        self.record = rec


def parse_text(text: str, path: str = "<text>") -> EsmithDB:
    db = EsmithDB(path=path)
    for n, line in enumerate(text.splitlines(), 1):
        try:
            rec = parse_line(line)
        except _OddProps as e:
            db.problems.append(Problem(n, line, str(e)))
            rec = e.record
        except ValueError as e:
            db.problems.append(Problem(n, line, str(e)))
            continue
        if rec is None:
            continue
        if rec.key in db.records:
            db.problems.append(Problem(n, line, f"duplicate key {rec.key!r} (the last one wins)"))
        db.records[rec.key] = rec
    return db


def load(path: str | Path) -> EsmithDB:
    """Read a db file. The files are ASCII/UTF-8 in practice; a file that is not valid
    UTF-8 is read as Latin-1 rather than failing the whole parse."""
    p = Path(path)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return parse_text(text, str(p))

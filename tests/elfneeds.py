"""What glibc a compiled module needs, read from its ELF version-needed entries (``.gnu.version_r``), and
which compiled modules a distribution brings, its requirements followed transitively. A helper for
test_glibc.py, not a test.

A shared object records, per library it links against, every symbol version it needs (``GLIBC_2.14``, ...);
the dynamic loader refuses to load it on an older glibc. The highest ``GLIBC_x.y`` named there is the
oldest glibc it runs on, which is what ``readelf -V`` shows and what auditwheel checks for manylinux tags.
"""

from __future__ import annotations

import re
import struct
from importlib import metadata
from pathlib import Path

SHT_GNU_VERNEED = 0x6FFFFFFE
SO_NAME = re.compile(r"\.so(\.\d+)*$")


class NotElf(ValueError):
    pass


def version_needs(path: Path) -> dict[str, list[str]]:
    """library file name -> the symbol versions this object needs from it, from its section headers."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF":
        raise NotElf(f"{path}: not an ELF file")
    is64, little = data[4] == 2, data[5] == 1
    e = "<" if little else ">"
    if is64:
        shoff, = struct.unpack_from(e + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(e + "HH", data, 0x3A)
        sh_fmt = e + "IIQQQQIIQQ"
    else:
        shoff, = struct.unpack_from(e + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(e + "HH", data, 0x2E)
        sh_fmt = e + "IIIIIIIIII"
    sections = [struct.unpack_from(sh_fmt, data, shoff + i * shentsize) for i in range(shnum)]
    out: dict[str, list[str]] = {}
    for _name, sh_type, _flags, _addr, offset, _size, link, info, _align, _entsize in sections:
        if sh_type != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][4]  # the section holding the names: .dynstr

        def name(at: int) -> str:
            start = strtab + at
            return data[start:data.index(b"\0", start)].decode("ascii", "replace")

        # info is the number of Verneed entries; each lists its Vernaux entries (one per version).
        at = offset
        for _ in range(info):
            _version, count, file_, aux, nxt = struct.unpack_from(e + "HHIII", data, at)
            versions, a = [], at + aux
            for _ in range(count):
                _hash, _vflags, _other, vname, anext = struct.unpack_from(e + "IHHII", data, a)
                versions.append(name(vname))
                a += anext
            out[name(file_)] = versions
            if not nxt:
                break
            at += nxt
    return out


def glibc_needed(path: Path) -> tuple[int, ...]:
    """The newest ``GLIBC_x.y`` the object needs, as a tuple; (0,) when it needs none."""
    found = [(0,)]
    for versions in version_needs(path).values():
        for v in versions:
            m = re.fullmatch(r"GLIBC_(\d+(?:\.\d+)*)", v)
            if m:
                found.append(tuple(int(x) for x in m.group(1).split(".")))
    return max(found)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, metadata.Distribution]:
    out: dict[str, metadata.Distribution] = {}
    for d in metadata.distributions():
        out.setdefault(_canonical(d.metadata["Name"]), d)
    return out


def requirement_closure(root: str) -> list[metadata.Distribution]:
    """``root`` and every distribution it requires, transitively, as installed here: the requirements whose
    markers hold on this Python, without extras (what ``pip install root`` brings)."""
    from packaging.requirements import Requirement  # pytest's own dependency: present wherever tests run

    dists = installed()
    seen: dict[str, metadata.Distribution] = {}
    todo = [_canonical(root)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in dists:
            raise LookupError(f"{name} is required (from {root}'s requirements) but not installed")
        seen[name] = dists[name]
        for line in dists[name].requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_canonical(req.name))
    return sorted(seen.values(), key=lambda d: _canonical(d.metadata["Name"]))


def compiled_modules(dist: metadata.Distribution) -> list[Path]:
    """Every shared object a distribution installed: its extension modules and the libraries its wheel
    bundles (``cffi.libs/libffi-....so.8.1.0``)."""
    out = []
    for f in dist.files or []:
        if SO_NAME.search(f.name):
            p = Path(dist.locate_file(f))
            if p.is_file():
                out.append(p)
    return out


def too_new(paths: list[Path], limit: tuple[int, ...]) -> list[tuple[Path, tuple[int, ...]]]:
    """The objects among ``paths`` that need a newer glibc than ``limit``, with what they need."""
    return [(p, need) for p in paths for need in [glibc_needed(p)] if need > limit]

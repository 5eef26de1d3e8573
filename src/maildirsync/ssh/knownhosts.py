"""known_hosts checking with our own verdicts, so that a refusal can say *which* line is stale.

asyncssh's own checking reports every failure as "host key not verifiable"; the administrator needs to
know whether the key is new (accept it on purpose) or changed (a reinstalled server, or an attack).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

import asyncssh


@dataclass(frozen=True)
class KnownKey:
    lineno: int
    marker: str  # "", "@revoked" or "@cert-authority"
    key: asyncssh.SSHKey


def host_name(host: str, port: int) -> str:
    """The name OpenSSH files a host under: ``host`` on port 22, ``[host]:port`` elsewhere."""
    return host if port == 22 else f"[{host}]:{port}"


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        try:
            _, _, salt, digest = pattern.split("|")
            mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(mac, base64.b64decode(digest))
        except (ValueError, TypeError):
            return False
    # OpenSSH patterns know only * and ?; brackets are literal (they wrap "[host]:port").
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, name, re.IGNORECASE) is not None


def _host_matches(patterns: str, name: str) -> bool:
    hit = False
    for p in patterns.split(","):
        if p.startswith("!"):
            if _pattern_matches(p[1:], name):
                return False  # a negated match excludes the line whatever else matches
        elif _pattern_matches(p, name):
            hit = True
    return hit


def lookup(path: Path, host: str, port: int) -> list[KnownKey]:
    """The keys ``path`` holds for ``host:port``, with their line numbers. A missing file holds none."""
    name = host_name(host, port)
    out = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return out
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = ""
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
        if len(fields) < 3 or not _host_matches(fields[0], name):
            continue
        try:
            key = asyncssh.import_public_key(f"{fields[1]} {fields[2]}")
        except (asyncssh.KeyImportError, ValueError):
            continue
        out.append(KnownKey(n, marker, key))
    return out


def verdict(known: list[KnownKey], key: asyncssh.SSHKey) -> str:
    """"ok", "unknown", "changed" or "revoked" for the key a server presented."""
    plain = [k for k in known if k.marker == ""]
    if any(k.marker == "@revoked" and k.key == key for k in known):
        return "revoked"
    if any(k.key == key for k in plain):
        return "ok"
    return "changed" if plain else "unknown"


def host_key_algs(known: list[KnownKey]) -> list[str]:
    """Host key algorithms to offer, those of the keys we already trust first (as OpenSSH does): a
    server with several keys then shows the one we know rather than look "changed". The others follow,
    so that a server that lost the known type still shows a key, which is then reported as changed."""
    from asyncssh.public_key import get_default_public_key_algs

    algs: list[str] = []
    for k in known:
        if k.marker == "":
            for a in k.key.sig_algorithms:
                if a.decode() not in algs:
                    algs.append(a.decode())
    return algs + [a.decode() for a in get_default_public_key_algs() if a.decode() not in algs]


def record(path: Path, host: str, port: int, key: asyncssh.SSHKey) -> None:
    """Append ``key`` for ``host:port``, creating the file (0600) and its directory (0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = f"{host_name(host, port)} {key.export_public_key('openssh').decode().split()[0]} " \
           f"{key.export_public_key('openssh').decode().split()[1]}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        if f.tell() > 0 and not path.read_bytes().endswith(b"\n"):
            f.write("\n")
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")

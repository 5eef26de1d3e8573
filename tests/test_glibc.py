"""Issue 12: every compiled module installed for maildirsync loads on NethServer 7 (CentOS 7, glibc 2.17).

The check reads what each shared object needs from its ELF version-needed entries (the loader refuses one
that names a newer ``GLIBC_x.y``), over the distributions ``pip install maildirsync`` brings here. The
venvs of scripts/test take wheels as a glibc 2.17 host would (a PEP 600 ``_manylinux`` hook, see
scripts/_setup.sh), so a dependency with no manylinux2014 wheel, built here against this machine's newer
glibc instead, fails this test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from elfneeds import compiled_modules, glibc_needed, requirement_closure, too_new, version_needs

CENTOS7_GLIBC = (2, 17)
# Dependencies that ship compiled modules: finding none of theirs would make the check vacuous.
COMPILED_DEPENDENCIES = {"xxhash", "lmdb", "cryptography", "cffi"}


def installed_modules() -> dict[str, list[Path]]:
    return {d.metadata["Name"].lower(): compiled_modules(d) for d in requirement_closure("maildirsync")}


def show(need: tuple[int, ...]) -> str:
    return "GLIBC_" + ".".join(map(str, need))


def test_every_compiled_module_installed_for_maildirsync_needs_at_most_glibc_2_17():
    modules = installed_modules()
    assert COMPILED_DEPENDENCIES <= {name for name, paths in modules.items() if paths}, modules
    bad = too_new([p for paths in modules.values() for p in paths], CENTOS7_GLIBC)
    assert not bad, "would not load on NethServer 7 (glibc 2.17): " + "; ".join(
        f"{p} needs {show(need)}" for p, need in bad
    ) + (
        ". On a glibc 2.17 host pip would take a manylinux2014 wheel of that dependency, or none at all: check"
        " that this venv was made by scripts/test (its _manylinux hook), or bound the dependency to a release"
        " that has such a wheel."
    )


@pytest.mark.skipif(not shutil.which("readelf"), reason="binutils' readelf is not installed")
def test_the_reader_agrees_with_readelf():
    for p in [p for paths in installed_modules().values() for p in paths]:
        out = subprocess.run(["readelf", "-V", "--wide", str(p)], capture_output=True, text=True, check=True).stdout
        needed = out.split("Version needs section", 1)[1] if "Version needs section" in out else ""
        theirs = set(re.findall(r"Name: (\S+)\s+Flags", needed))
        ours = {v for versions in version_needs(p).values() for v in versions}
        assert ours == theirs, p


def _patched_copy(tmp_path: Path) -> Path:
    """A real extension module whose newest glibc version string is byte-patched to GLIBC_2.99 (same length,
    every copy of it: .dynstr's, and .strtab's if not stripped): to the loader, and to the check, it is a
    module built against glibc 2.99."""
    src = next(p for p in installed_modules()["xxhash"] if glibc_needed(p) > (0,))
    data = src.read_bytes()
    need = show(glibc_needed(src)).encode() + b"\0"
    newer = b"GLIBC_2." + b"9" * (len(need) - len(b"GLIBC_2.") - 1) + b"\0"
    assert need in data, src
    out = tmp_path / src.name
    out.write_bytes(data.replace(need, newer))
    return out


def _compiled_with_gcc(tmp_path: Path) -> Path:
    """A module compiled here calling getrandom(), which glibc has had since 2.25."""
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    c = tmp_path / "newer.c"
    c.write_text("#include <sys/random.h>\nlong f(void *b, unsigned long n) { return getrandom(b, n, 0); }\n")
    out = tmp_path / "newer.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(c)], check=True)
    return out


@pytest.fixture(params=["patched-copy", "gcc-built"])
def newer_glibc_module(request, tmp_path) -> Path:
    return {"patched-copy": _patched_copy, "gcc-built": _compiled_with_gcc}[request.param](tmp_path)


def test_a_module_built_against_a_newer_glibc_fails_the_check(newer_glibc_module):
    bad = too_new([newer_glibc_module], CENTOS7_GLIBC)
    assert [p for p, _ in bad] == [newer_glibc_module]
    assert bad[0][1] >= (2, 25)


def test_a_module_needing_only_old_symbols_passes(tmp_path):
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    c = tmp_path / "old.c"
    c.write_text("#include <string.h>\nunsigned long f(const char *s) { return strlen(s); }\n")
    out = tmp_path / "old.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(c)], check=True)
    assert too_new([out], CENTOS7_GLIBC) == []

"""The README's demo runs, and its legend explains every sigil its itemized output prints (issue 13 part 3)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


from maildirsync.plan import SIGIL
from maildirsync.report import LEGEND
from sshfixtures import _needs_sshd

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_legend_and_the_readme_explain_every_sigil():
    assert set(SIGIL.values()) == {s for s, _ in LEGEND}
    readme = README.read_text()
    said = re.search(r"In `-v` output each action has a sigil:(.+?)\n\n", readme, re.S).group(1)
    assert set(SIGIL.values()) <= set(re.findall(r"`(.)`", said))


def test_the_demo_explains_every_sigil_it_prints(tmp_path):
    _needs_sshd()
    p = subprocess.run(
        [sys.executable, "-m", "maildirsync.lab.demo", "--workdir", str(tmp_path), "--users", "2", "--messages", "5"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    legend = re.search(r"^sigils: (.+)$", p.stdout, re.M).group(1)
    explained = {item.split(" ", 1)[0] for item in legend.split("; ")}
    printed = set(re.findall(r"^\S+: (\S) ", p.stdout, re.M))
    assert {"~", "+", "C"} <= printed, p.stdout  # the incremental pass renames, downloads, carries control files
    assert printed <= explained, printed - explained

"""The command's entry point (maildirsync.start): the modules it loads are kept out of the cyclic
collector's sight, and nothing of the CLI's behaviour changes for it."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from maildirsync import start

if sys.version_info >= (3, 10):
    from importlib.metadata import entry_points
else:  # Python 3.8, as on NethServer 7
    from importlib.metadata import entry_points as _eps

    def entry_points(group):
        return _eps().get(group, [])


@pytest.mark.parametrize("enabled", [True, False])
def test_what_is_made_inside_long_lived_is_frozen_and_the_collector_left_as_it_was(enabled):
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        before = gc.get_freeze_count()
        seen = []
        with start.long_lived():
            seen.append(gc.isenabled())  # off while inside: nothing is collected meanwhile
            keep = [[] for _ in range(5000)]
        assert seen == [False]
        assert gc.get_freeze_count() >= before + len(keep)
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), start.long_lived():
            raise RuntimeError("an import that fails")
        assert gc.isenabled() is enabled
    finally:
        gc.unfreeze()  # the test process's own objects go back to the collector
        (gc.enable if was else gc.disable)()


def test_the_installed_command_starts_there():
    # (Python 3.8's importlib.metadata may list a distribution twice: once per path entry that finds it.)
    assert {e.value for e in entry_points(group="console_scripts") if e.name == "maildirsync"} == {
        "maildirsync.start:main"
    }


# At exit (atexit runs after main's last word): how many objects the collector would still walk.
EXIT_PROBE = """
import atexit, gc, sys
from maildirsync import start
atexit.register(lambda: print("walked", len(gc.get_objects()), "frozen", gc.get_freeze_count(), file=sys.stderr))
sys.argv = ["maildirsync"] + sys.argv[1:]
start.main()
"""


@pytest.mark.parametrize("argv, code, out", [
    (["--help"], 0, "Usage: maildirsync -s IPADDR"),
    (["-s", "127.0.0.1", "-p", "0"], 2, ""),  # bad input: the CLI's own error and exit code, as before
])  # fmt: skip
def test_the_command_leaves_little_for_the_collector_at_exit(argv, code, out):
    r = subprocess.run([sys.executable, "-c", EXIT_PROBE, *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == code, r.stderr
    assert out in r.stdout
    assert "Traceback" not in r.stderr
    walked, frozen = (int(w) for w in r.stderr.split("walked ", 1)[1].split()[::2][:2])
    assert frozen > 20_000 and walked < frozen / 10, r.stderr[-300:]

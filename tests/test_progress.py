"""The progress line (issue 13 part 3): redrawn in place, it never leaves characters of a longer earlier
redraw behind and never wraps, in a narrow terminal as in a wide one. Shown on a real terminal emulator:
tmux, whose screen is read back after the redraws."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import textwrap

import pytest

from maildirsync.engine import UserResult
from maildirsync.report import Progress

MiB = 1 << 20
# (time, messages, bytes, a user done?): the line is longest in the middle (rate, ETA) and shortest at
# the end, when the ETA is gone and the rate has fallen: what used to leave "…MiB/s   A 0s" behind.
FRAMES = [(1, 1000, 500 * MiB, False), (2, 0, 0, True), (3, 2000, 1000 * MiB, False), (4, 0, 0, True), (100, 0, 0, True)]
# What the last redraw must leave on the screen, by terminal width: the fullest form that fits in one
# column less than the width.
FINAL = {
    16: " 3/3  1.5 GiB",
    30: " 3/3  1.5 GiB",
    44: " users 3/3  msgs 3000  1.5 GiB  15.0 MiB/s",
    120: " users 3/3  messages 3000  1.5 GiB  15.0 MiB/s",
}


class Clock:
    """A clock the test sets: every redraw is then known in advance, whatever the machine's speed."""

    t = 0.0

    def __call__(self) -> float:
        return self.t


def play(progress: Progress, clock: Clock) -> None:
    for t, files, nbytes, done in FRAMES:
        clock.t = t
        if files:
            progress.advance("u", files, nbytes)
        if done:
            progress.user_done(UserResult("u", "ok"))


def test_every_redraw_returns_to_the_line_start_and_erases_what_was_there():
    clock, out = Clock(), io.StringIO()
    p = Progress(3, stream=out, enabled=True, clock=clock)
    play(p, clock)
    draws = out.getvalue().split("\r")
    assert draws[0] == "" and len(draws) == 1 + len(FRAMES)
    assert all(d.endswith("\x1b[K") and "\n" not in d for d in draws[1:])
    assert draws[-1] == FINAL[120] + "\x1b[K"  # no width from a StringIO: 80 columns


@pytest.mark.parametrize("width", [1, 2, 5, 10, 16, 20, 30, 44, 47, 48, 60, 80, 120, 300])
def test_the_line_always_fits_one_column_short_of_the_width(width):
    clock = Clock()
    p = Progress(3, stream=io.StringIO(), enabled=True, clock=clock)
    for t, files, nbytes, done in FRAMES:
        clock.t = t
        p.files += files
        p.bytes += nbytes
        p.users_done += done
        assert len(p.line(width)) <= max(width - 1, 0)
    if width in FINAL:
        assert p.line(width) == FINAL[width]


def test_off_a_terminal_it_prints_one_plain_line_per_user():
    out = io.StringIO()
    p = Progress(2, stream=out, clock=Clock())  # a StringIO is no terminal
    p.advance("u", 10, 100)
    p.user_done(UserResult("alice", "changed"))
    p.close()
    assert out.getvalue().splitlines() == ["[1/2] alice: changed new=0 renamed=0 moved=0 deleted=0 bytes=0 0.0s"]


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_progress import Clock, play
    from maildirsync.report import Progress

    clock = Clock()
    p = Progress(3, clock=clock)  # on stderr, the tmux pane: a terminal, so enabled
    assert p.enabled
    play(p, clock)
    """
)


@pytest.fixture
def tmux(tmp_path):
    exe = shutil.which("tmux")
    if not exe:
        pytest.skip("tmux is not installed (scripts/test installs it)")
    sock = tmp_path / "tmux.sock"

    def cmd(*args, **kw):
        return subprocess.run([exe, "-S", str(sock), "-f", "/dev/null", *args], capture_output=True, text=True,
                              timeout=60, check=True, **kw)  # fmt: skip

    yield exe, sock, cmd
    subprocess.run([exe, "-S", str(sock), "kill-server"], capture_output=True, timeout=60)


@pytest.mark.parametrize("width", sorted(FINAL))
def test_on_a_real_terminal_no_stray_characters_and_no_wrap(tmux, tmp_path, width):
    exe, sock, cmd = tmux
    script = tmp_path / "draw.py"
    script.write_text(SCRIPT.format(tests=str(__import__("pathlib").Path(__file__).parent)))
    # Once drawn, the pane signals and stays open (sleep) so that its screen can be read.
    shell = f"{sys.executable} {script} || echo FAILED; {exe} -S {sock} wait-for -S drawn; sleep 600"
    cmd("new-session", "-d", "-s", "t", "-x", str(width), "-y", "6", shell)
    cmd("wait-for", "drawn")
    screen = cmd("capture-pane", "-p", "-t", "t").stdout.split("\n")
    rows = [r.rstrip() for r in screen]
    assert rows[0] == FINAL[width], screen
    assert not any(rows[1:]), screen  # nothing wrapped onto, or scrolled into, the rows below
    assert cmd("display-message", "-p", "-t", "t", "#{history_size} #{cursor_y}").stdout.split() == ["0", "0"]

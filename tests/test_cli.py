"""The command line itself (issue 13 part 3): bad input is one clear line and exit 2 at parse time, never a
traceback; the help says what every option takes and does; the exit codes are the README's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from maildirsync import errors
from maildirsync.ssh import errors as ssh_errors
from mdtools import cli, mkmaildir, put

REPO = Path(__file__).resolve().parent.parent
# The console script an administrator runs (the venv's), so that the help shows the real program name.
MAILDIRSYNC = Path(sys.executable).with_name("maildirsync")


def run_script(*args) -> subprocess.CompletedProcess:
    assert MAILDIRSYNC.exists(), f"{MAILDIRSYNC}: install the package (scripts/test does)"
    return subprocess.run([str(MAILDIRSYNC), *map(str, args)], capture_output=True, text=True, timeout=60)


def one_error_line(p: subprocess.CompletedProcess) -> str:
    """A usage error: exit 2, nothing on stdout, no traceback, exactly one line saying what is wrong."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    errors_ = [ln for ln in p.stderr.splitlines() if ln.startswith(("Error:", "maildirsync: error:"))]
    assert len(errors_) == 1, p.stderr
    return errors_[0]


@pytest.fixture
def trees(tmp_path):
    src = mkmaildir(tmp_path / "src")
    put(src, "cur/1.a:2,S")
    return src, tmp_path / "dst", tmp_path / "state"


# Every place a port, a count or a choice is taken, with values that used to pass (a traceback from
# asyncssh, OverflowError) or that are out of range. Checked before anything runs.
BAD_VALUES = [
    (["-s", "127.0.0.1", "-p", "99999"], "'-p' / '--port': 99999 is not a port"),
    (["-s", "127.0.0.1", "-p", "65536"], "'-p' / '--port': 65536 is not a port"),
    (["-s", "127.0.0.1", "-p", "-5"], "'-p' / '--port': -5 is not a port"),
    (["-s", "127.0.0.1", "-p", "0"], "'-p' / '--port': 0 is not a port"),
    (["-s", "127.0.0.1", "-p", "ssh"], "'-p' / '--port'"),
    (["setup", "-s", "127.0.0.1", "-p", "65536"], "65536 is not a port"),
    (["status", "-s", "127.0.0.1", "-p", "70000"], "70000 is not a port"),
    (["verify", "-s", "127.0.0.1", "-p", "-1"], "-1 is not a port"),
    (["-s", "127.0.0.1", "-t", "sme7"], "'sme7': choose sme8, sme9 or ns6"),
    (["-s", "127.0.0.1", "-j", "0"], "0 is not a number from 1 to 16"),
    (["-s", "127.0.0.1", "-j", "17"], "17 is not a number from 1 to 16"),
    (["-s", "127.0.0.1", "--max-delete", "101"], "101 is not a percentage from 0 to 100"),
    (["-s", "127.0.0.1", "--max-delete", "-1"], "-1 is not a percentage"),
    (["-s", "127.0.0.1", "--transport", "scp"], "'scp': choose auto or sftp"),
    (["sync", "{src}", "{dst}", "-j", "65"], "65 is not a number from 1 to 64"),
]


@pytest.mark.parametrize("argv, message", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_are_usage_errors_at_parse_time(trees, argv, message):
    src, dst, state = trees
    argv = [a.format(src=src, dst=dst) for a in argv]
    p = cli(*argv, "--state-dir", state) if argv[0] not in ("setup", "status", "verify") else cli(*argv)
    assert message in one_error_line(p)
    assert not state.exists() and not dst.exists()


@pytest.mark.parametrize(
    "owner, says",
    [("nosuchuser:nogroup", "no user 'nosuchuser' on this host"), ("root:nosuchgroup", "no group 'nosuchgroup'")],
)
def test_unknown_owner_is_our_own_message(trees, owner, says):
    src, dst, state = trees
    line = one_error_line(cli("sync", src, dst, "--state-dir", state, "--owner", owner))
    assert says in line and "getpwnam" not in line and "getgrnam" not in line and "name not found" not in line
    assert not dst.exists()


# Unknown options: suggestions only of options that look like what was typed (click's difflib offered
# --create for --delete), and a word on options that belong to `maildirsync -s`.
UNKNOWN = [
    (["sync", "--delete"], "--delete", ["--max-delete", "--no-delete"]),
    (["sync", "--force"], "--force", []),
    (["sync", "--crate"], "--crate", ["--create"]),
    (["sync", "--dry"], "--dry", ["--dry-run"]),
    (["sync", "--dest-root", "/x"], "--dest-root", []),
    (["--frobnicate"], "--frobnicate", []),
    (["-s", "127.0.0.1", "--create"], "--create", []),
]


@pytest.mark.parametrize("argv, typed, suggested", UNKNOWN, ids=[" ".join(a) for a, _, _ in UNKNOWN])
def test_unknown_options_suggest_only_lookalikes(trees, argv, typed, suggested):
    src, dst, state = trees
    args = argv + ([src, dst] if argv[0] == "sync" else [])
    line = one_error_line(cli(*args, "--state-dir", state))
    rest = line.split(f"No such option: {typed}", 1)[1]
    assert set(re.findall(r"--[a-z-]+", rest)) - {typed} == set(suggested), line
    if typed == "--dest-root":
        assert "is an option of `maildirsync -s IPADDR`, not of `maildirsync sync`" in rest


COMMANDS = ["", "sync", "setup", "status", "verify"]
# What typer prints for options it was told nothing about, in one release or another.
PLACEHOLDERS = re.compile(
    r"<(?:int|float|str|path|bool|list)\b[^>]*>|\brange>|\{\w+\}|\\\[|\b(?:TEXT|INTEGER|FLOAT|PATH|BOOLEAN)\b"
    r"|\[default: 0\]|\d+<=x<=\d+"
)


def help_of(command: str) -> str:
    p = run_script(*([command] if command else []), "--help")
    assert p.returncode == 0 and not p.stderr, p.stderr
    return p.stdout


def option_entries(text: str) -> dict[str, str]:
    """The Options section: option names -> their description (continuation lines joined)."""
    body = text.split("\nOptions:\n", 1)[1].split("\n\n", 1)[0]
    out: dict[str, str] = {}
    last = None
    for line in body.splitlines():
        if re.match(r"  -", line):
            name, _, desc = line.strip().partition("  ")
            last = name
            out[name] = desc.strip()
        elif last is not None:
            out[last] = (out[last] + " " + line.strip()).strip()
    return out


@pytest.mark.parametrize("command", COMMANDS, ids=[c or "maildirsync" for c in COMMANDS])
def test_help_names_what_each_option_takes_and_describes_every_one(command):
    text = help_of(command)
    assert not PLACEHOLDERS.findall(text), PLACEHOLDERS.findall(text)
    entries = option_entries(text)
    assert entries and all(entries.values()), {k: v for k, v in entries.items() if not v}
    for name in entries:
        # An option that takes a value shows what it takes, in capitals or as its choices.
        words = name.replace(",", "").split()
        if words[-1].startswith("-"):
            continue
        assert re.fullmatch(r"[A-Z][A-Z:]*|[a-z0-9]+(\|[a-z0-9]+)+", words[-1]), name
    if command in ("status", "verify"):
        assert not re.search(r"(?<![\w-])-v(?![\w-])", text) and "--verbose" not in text


def test_main_help_shows_the_main_use_first_and_names_sme9():
    text = help_of("")
    first = text.splitlines()[0]
    assert first == "Usage: maildirsync -s IPADDR [-p PORT] [-n] [-t sme8|sme9|ns6] [OPTIONS]", first
    assert text.splitlines()[1] == "   or: maildirsync COMMAND [ARGS]..."
    assert "sme9 (SME Server 9 keeps the SME 8 layout)" in " ".join(text.split())
    assert re.search(r"^Commands:\n(  \w+ .*\n)+", text, re.M)


def test_sync_help_usage_names_its_arguments():
    assert help_of("sync").splitlines()[0] == "Usage: maildirsync sync [OPTIONS] SOURCE DEST"


def test_no_command_and_no_source_prints_the_help_and_exits_2():
    p = run_script()
    assert p.returncode == 2 and p.stdout.startswith("Usage: maildirsync -s IPADDR")


def readme_exit_codes() -> dict[int, str]:
    text = (REPO / "README.md").read_text()
    table = text.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| (.+) \|$", table, re.M)}


def test_the_readme_lists_every_exit_code_the_code_can_end_with():
    ours = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    ssh = {c.exit_code for c in vars(ssh_errors).values() if isinstance(c, type) and hasattr(c, "exit_code")}
    assert set(readme_exit_codes()) == ours | ssh
    assert "not one source user" in readme_exit_codes()[errors.EXIT_NO_USERS]


def test_rename_lines_show_the_folder_on_both_sides(tmp_path):
    src = mkmaildir(tmp_path / "src", ".Sent", ".Archive")
    put(src, ".Sent/cur/100.x:2,S", b"one\n")
    put(src, ".Sent/cur/200.y:2,S", b"two\n")
    dst, state = tmp_path / "dst", tmp_path / "state"
    assert cli("sync", src, dst, "--state-dir", state, "--owner", "keep").returncode == 0
    (src / ".Sent/cur/100.x:2,S").rename(src / ".Sent/cur/100.x:2,RS")
    (src / ".Sent/cur/200.y:2,S").rename(src / ".Archive/cur/200.y:2,S")
    p = cli("sync", "-n", "-v", src, dst, "--state-dir", state, "--owner", "keep")
    assert p.returncode == 3, p.stderr
    lines = [ln.split(": ", 1)[1] for ln in p.stdout.splitlines() if re.match(r"\S+: [~>] ", ln)]
    assert sorted(lines) == [
        "> Sent/cur/200.y:2,S -> Archive/cur/200.y:2,S",
        "~ Sent/cur/100.x:2,S -> Sent/cur/100.x:2,RS",
    ]


@pytest.fixture
def key(tmp_path) -> Path:
    import asyncssh

    k = tmp_path / "id_test"
    k.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    k.chmod(0o600)
    return k


@pytest.mark.parametrize(
    "case, code, says",
    [("no server on the port", 69, "127.0.0.1"), ("no key file", 78, "no SSH key at"), ("not a key", 78, "cannot use")],
)
def test_connection_problems_are_one_line_and_the_readme_code(tmp_path, key, case, code, says):
    from maildirsync.lab.sshd import free_port

    identity = {"no server on the port": key, "no key file": tmp_path / "missing", "not a key": tmp_path / "junk"}[case]
    (tmp_path / "junk").write_text("not a key\n")
    mkmaildir(tmp_path / "vmail" / "alice@example.org" / "Maildir")
    p = cli("-s", "127.0.0.1", "-p", free_port(), "-i", identity, "--known-hosts", tmp_path / "kh",
            "--state-dir", tmp_path / "state", "--dest-root", tmp_path / "vmail", "--domain", "example.org")  # fmt: skip
    assert p.returncode == code and code in readme_exit_codes(), (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1 and says in p.stderr

"""The command line. It parses, calls the engine and renders; the decisions live elsewhere.

Exit codes (README.md, "Exit codes"): 0 done or nothing to do; 1 a user failed; 2 bad usage or input;
3 dry run with changes pending; 4 another run holds the index; 67 not one source user has a mailbox
here; 130 interrupted.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from . import engine, local, remote, report, start
from .errors import EXIT_INTERRUPTED, MaildirsyncError, UsageError
from .transport import SourceError

DEFAULT_STATE = Path("/var/lib/maildirsync")
# Why the index must not share a tree with the mail: mailbox tools (a user deleted, chown -R) would reach it,
# and an index set aside after damage would take the mail with it.
KEEP_APART = "keep the index and the mail apart (--state-dir)"
DEFAULT_DEST_ROOT = Path("/var/lib/nethserver/vmail")
MAIN_USE = "-s IPADDR [-p PORT] [-n] [-t sme8|sme9|ns6] [OPTIONS]"

# click's exceptions, wherever this typer keeps them (typer >= 0.21 vendors click as typer._click).
_click_errors = importlib.import_module(typer.BadParameter.__module__)


class _Polished:
    """What every command of ours does differently from typer's defaults. The help is rendered here, not by
    typer, whose placeholders change from release to release (``<list[str]>``, ``<int range>``, ``{source}``,
    an escaped ``\\[default: 22]``): every option shows its METAVAR, its help and its default, nothing else."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [p.metavar or p.name.upper() for p in self.get_params(ctx) if _is_argument(p)]

    def format_options(self, ctx, formatter) -> None:
        args = [_help_record(p) for p in self.get_params(ctx) if _is_argument(p)]
        opts = [_help_record(p) for p in self.get_params(ctx) if not _is_argument(p) and not p.hidden]
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        if hasattr(self, "format_commands"):
            self.format_commands(ctx, formatter)

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except _click_errors.NoSuchOption as e:
            raise _no_such_option(e, self, ctx) from None


def _is_argument(p) -> bool:
    return getattr(p, "param_type_name", "") == "argument"


def _help_record(p) -> tuple[str, str]:
    if _is_argument(p):
        return p.metavar or p.name.upper(), p.help or ""
    names = ", ".join(sorted(p.opts, key=lambda o: o.startswith("--")))  # -h, --help in every typer
    if not (getattr(p, "is_flag", False) or getattr(p, "count", False)):
        names += f" {p.metavar or 'VALUE'}"
    extra = []
    default = p.default
    if p.show_default is not False and default not in (None, False, [], ()) and not callable(default):
        extra.append(f"default: {default:g}" if isinstance(default, float) else f"default: {default}")
    if p.envvar:
        extra.append(f"env var: {p.envvar}")
    if p.required:
        extra.append("required")
    return names, (p.help or "") + (f"  [{'; '.join(extra)}]" if extra else "")


def _no_such_option(e, command, ctx):
    """click suggests whatever difflib finds close (``sync --delete``: "Did you mean --create?"); we suggest
    only options that contain what was typed, or are a typo away from it, and say where an option of
    another command belongs."""
    typed = e.option_name
    names = [n for p in command.params for n in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])]
    alike = sorted(n for n in names if n.startswith("--") and _resembles(typed, n))
    message = f"No such option: {typed}"
    if not alike and ctx.parent is not None:
        if any(typed in getattr(p, "opts", []) for p in ctx.parent.command.params):
            message += f" ({typed} is an option of `maildirsync -s IPADDR`, not of `maildirsync {command.name}`)"
    return _click_errors.NoSuchOption(typed, message=message, possibilities=alike, ctx=ctx)


def _resembles(typed: str, name: str) -> bool:
    t, n = typed.lstrip("-"), name.lstrip("-")
    if len(t) < 2:
        return False
    return t in n or n in t or _distance(t, n) <= max(1, len(n) // 5)


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (option names are short)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


class Command(_Polished, TyperCommand):
    pass


class Root(_Polished, TyperGroup):
    def collect_usage_pieces(self, ctx) -> list[str]:
        return [MAIN_USE]

    def format_usage(self, ctx, formatter) -> None:
        # The main use first, as the old sync_maildirs.sh showed it; the other commands after.
        formatter.write_usage(ctx.command_path, MAIN_USE)
        formatter.write_usage(ctx.command_path, "COMMAND [ARGS]...", prefix="   or: ")


app = typer.Typer(
    cls=Root,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Re-synchronise every mailbox of an SME Server, NethService or NethServer 6 host (the source) into this "
    "NethServer, over SSH and incrementally. Run as root on the destination; see COMMAND -h for the other commands.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _between(lo, hi, what: str):
    """A parse-time range check (typer's min/max would print "<int range>" and "1<=x<=16" in the help)."""

    def check(value):
        if value is not None and not lo <= value <= hi:
            raise typer.BadParameter(f"{value:g} is not {what} from {lo} to {hi}")
        return value

    return check


def parse_rate(text: str) -> float:
    """rsync's RATE: KiB per second, or a number with a suffix K, M or G (powers of 1024; KB, MB, GB:
    powers of 1000). 0 means no limit. Raises ValueError with what went wrong."""
    t = text.strip()
    units = {"": 1024, "K": 1024, "M": 1024**2, "G": 1024**3, "KB": 1000, "MB": 1000**2, "GB": 1000**3,
             "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}  # fmt: skip
    num = t.rstrip("kKmMgGiIbB")
    unit = t[len(num):].upper()
    if unit not in units:
        raise ValueError(f"unknown unit {t[len(num):]!r} (use K, M or G)")
    try:
        value = float(num)
    except ValueError:
        raise ValueError(f"{text!r} is not a rate (e.g. 2M for 2 MiB/s, 500 for 500 KiB/s)") from None
    if value < 0 or value != value or value == float("inf"):
        raise ValueError(f"{text!r} is not a rate (e.g. 2M for 2 MiB/s, 500 for 500 KiB/s)")
    return value * units[unit]


def _rate(value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    try:
        return parse_rate(value) or None
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def _one_of(*choices: str):
    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r}: choose {', '.join(choices[:-1])} or {choices[-1]}")
        return value

    return check


def parse_owner(spec: Optional[str]) -> tuple[int, int] | None:
    if spec is None:
        return engine.default_owner()
    if spec in ("", "none", "keep"):
        return None
    import grp
    import pwd

    user, _, group = spec.partition(":")
    group = group or user
    hint = "give USER:GROUP of this host, numeric ids, or keep"
    try:
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
    except KeyError:
        raise UsageError(f"--owner {spec}: no user {user!r} on this host ({hint})") from None
    try:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise UsageError(f"--owner {spec}: no group {group!r} on this host ({hint})") from None
    return uid, gid


def run_options(dry_run: bool, no_delete: bool, max_delete: float, owner: Optional[str], jobs: int, verbose: int,
                forget=(), pair=None):
    return engine.RunOptions(
        dry_run=dry_run,
        plan=engine.Options(delete=not no_delete, max_delete=max_delete),
        owner=parse_owner(owner),
        jobs=jobs,
        keep_actions=verbose > 0,  # without -v only counts are reported: memory stays bounded
        forget=frozenset(forget),
        pair=pair,
    )


@contextmanager
def interruptible():
    """Ctrl-C sets a flag: the message in flight is finished, the index committed, then we stop."""
    stop = threading.Event()
    old = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\ninterrupt: finishing the message in flight (Ctrl-C again to abort now)", file=sys.stderr)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    try:
        yield stop
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, old)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def render(result: engine.RunResult, as_json: bool, verbose: int) -> int:
    if as_json:
        print(report.to_json(result))
    else:
        if verbose or result.dry_run:
            for u in result.users:
                if verbose:
                    report.print_actions(u, sys.stdout, verbose)
        report.print_summary(result)
    return result.exit_code


def execute(jobs, source, state, opts, as_json: bool, verbose: int, command: str, notes=()) -> int:
    progress = report.Progress(len(jobs), enabled=None if not as_json else False)
    with interruptible() as stop:
        result = engine.run(
            jobs,
            source,
            state,
            opts,
            command=command,
            stop=stop,
            progress=progress.advance,
            on_user=progress.user_done,
        )
    progress.close()
    result.notes[:0] = list(notes)
    return render(result, as_json, verbose)


def fail(e: MaildirsyncError, as_json: bool) -> None:
    notes = getattr(e, "notes", [])
    if as_json:
        print(json.dumps({"error": e.message, "exit_code": e.exit_code, **({"notes": notes} if notes else {})}))
    else:
        for note in notes:
            print(f"note: {note}")
        sys.stdout.flush()
        print(f"maildirsync: error: {e.message}", file=sys.stderr)
    raise typer.Exit(e.exit_code)


DryRun = typer.Option(False, "-n", "--dry-run", help="Print the plan; change nothing (the index included).")
Verbose = typer.Option(
    0, "-v", "--verbose", count=True, show_default=False, help="List every action (-vv: index-only ones too)."
)
AsJson = typer.Option(False, "--json", help="Machine-readable report on stdout (with -v: every action).")
NoDelete = typer.Option(False, "--no-delete", help="Never delete on the destination.")
MaxDelete = typer.Option(
    50.0, "--max-delete", metavar="PCT", callback=_between(0, 100, "a percentage"),
    help="Refuse to delete more than PCT% (0 to 100) of a folder's synced messages; and refuse a user when "
    "more than PCT% of what was placed in a folder is gone from the destination.",
)  # fmt: skip
ForgetOpt = typer.Option(
    [], "--forget", metavar="USER",
    help="Set aside the index's records of USER (repeatable): what the destination holds is adopted, what it "
    "lacks is fetched again. For a destination that lost mail maildirsync had placed.",
)  # fmt: skip
StateOpt = typer.Option(
    None, "--state-dir", metavar="DIR", envvar="MAILDIRSYNC_STATE_DIR",
    help=f"Where the indexes live, and the SSH key and known_hosts of -s (default {DEFAULT_STATE}).",
)  # fmt: skip
OwnerOpt = typer.Option(
    None, "--owner", metavar="USER:GROUP", help="Owner of what is created (default vmail:vmail if it exists; 'keep')."
)
JobsOpt = typer.Option(
    1, "-j", "--jobs", metavar="N", callback=_between(1, 64, "a number"), help="Users synced in parallel (1 to 64)."
)
UserOpt = typer.Option([], "-u", "--user", metavar="USER", help="Only this user (repeatable).")
LoginOpt = typer.Option("root", "-l", "--login", metavar="LOGIN", help="SSH login on the source.")
KnownHostsOpt = typer.Option(
    None, "--known-hosts", metavar="FILE", help="Host keys (default: known_hosts in the state directory)."
)
AcceptNewOpt = typer.Option(False, "--accept-new-host-key", help="Record the source's host key if unknown.")
DestRootOpt = typer.Option(
    DEFAULT_DEST_ROOT, "--dest-root", metavar="DIR", help="Destination mailboxes: DIR/<user>@<domain>/Maildir."
)
DomainOpt = typer.Option(None, "--domain", metavar="DOMAIN", help="Mail domain (default: the host's, hostname -d).")


def PortOpt(help: str):
    return typer.Option(22, "-p", "--port", metavar="PORT", callback=_between(1, 65535, "a port: a number"), help=help)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    source_host: Optional[str] = typer.Option(None, "-s", "--source", metavar="IPADDR", help="Pull from this host over SSH."),
    port: int = PortOpt("SSH port on the source host."),
    dry_run: bool = DryRun,
    type_: str = typer.Option(
        "sme8", "-t", "--type", metavar="sme8|sme9|ns6", callback=_one_of(*remote.TYPES),
        help="Source layout: sme8, sme9 (SME Server 9 keeps the SME 8 layout) or ns6 (NethServer 6).",
    ),  # fmt: skip
    user: List[str] = UserOpt,
    login: str = LoginOpt,
    identity: Optional[Path] = typer.Option(
        None, "-i", "--identity", metavar="KEY", help="SSH private key (default: id_rsa in the state directory)."
    ),
    known_hosts: Optional[Path] = KnownHostsOpt,
    accept_new: bool = AcceptNewOpt,
    dest_root: Path = DestRootOpt,
    domain: Optional[str] = DomainOpt,
    # Two: the run holds Python's interpreter lock most of the time, so more workers mostly wait for it
    # (on loopback, 10 % flags cost 3.1 s with four, 2.8 s with two); they pay only where the link's
    # round trips dominate (a distant source: -j 4 or more).
    jobs: int = typer.Option(
        2, "-j", "--jobs", metavar="N", callback=_between(1, 16, "a number"),
        help="Users synced in parallel over the one connection (1 to 16; more for a distant source).",
    ),  # fmt: skip
    transport: str = typer.Option(
        "auto", "--transport", metavar="auto|sftp", callback=_one_of("auto", "sftp"),
        help="auto: find/tar over SSH where the login may run commands, else SFTP; sftp: SFTP only.",
    ),  # fmt: skip
    no_delete: bool = NoDelete,
    max_delete: float = MaxDelete,
    state_dir: Optional[Path] = StateOpt,
    owner: Optional[str] = OwnerOpt,
    users_dir: str = typer.Option(
        "/home/e-smith/files/users", "--users-dir", metavar="DIR", help="sme8/sme9: users' homes on the source."
    ),
    admin_maildir: str = typer.Option(
        "/home/e-smith/Maildir", "--admin-maildir", metavar="DIR", help="sme8/sme9: admin's Maildir."
    ),
    vmail_dir: str = typer.Option(
        "/var/lib/nethserver/vmail", "--vmail-dir", metavar="DIR", help="ns6: mailboxes on the source."
    ),
    bwlimit: Optional[float] = typer.Option(
        None, "--bwlimit", metavar="RATE", callback=_rate, parser=str,
        help="Read from the source at most RATE per second, all streams together, as rsync's option: KiB, "
        "or with a unit, e.g. 2M (MiB), 500K; 0: no limit.",
    ),  # fmt: skip
    verbose: int = Verbose,
    as_json: bool = AsJson,
    forget: List[str] = ForgetOpt,
) -> None:
    """Re-synchronise every mailbox from the source (see the main help)."""
    if ctx.invoked_subcommand is not None:
        return
    if source_host is None:
        print(ctx.get_help())
        raise typer.Exit(2)
    try:
        state_base = state_dir or DEFAULT_STATE
        state = engine.state_dir_for(state_base, engine.index_key(f"{source_host}_{port}", dest_root))
        local.refuse_overlap("the index", state.path, "the destination root", dest_root, KEEP_APART)
        layout = remote.Layout(type_, users_dir, admin_maildir, vmail_dir)
        opts = run_options(dry_run, no_delete, max_delete, owner, jobs, verbose, forget,
                           (f"{source_host}:{port} ({type_})", str(dest_root.absolute())))  # fmt: skip
        state.check_ahead()  # the index's page walk runs while we connect
        with start.long_lived():
            from . import ssh

        try:
            source = ssh.open_source(
                source_host,
                port,
                login,
                identity or state_base / "id_rsa",
                known_hosts or state_base / "known_hosts",
                accept_new,
                transport,
                max_channels=max(8, jobs * 2),
                bwlimit=bwlimit,
            )
        except BaseException:
            state.release()  # the early page walk is not left running
            raise
        try:
            mapping = remote.map_users(source, layout, dest_root, domain or remote.host_domain(), user)
            code = execute(
                mapping.jobs, source, state, opts, as_json, verbose, f"maildirsync -s {source_host}", mapping.notes
            )
        finally:
            source.close()
    except MaildirsyncError as e:
        fail(e, as_json)
    except SourceError as e:
        fail(MaildirsyncError(str(e), getattr(e, "exit_code", 1)), as_json)
    raise typer.Exit(code)


@app.command("sync", cls=Command)
def sync_cmd(
    source: Path = typer.Argument(..., metavar="SOURCE", help="A Maildir, or a directory of <user>/Maildir."),
    dest: Path = typer.Argument(
        ..., metavar="DEST", help="A Maildir, or a directory of <user>/Maildir; or empty, or missing (created)."
    ),
    dry_run: bool = DryRun,
    verbose: int = Verbose,
    as_json: bool = AsJson,
    no_delete: bool = NoDelete,
    max_delete: float = MaxDelete,
    state_dir: Optional[Path] = StateOpt,
    owner: Optional[str] = OwnerOpt,
    jobs: int = JobsOpt,
    user: List[str] = UserOpt,
    create: bool = typer.Option(
        False, "--create", help="Create destination mailboxes that do not exist yet (even in a DEST holding other things)."
    ),
    forget: List[str] = ForgetOpt,
) -> None:
    """Sync between two local trees (a mounted disk, an exploded backup)."""
    try:
        jobs_list, key, notes = local.jobs(source, dest, user, create)
        state = engine.state_dir_for(state_dir or DEFAULT_STATE, key)
        for what, tree in (("the source", source), ("the destination", dest)):
            local.refuse_overlap("the index", state.path, what, tree, KEEP_APART)
        opts = run_options(dry_run, no_delete, max_delete, owner, jobs, verbose, forget,
                           (str(source.absolute()), str(dest.absolute())))  # fmt: skip
        code = execute(jobs_list, local.LocalSource(), state, opts, as_json, verbose, "maildirsync sync", notes)
    except MaildirsyncError as e:
        fail(e, as_json)
    raise typer.Exit(code)


@app.command("setup", cls=Command)
def setup_cmd(
    source_host: str = typer.Option(..., "-s", "--source", metavar="IPADDR", help="The source host."),
    port: int = PortOpt("SSH port on the source host."),
    login: str = LoginOpt,
    accept_new: bool = AcceptNewOpt,
    known_hosts: Optional[Path] = KnownHostsOpt,
    state_dir: Optional[Path] = StateOpt,
) -> None:
    """Create the tool's own SSH key and install it on the source (asks once for the password).
    The only command that ever writes to the source."""
    from . import ssh

    base = state_dir or DEFAULT_STATE
    try:
        r = ssh.setup(source_host, port, base, login=login, known_hosts=known_hosts, accept_new=accept_new)
    except SourceError as e:
        fail(MaildirsyncError(str(e), getattr(e, "exit_code", 1)), False)
    print(f"key {r.key} ({'created' if r.key_created else 'existing'})")
    print(f"source host key {r.host_key_fingerprint}")
    print("public key " + ("installed on the source" if r.key_installed else "was already installed on the source"))
    print(f"login with the key works: run `maildirsync -s {source_host}" + (f" -p {port}`" if port != 22 else "`"))


def _state_dirs(base: Path, source_host: Optional[str], port: int) -> list[Path]:
    try:
        found = sorted(p for p in base.iterdir() if (p / "index").is_dir())
    except OSError:
        return []
    if source_host is None:
        return found
    key = engine.state_dir_for(base, f"{source_host}_{port}").path.name  # one index per destination root
    return [p for p in found if p.name == key or p.name.startswith(key + "-")]


@app.command("status", cls=Command)
def status_cmd(
    source_host: Optional[str] = typer.Option(None, "-s", "--source", metavar="IPADDR", help="Only this source."),
    port: int = PortOpt("With -s: the source's SSH port, as given to maildirsync -s."),
    state_dir: Optional[Path] = StateOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable: per index, per user, the last status."),
) -> None:
    """Per source and user: the last sync, its status and counts."""
    from .index import StateDir

    base = state_dir or DEFAULT_STATE
    out: dict = {}
    pairs: dict = {}  # index -> "source -> destination", as the syncs named them
    for d in _state_dirs(base, source_host, port):
        idx, note = StateDir(d).open_index(readonly=True)
        try:
            out[d.name] = {u.decode("utf-8", "surrogateescape"): st for u, st in idx.all_status().items()}
            pair = [idx.meta(k) for k in (b"source", b"destination")]
            if all(pair):
                pairs[d.name] = " -> ".join(x.decode("utf-8", "replace") for x in pair)
        finally:
            idx.close()
        if note:
            out[d.name]["(note)"] = {"status": note}
    if as_json:
        print(json.dumps(out, indent=1))
        raise typer.Exit(0)
    if not out:
        print(f"no sync recorded under {base}" + (f" for {source_host}:{port}" if source_host else ""))
        raise typer.Exit(0)
    for src, users in out.items():
        print(f"{pairs[src]}:" if src in pairs else f"source {src}:")
        for user, st in sorted(users.items()):
            c = st.get("counts", {})
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st["time"])) if "time" in st else "-"
            print(
                f"  {user:<20} {when}  {st.get('status', '?'):<8} new={c.get('new', 0)} renamed={c.get('renamed', 0)}"
                f" moved={c.get('moved', 0)} deleted={c.get('deleted', 0)} failed={c.get('failed', 0)}"
                + (f"  ({st['reason']})" if st.get("reason") else "")
            )


@app.command("verify", cls=Command)
def verify_cmd(
    source_host: str = typer.Option(..., "-s", "--source", metavar="IPADDR", help="The source whose index to check."),
    port: int = PortOpt("The source's SSH port, as given to maildirsync -s."),
    dest_root: Path = DestRootOpt,
    domain: Optional[str] = DomainOpt,
    user: List[str] = UserOpt,
    state_dir: Optional[Path] = StateOpt,
    as_json: bool = typer.Option(
        False, "--json", help="Machine-readable: per user, what was checked and every difference."
    ),
    type_: str = typer.Option(
        "sme8", "-t", "--type", metavar="sme8|sme9|ns6", callback=_one_of(*remote.TYPES),
        help="Source layout, as given to maildirsync -s.",
    ),  # fmt: skip
    login: str = LoginOpt,
    identity: Optional[Path] = typer.Option(
        None, "-i", "--identity", metavar="KEY", help="SSH private key (default: id_rsa in the state directory)."
    ),
    known_hosts: Optional[Path] = KnownHostsOpt,
    users_dir: str = typer.Option(
        "/home/e-smith/files/users", "--users-dir", metavar="DIR", help="sme8/sme9: users' homes on the source."
    ),
    admin_maildir: str = typer.Option(
        "/home/e-smith/Maildir", "--admin-maildir", metavar="DIR", help="sme8/sme9: admin's Maildir."
    ),
    vmail_dir: str = typer.Option(
        "/var/lib/nethserver/vmail", "--vmail-dir", metavar="DIR", help="ns6: mailboxes on the source."
    ),
    no_source: bool = typer.Option(
        False, "--no-source", help="Do not connect: check the destination against the index only (no UIDs)."
    ),
) -> None:
    """Re-hash destination messages against the index, and compare each folder's UIDs with the source's
    (exit 1 on a difference)."""
    from . import verify

    base = state_dir or DEFAULT_STATE
    try:
        state = engine.state_dir_for(base, engine.index_key(f"{source_host}_{port}", dest_root))
        dest, _notes = remote.destination_mailboxes(dest_root, domain or remote.host_domain())
        if no_source:
            results = verify.run(state, dest, user)
        else:
            from . import ssh

            source = ssh.open_source(source_host, port, login, identity or base / "id_rsa",
                                     known_hosts or base / "known_hosts", False, "auto")  # fmt: skip
            try:
                layout = remote.Layout(type_, users_dir, admin_maildir, vmail_dir)
                sources = {u: os.fsencode(layout.source_path(u)) for u in dest}
                results = verify.run(state, dest, user, source, sources)
            finally:
                source.close()
    except MaildirsyncError as e:
        fail(e, as_json)
    except SourceError as e:
        fail(MaildirsyncError(str(e), getattr(e, "exit_code", 1)), as_json)
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=1))
    else:
        for r in results:
            print(r.line())
            for problem in r.problems[:50] + r.uid_notes[:50]:
                print(f"  {problem}")
    raise typer.Exit(1 if any(r.failed for r in results) else 0)


def main() -> None:
    profile = os.environ.get("MAILDIRSYNC_PROFILE")  # where the time goes: bench/README.md
    if profile:
        from .profiling import ThreadProfiles

        tp = ThreadProfiles()
        try:
            with tp:
                _main()
        finally:
            tp.dump(profile)
    else:
        _main()


def _main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("maildirsync: aborted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    main()

"""The command line. It parses, calls the engine and renders; the decisions live elsewhere.

Exit codes (README.md, "Exit codes"): 0 done or nothing to do; 1 a user failed; 2 bad usage or input;
3 dry run with changes pending; 4 another run holds the index; 130 interrupted.
"""

from __future__ import annotations

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

from . import engine, local, remote, report
from .errors import EXIT_INTERRUPTED, MaildirsyncError, UsageError
from .transport import SourceError

DEFAULT_STATE = Path("/var/lib/maildirsync")

app = typer.Typer(
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Maildir-aware incremental mailbox sync from an SME Server / NethService host to NethServer.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def parse_owner(spec: Optional[str]) -> tuple[int, int] | None:
    if spec is None:
        return engine.default_owner()
    if spec in ("", "none", "keep"):
        return None
    import grp
    import pwd

    user, _, group = spec.partition(":")
    try:
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        gid = int(group) if group.isdigit() else grp.getgrnam(group or user).gr_gid
    except KeyError as e:
        raise UsageError(f"--owner {spec}: no such user or group {e}") from None
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
    if as_json:
        print(json.dumps({"error": e.message, "exit_code": e.exit_code}))
    else:
        print(f"maildirsync: error: {e.message}", file=sys.stderr)
    raise typer.Exit(e.exit_code)


DryRun = typer.Option(False, "-n", "--dry-run", help="Print the plan; change nothing (the index included).")
Verbose = typer.Option(0, "-v", "--verbose", count=True, help="List every action (-vv: index-only ones too).")
AsJson = typer.Option(False, "--json", help="Machine-readable report on stdout (with -v: every action).")
NoDelete = typer.Option(False, "--no-delete", help="Never delete on the destination.")
MaxDelete = typer.Option(
    50.0, "--max-delete", min=0, max=100,
    help="Refuse to delete more than this percent of a folder's synced messages; and refuse a user of whom "
    "more than this percent of what was placed is gone from the destination.",
)
ForgetOpt = typer.Option(
    [], "--forget", metavar="USER",
    help="Set aside the index's records of USER (repeatable): what the destination holds is adopted, what it "
    "lacks is fetched again. For a destination that lost mail maildirsync had placed.",
)
StateOpt = typer.Option(
    None, "--state-dir", help=f"Where the index lives (default {DEFAULT_STATE}).", envvar="MAILDIRSYNC_STATE_DIR"
)
OwnerOpt = typer.Option(None, "--owner", help="USER:GROUP for what we create (default vmail:vmail if it exists; 'keep').")
JobsOpt = typer.Option(1, "-j", "--jobs", min=1, max=64, help="Users synced in parallel.")


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    source_host: Optional[str] = typer.Option(None, "-s", "--source", metavar="IPADDR", help="Pull from this host over SSH."),
    port: int = typer.Option(22, "-p", "--port", help="SSH port on the source host."),
    dry_run: bool = DryRun,
    type_: str = typer.Option("sme8", "-t", "--type", metavar="sme8|ns6", help="Source layout."),
    user: List[str] = typer.Option([], "-u", "--user", help="Only this user (repeatable)."),
    login: str = typer.Option("root", "-l", "--login", help="SSH login on the source."),
    identity: Optional[Path] = typer.Option(None, "-i", "--identity", help="SSH private key (default STATE/id_rsa)."),
    known_hosts: Optional[Path] = typer.Option(None, "--known-hosts", help="Host keys (default STATE/known_hosts)."),
    accept_new: bool = typer.Option(False, "--accept-new-host-key", help="Record the source's host key if unknown."),
    dest_root: Path = typer.Option(Path("/var/lib/nethserver/vmail"), "--dest-root", help="Destination mailboxes."),
    domain: Optional[str] = typer.Option(None, "--domain", help="Mail domain (default: the host's domain)."),
    jobs: int = typer.Option(4, "-j", "--jobs", min=1, max=16, help="Users synced in parallel over the one connection."),
    transport: str = typer.Option("auto", "--transport", metavar="auto|sftp", help="sftp: use SFTP only."),
    no_delete: bool = NoDelete,
    max_delete: float = MaxDelete,
    state_dir: Optional[Path] = StateOpt,
    owner: Optional[str] = OwnerOpt,
    users_dir: str = typer.Option("/home/e-smith/files/users", "--users-dir", help="sme8: users' homes on the source."),
    admin_maildir: str = typer.Option("/home/e-smith/Maildir", "--admin-maildir", help="sme8: admin's Maildir."),
    vmail_dir: str = typer.Option("/var/lib/nethserver/vmail", "--vmail-dir", help="ns6: mailboxes on the source."),
    verbose: int = Verbose,
    as_json: bool = AsJson,
    forget: List[str] = ForgetOpt,
) -> None:
    """maildirsync -s IPADDR [-p PORT] [-n] [-t sme8|ns6]: re-synchronise every mailbox from the source."""
    if ctx.invoked_subcommand is not None:
        return
    if source_host is None:
        print(ctx.get_help())
        raise typer.Exit(2)
    try:
        if type_ not in ("sme8", "ns6"):
            raise UsageError(f"-t {type_}: the source type is sme8 or ns6")
        if transport not in ("auto", "sftp"):
            raise UsageError(f"--transport {transport}: choose auto or sftp")
        state_base = state_dir or DEFAULT_STATE
        layout = remote.Layout(type_, users_dir, admin_maildir, vmail_dir)
        opts = run_options(dry_run, no_delete, max_delete, owner, jobs, verbose, forget,
                           (f"{source_host}:{port} ({type_})", str(dest_root.absolute())))  # fmt: skip
        from . import ssh

        source = ssh.open_source(
            source_host,
            port,
            login,
            identity or state_base / "id_rsa",
            known_hosts or state_base / "known_hosts",
            accept_new,
            transport,
            max_channels=max(8, jobs * 2),
        )
        try:
            mapping = remote.map_users(source, layout, dest_root, domain or remote.host_domain(), user)
            state = engine.state_dir_for(state_base, engine.index_key(f"{source_host}_{port}", dest_root))
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


@app.command("sync")
def sync_cmd(
    source: Path = typer.Argument(..., help="A Maildir, or a directory of <user>/Maildir."),
    dest: Path = typer.Argument(..., help="A Maildir, or a directory of <user>/Maildir."),
    dry_run: bool = DryRun,
    verbose: int = Verbose,
    as_json: bool = AsJson,
    no_delete: bool = NoDelete,
    max_delete: float = MaxDelete,
    state_dir: Optional[Path] = StateOpt,
    owner: Optional[str] = OwnerOpt,
    jobs: int = JobsOpt,
    user: List[str] = typer.Option([], "-u", "--user", help="Only this user (repeatable)."),
    create: bool = typer.Option(False, "--create", help="Create destination mailboxes that do not exist yet."),
    forget: List[str] = ForgetOpt,
) -> None:
    """Sync between two local trees (a mounted disk, an exploded backup)."""
    try:
        jobs_list, key, notes = local.jobs(source, dest, user, create)
        opts = run_options(dry_run, no_delete, max_delete, owner, jobs, verbose, forget,
                           (str(source.absolute()), str(dest.absolute())))  # fmt: skip
        state = engine.state_dir_for(state_dir or DEFAULT_STATE, key)
        code = execute(jobs_list, local.LocalSource(), state, opts, as_json, verbose, "maildirsync sync", notes)
    except MaildirsyncError as e:
        fail(e, as_json)
    raise typer.Exit(code)


@app.command("setup")
def setup_cmd(
    source_host: str = typer.Option(..., "-s", "--source", metavar="IPADDR", help="The source host."),
    port: int = typer.Option(22, "-p", "--port", help="SSH port on the source host."),
    login: str = typer.Option("root", "-l", "--login", help="SSH login on the source."),
    accept_new: bool = typer.Option(False, "--accept-new-host-key", help="Record the source's host key if unknown."),
    known_hosts: Optional[Path] = typer.Option(None, "--known-hosts", help="Host keys (default STATE/known_hosts)."),
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


@app.command("status")
def status_cmd(
    source_host: Optional[str] = typer.Option(None, "-s", "--source", metavar="IPADDR", help="Only this source."),
    port: int = typer.Option(22, "-p", "--port"),
    state_dir: Optional[Path] = StateOpt,
    as_json: bool = AsJson,
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


@app.command("verify")
def verify_cmd(
    source_host: str = typer.Option(..., "-s", "--source", metavar="IPADDR", help="The source whose index to check."),
    port: int = typer.Option(22, "-p", "--port", help="SSH port on the source host."),
    dest_root: Path = typer.Option(Path("/var/lib/nethserver/vmail"), "--dest-root", help="Destination mailboxes."),
    domain: Optional[str] = typer.Option(None, "--domain", help="Mail domain (default: the host's domain)."),
    user: List[str] = typer.Option([], "-u", "--user", help="Only this user (repeatable)."),
    state_dir: Optional[Path] = StateOpt,
    as_json: bool = AsJson,
    type_: str = typer.Option("sme8", "-t", "--type", metavar="sme8|ns6", help="Source layout."),
    login: str = typer.Option("root", "-l", "--login", help="SSH login on the source."),
    identity: Optional[Path] = typer.Option(None, "-i", "--identity", help="SSH private key (default STATE/id_rsa)."),
    known_hosts: Optional[Path] = typer.Option(None, "--known-hosts", help="Host keys (default STATE/known_hosts)."),
    users_dir: str = typer.Option("/home/e-smith/files/users", "--users-dir", help="sme8: users' homes on the source."),
    admin_maildir: str = typer.Option("/home/e-smith/Maildir", "--admin-maildir", help="sme8: admin's Maildir."),
    vmail_dir: str = typer.Option("/var/lib/nethserver/vmail", "--vmail-dir", help="ns6: mailboxes on the source."),
    no_source: bool = typer.Option(False, "--no-source", help="Do not connect: check the destination against the index only."),
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

            if type_ not in ("sme8", "ns6"):
                raise UsageError(f"-t {type_}: the source type is sme8 or ns6")
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

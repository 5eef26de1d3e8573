"""``maildirsync-import``: import an SME Server / NethService full backup.

Commands::

    maildirsync-import explode ARCHIVE [DIR]   # default DIR: /var/lib/migration
    maildirsync-import inspect DIR [--json]
    maildirsync-import run DIR [--events-dir D] [--json]
    maildirsync-import mailboxes DIR [--source-host HOST [--port P]] [--maildir NAME=USER] [-n] [--json]
    maildirsync-import all ARCHIVE [DIR] [--source-host HOST [--port P]] [--go-on] [--stop-after STEP] [--json]

Exit codes:

* ``0`` -- done, nothing failed;
* ``1`` -- the job ran and something failed: an event handler failed or
  reported ``[ERROR]``/``FAILED``, extraction hit an I/O error or a full disk,
  there is not enough free space, a needed program (``dar``) is missing;
* ``2`` -- bad usage or unusable input: unknown option, missing argument, an
  archive that is unsafe (absolute path, ``..``, link escaping DIR, device
  node, fifo), truncated or corrupt, a non-empty DIR without ``--force``, a
  DIR that is not an exploded backup;
* ``3`` -- ``mailboxes -n`` only: the dry run found mail to copy;
* ``4`` -- another run holds what this one needs: maildirsync's index
  (``mailboxes``, ``all``), or the tree (``run``, ``all``);
* ``130`` -- interrupted (Ctrl-C).

Errors are one message and a hint, never a traceback (set
``MAILDIRSYNC_IMPORT_DEBUG=1`` to see one for an unexpected internal error).
Progress goes to standard error, results to standard output.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from importer import EXIT_FAILED, EXIT_OK, events, importing, procedure, report, systemlog
from importer import archive as archive_mod
from importer import inspect as inspect_mod
from importer import mailboxes as mailboxes_mod
from importer.errors import BadInputError, ImporterError
from importer.progress import human, make_progress
from importer.state import TreeState

app = typer.Typer(
    name="maildirsync-import",
    help="Import an SME Server / NethService full backup into NethServer: explode the archive "
    "safely, inspect what will migrate, run the migration-import event and report every failure.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fail(e: ImporterError) -> typer.Exit:
    _err(f"error: {e.message}")
    if e.hint:
        _err(f"hint: {e.hint}")
    return typer.Exit(e.exit_code)


def guarded(fn):
    """Turn importer errors into a message and an exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ImporterError as e:
            raise _fail(e) from None
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None
        except Exception as e:  # noqa: BLE001 - last resort, see module doc
            if os.environ.get("MAILDIRSYNC_IMPORT_DEBUG"):
                raise
            _err(f"internal error: {type(e).__name__}: {e}")
            _err("hint: this is a bug; run again with MAILDIRSYNC_IMPORT_DEBUG=1 and report the traceback")
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper


_EVENTS_DIR_HELP = (f"run the handlers of <events-dir>/{events.EVENT}/ with the built-in runner "
                    f"(default when {events.SIGNAL_EVENT} is absent: {events.DEFAULT_EVENTS_DIR})")
_PASSWD_HELP = ("the destination's users, as `getent passwd` prints them (default: this host's user database), "
                "for the predictions and the check after the import")
_MAILDIR_HELP = ("NAME=USER: also copy home/e-smith/files/users/NAME/Maildir, which no user account owns, "
                 "into USER's mailbox (repeatable)")


@app.command()
@guarded
def explode(
    archive: str = typer.Argument(
        ..., metavar="ARCHIVE", help="smeserver.tgz (gzip, bzip2, xz or plain tar), or a dar set (full-*.dar or its directory)"
    ),
    dir: str = typer.Argument(archive_mod.DEFAULT_DIR, metavar="DIR", help="where to explode it"),
    force: bool = typer.Option(False, "--force", "-f", help="extract even if DIR is not empty"),
    skip_unsafe_links: bool = typer.Option(
        False, "--skip-unsafe-links", help="leave out symbolic links pointing outside DIR instead of refusing the archive"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress"),
) -> None:
    """Explode a backup archive into DIR, safely, keeping owners, modes and mtimes.

    Members with absolute paths or '..', links pointing outside DIR, device nodes
    and fifos make the whole archive refused before anything is written.
    """
    prog = make_progress(sys.stderr, quiet=quiet)
    res = archive_mod.explode(
        archive, dir, force=force, skip_unsafe_links=skip_unsafe_links, progress=prog, say=_err
    )
    if res.kind == "dar":
        print(f"restored {len(res.steps)} dar archives into {res.dest}: {', '.join(res.steps)}")
    else:
        print(
            f"exploded {res.archive} ({res.kind}) into {res.dest}: {res.files} files "
            f"({human(res.bytes)}), {res.dirs} directories, {res.links} links in {res.seconds:.1f}s"
        )
    for member, reason in res.skipped:
        print(f"WARNING skipped {member}: {reason}")
    for w in res.warnings:
        print(f"WARNING {w}")
    print(f"next: maildirsync-import inspect {res.dest}")


@app.command()
@guarded
def inspect(
    dir: str = typer.Argument(..., metavar="DIR", help="the exploded backup"),
    json_out: bool = typer.Option(False, "--json", help="print JSON for machines"),
    dest_root: str = typer.Option(
        inspect_mod.DEFAULT_DEST_ROOT, "--dest-root", help="destination mailboxes: <dest-root>/<user>@<domain>/Maildir"
    ),
    domain: Optional[str] = typer.Option(None, "--domain", help="mail domain (default: DomainName of the backup)"),
    passwd: Optional[str] = typer.Option(None, "--passwd", metavar="FILE", help=_PASSWD_HELP),
) -> None:
    """Show what will migrate: users and mailboxes, groups, pseudonyms, domains,
    forwards, mail settings, custom templates, features to install, the Maildirs
    no user owns, what migration-import will skip, pitfalls."""
    inv = inspect_mod.inspect_tree(dir, dest_root=dest_root, domain=domain, passwd=passwd)
    if json_out:
        print(inspect_mod.to_json(inv))
    else:
        sys.stdout.write(inspect_mod.render_text(inv))


def _print_action(a: events.ActionResult, i: int, n: int) -> None:
    _err(f"[{i}/{n}] {procedure.progress_word(a)} in {a.seconds:.1f}s")


def _import_options(events_dir, signal_event, syslog, passwd) -> importing.ImportOptions:
    return importing.ImportOptions(events_dir=events_dir, signal_event=signal_event, syslog=syslog, passwd=passwd)


@app.command()
@guarded
def run(
    dir: str = typer.Argument(..., metavar="DIR", help="the exploded backup"),
    events_dir: Optional[str] = typer.Option(None, "--events-dir", help=_EVENTS_DIR_HELP),
    signal_event: str = typer.Option(events.SIGNAL_EVENT, "--signal-event", help="NethServer's signal-event program"),
    syslog: str = typer.Option(systemlog.SYSLOG, "--syslog",
                               help="system log holding the actions' lines (the journal is read when it cannot be)"),
    json_out: bool = typer.Option(False, "--json", help="print the checks and the report as JSON"),
    dest_root: str = typer.Option(inspect_mod.DEFAULT_DEST_ROOT, "--dest-root", help="destination mailboxes root"),
    domain: Optional[str] = typer.Option(None, "--domain", help="mail domain (default: DomainName of the backup)"),
    passwd: Optional[str] = typer.Option(None, "--passwd", metavar="FILE", help=_PASSWD_HELP),
) -> None:
    """Signal migration-import on DIR, once, and report every failure.

    Checks first (the databases exist, what inspect warns about, what the import
    will skip), then runs signal-event -j when installed, else the built-in runner.
    A second run on the same tree refuses; one after an interruption follows the
    event to its end (or reads how it ended) and reports.
    """
    tree = inspect_mod.check_tree(dir).absolute() if not TreeState(dir).exists() else Path(dir).absolute()
    st = TreeState(tree)
    opts = _import_options(events_dir, signal_event, syslog, passwd)
    with st.locked("maildirsync-import run"):
        st.load()
        importing.refuse_if_imported(st)
        inv, checks = None, []
        if st.imported is None:
            inv = inspect_mod.inspect_tree(tree, dest_root=dest_root, domain=domain, passwd=passwd)
            if inv.missing_dbs:
                raise BadInputError(
                    f"{tree} lacks {', '.join(inv.missing_dbs)}",
                    "explode the full backup again; migration-import needs the e-smith databases",
                )
            checks = importing.checks(inv)
            if not json_out:
                print("Checks before the import:")
                for line in checks:
                    print(f"  {line}")
                print(flush=True)
        run_ = importing.do_import(st, opts, inv, on_action=None if json_out else _print_action,
                                   say=(lambda _m: None) if json_out else _err)  # fmt: skip
        rep, after = importing.make_report(st, run_, opts)
    if json_out:
        print(json.dumps({"checks": checks, "report": rep.to_dict(), "after_import": after}, indent=2))
    else:
        sys.stdout.write(report.render_text(rep))
        for a in after:
            print(f"after the import: {a}")
    raise typer.Exit(rep.exit_code or (EXIT_FAILED if after else EXIT_OK))


@app.command()
@guarded
def mailboxes(
    dir: str = typer.Argument(..., metavar="DIR", help="the exploded backup"),
    dest_root: str = typer.Option(
        inspect_mod.DEFAULT_DEST_ROOT, "--dest-root", help="destination mailboxes: <dest-root>/<user>@<domain>/Maildir"
    ),
    domain: Optional[str] = typer.Option(None, "--domain", help="mail domain (default: the host's domain)"),
    source_host: Optional[str] = typer.Option(
        None, "--source-host", metavar="HOST",
        help="seed the index of `maildirsync -s HOST`: give HOST exactly as you will give it there",
    ),
    port: int = typer.Option(22, "--port", "-p", help="with --source-host: the SSH port maildirsync -s will use"),
    state_dir: Optional[str] = typer.Option(
        None, "--state-dir", envvar="MAILDIRSYNC_STATE_DIR",
        help=f"where maildirsync keeps its indexes (default {mailboxes_mod.DEFAULT_STATE})",
    ),
    user: List[str] = typer.Option([], "--user", "-u", help="only this user (repeatable)"),
    maildir: List[str] = typer.Option([], "--maildir", metavar="NAME=USER", help=_MAILDIR_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="print the plan; change nothing"),
    owner: Optional[str] = typer.Option(
        None, "--owner", help="USER:GROUP of what is created (default vmail:vmail if it exists; 'keep')"
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="list every action"),
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Copy every user's Maildir (admin's included) from DIR into <dest-root>/<user>@<domain>/Maildir
    with the sync engine, and record them in the index, so that the following maildirsync -s only
    transfers what changed on the source since the backup. DIR is only read."""
    from maildirsync import report as sync_report
    from maildirsync.cli import interruptible, parse_owner
    from maildirsync.errors import MaildirsyncError

    try:
        owner_ids = parse_owner(owner)
    except MaildirsyncError as e:
        raise BadInputError(e.message, "give --owner USER:GROUP of this host, numbers, or 'keep'") from None
    seeding = mailboxes_mod.prepare(
        dir, dest_root=dest_root, domain=domain, source_host=source_host, port=port,
        state_base=state_dir or mailboxes_mod.DEFAULT_STATE, users=user, maildirs=maildir,
    )  # fmt: skip
    progress = sync_report.Progress(max(len(seeding.jobs), 1), enabled=False if json_out else None)
    with interruptible() as stop:
        result = mailboxes_mod.run(
            seeding, dry_run=dry_run, owner=owner_ids, stop=stop, progress=progress.advance,
            on_user=progress.user_done,
        )  # fmt: skip
    progress.close()
    if json_out:
        print(mailboxes_mod.to_json(seeding, result))
    else:
        if verbose:
            for u in result.users:
                sync_report.print_actions(u, sys.stdout, verbose)
        sync_report.print_summary(result)
    raise typer.Exit(result.exit_code)


@app.command("all")
@guarded
def all_cmd(
    archive: str = typer.Argument(..., metavar="ARCHIVE", help="the source's full backup (smeserver.tgz, or a dar set)"),
    dir: str = typer.Argument(archive_mod.DEFAULT_DIR, metavar="DIR", help="where to explode it"),
    source_host: Optional[str] = typer.Option(
        None, "--source-host", metavar="HOST",
        help="the source, as you will give it to `maildirsync -s`: the mailboxes step seeds its index",
    ),
    port: int = typer.Option(22, "--port", "-p", help="the source's SSH port, for maildirsync -s"),
    go_on: bool = typer.Option(False, "--go-on", help="go on despite blocking problems or failed mailboxes"),
    stop_after: Optional[str] = typer.Option(
        None, "--stop-after", metavar="STEP", help=f"stop after this step ({', '.join(procedure.STEPS[:-1])})"
    ),
    maildir: List[str] = typer.Option([], "--maildir", metavar="NAME=USER", help=_MAILDIR_HELP),
    dest_root: str = typer.Option(inspect_mod.DEFAULT_DEST_ROOT, "--dest-root", help="destination mailboxes root"),
    domain: Optional[str] = typer.Option(None, "--domain", help="mail domain (default: this host's, else the backup's)"),
    state_dir: Optional[str] = typer.Option(
        None, "--state-dir", envvar="MAILDIRSYNC_STATE_DIR",
        help=f"where maildirsync keeps its indexes (default {mailboxes_mod.DEFAULT_STATE})",
    ),
    owner: Optional[str] = typer.Option(
        None, "--owner", help="USER:GROUP of the mailboxes created (default vmail:vmail if it exists; 'keep')"
    ),
    passwd: Optional[str] = typer.Option(None, "--passwd", metavar="FILE", help=_PASSWD_HELP),
    events_dir: Optional[str] = typer.Option(None, "--events-dir", help=_EVENTS_DIR_HELP),
    signal_event: str = typer.Option(events.SIGNAL_EVENT, "--signal-event", help="NethServer's signal-event program"),
    syslog: str = typer.Option(systemlog.SYSLOG, "--syslog", help="system log holding the actions' lines"),
    skip_unsafe_links: bool = typer.Option(
        False, "--skip-unsafe-links", help="leave out symbolic links pointing outside DIR instead of refusing the archive"
    ),
    log: Optional[str] = typer.Option(None, "--log", metavar="FILE", help="plain log (default DIR/.maildirsync-import/all.log)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object at the end; no progress"),
) -> None:
    """The whole procedure, resumable: explode ARCHIVE into DIR, inspect it (stop on
    blocking problems unless --go-on), copy the mailboxes and seed maildirsync's
    index, run migration-import once, report, and say what to do next.

    Each finished step is recorded in DIR: run the same command again after a
    failure or a Ctrl-C and it goes on from the first unfinished step.
    """
    if stop_after is not None and stop_after not in procedure.STEPS[:-1]:
        raise BadInputError(f"--stop-after {stop_after}: no such step", f"steps: {', '.join(procedure.STEPS[:-1])}")
    if source_host is not None and not source_host.strip():
        raise BadInputError("--source-host is empty", "give the host as you will give it to maildirsync -s")
    if not 0 < port < 65536:
        raise BadInputError(f"--port {port}: not a TCP port", "give the SSH port of the source, 1 to 65535 (default 22)")
    o = procedure.AllOptions(
        archive=archive, dir=dir, source_host=source_host, port=port, go_on=go_on, stop_after=stop_after,
        dest_root=dest_root, domain=domain, state_dir=state_dir, owner=owner, passwd=passwd, maildirs=maildir,
        skip_unsafe_links=skip_unsafe_links, json=json_out, log=log,
        imp=_import_options(events_dir, signal_event, syslog, passwd),
    )  # fmt: skip
    raise typer.Exit(procedure.run_all(o))


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code."""
    try:
        app(args=argv, prog_name="maildirsync-import")
    except SystemExit as e:
        code = e.code
        if code is None:
            return EXIT_OK
        if isinstance(code, int):
            return code
        _err(str(code))
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

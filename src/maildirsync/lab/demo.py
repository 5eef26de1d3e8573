"""The README's demo: a generated SME 8-shaped source behind a throwaway OpenSSH sshd on 127.0.0.1,
pulled into a NethServer-shaped destination with the real command line — dry run first, then the sync,
then a change on the source and the incremental pass that follows.

Everything lives in one scratch directory (``--workdir``, default a new temporary one); nothing on this
host outside it is touched.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from ..report import legend
from .corpus import SME8_ADMIN, SME8_USERS, CorpusSpec, generate
from .scenarios import apply as mutate
from .sshd import start_sshd

DOMAIN = "demo.example"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def run(argv: list[str]) -> int:
    print("$ " + " ".join(shlex.quote(a) for a in argv), flush=True)
    return subprocess.call(argv)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m maildirsync.lab.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, help="scratch directory (default: a new temporary one)")
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--messages", type=int, default=40, help="per folder")
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="maildirsync-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    source_root, dest_root, state = work / "source", work / "dest" / "vmail", work / "state"

    say(f"Generating an SME 8 source in {source_root}")
    corpus = generate(
        source_root,
        CorpusSpec(users=args.users, folders=4, messages=args.messages, seed=42, layout="sme8", domain=DOMAIN),
    )
    print(f"{corpus.messages if hasattr(corpus, 'messages') else ''} messages".strip())
    users = sorted(p.name for p in (source_root / SME8_USERS).iterdir()) + ["admin"]

    say("Creating the users' (empty) mailboxes on the destination, as NethServer does")
    for u in users:
        for sub in ("cur", "new", "tmp"):
            (dest_root / f"{u}@{DOMAIN}" / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
    print(", ".join(f"{u}@{DOMAIN}" for u in users))

    say("Starting a throwaway OpenSSH server on 127.0.0.1")
    with start_sshd(work / "sshd") as server:
        print(f"sshd on 127.0.0.1:{server.port}, root login with {server.client_key}")
        base = [
            sys.executable, "-m", "maildirsync.cli",
            "-s", "127.0.0.1", "-p", str(server.port),
            "-i", str(server.client_key), "--known-hosts", str(server.known_hosts),
            "--state-dir", str(state), "--dest-root", str(dest_root), "--domain", DOMAIN,
            "--users-dir", str(source_root / SME8_USERS), "--admin-maildir", str(source_root / SME8_ADMIN),
            "--owner", "keep",
        ]  # fmt: skip
        say("Dry run: what the first sync will do (nothing is changed)")
        run(base + ["-n"])
        say("First sync")
        rc = run(base)
        say("Meanwhile on the source: flags change on 10% of the mail, 1% new mail, 1% moved")
        for i, scenario in enumerate(("flags", "new", "moved")):
            mutate(scenario, source_root, "sme8", seed=7, step=i + 1)
        say("Dry run of the incremental sync, itemized: one line per action, its sigil first")
        print(f"sigils: {legend()}")
        run(base + ["-n", "-v"])
        say("Incremental sync: flag changes are renames, moves are local; only new mail is downloaded")
        rc = run(base) or rc
    say(f"Done. Source {source_root}, destination {dest_root}, index in {state}")
    return rc


if __name__ == "__main__":
    sys.exit(main())

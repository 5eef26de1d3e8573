"""`--bwlimit RATE` (issue 10: be gentle with the source, a production mail server while this runs): rsync's
units, refused at parse time when wrong, and a run that reads no faster than the limit over a real sshd.
Only lower bounds on time are asserted: a loaded machine makes a run slower, never faster."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from maildirsync.cli import parse_rate
from maildirsync.lab.corpus import SME8_ADMIN, SME8_USERS, CorpusSpec, generate
from maildirsync.ssh.throttle import Throttle
from mdtools import cli, mkmaildir
from sshfixtures import sshd_server  # noqa: F401  (fixture)

DOMAIN = "example.org"


@pytest.mark.parametrize(
    "text, rate",
    [("500", 500 * 1024), ("500K", 500 * 1024), ("2M", 2 << 20), ("2m", 2 << 20), ("1G", 1 << 30),
     ("1.5M", 1.5 * (1 << 20)), ("100KB", 100_000), ("3MB", 3_000_000), ("2MiB", 2 << 20), ("0", 0)],
)  # fmt: skip
def test_rates_read_as_rsync_reads_them(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "5x", "-3", "2T", "nan", "1e999"])
def test_a_bad_rate_is_refused_at_parse_time(text):
    p = cli("-s", "127.0.0.1", "--bwlimit", text)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "--bwlimit" in p.stderr and "Traceback" not in p.stderr


def test_the_throttle_holds_reads_to_the_rate():
    async def read_a_mebibyte(t: Throttle) -> float:
        t0 = time.monotonic()
        for _ in range(16):
            await t.take(64 * 1024)
        return time.monotonic() - t0

    assert asyncio.run(read_a_mebibyte(Throttle(2 << 20))) >= 0.45  # 1 MiB at 2 MiB/s


@pytest.mark.parametrize("transport", ["auto", "sftp"])
def test_a_run_reads_no_faster_than_the_limit(sshd_server, tmp_path, transport):  # noqa: F811
    src = tmp_path / "sme"
    generate(src, CorpusSpec(users=2, folders=2, messages=20, seed=7, layout="sme8", domain=DOMAIN), processes=1)
    dest = tmp_path / "vmail"
    for u in sorted(p.name for p in (src / SME8_USERS).iterdir()) + ["admin"]:
        mkmaildir(dest / f"{u}@{DOMAIN}" / "Maildir")
    rate = 512 * 1024
    t0 = time.monotonic()
    p = cli(
        "-s", sshd_server.host, "-p", sshd_server.port, "-i", sshd_server.client_key, "--known-hosts",
        sshd_server.known_hosts, "--state-dir", tmp_path / "state", "--dest-root", dest, "--domain", DOMAIN,
        "--owner", "keep", "--users-dir", src / SME8_USERS, "--admin-maildir", src / SME8_ADMIN,
        "--bwlimit", "512K", "--transport", transport, "--json",
    )  # fmt: skip
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    sent = sum(u["counts"]["bytes"] for u in json.loads(p.stdout)["users"])
    assert sent > rate  # enough that the limit shows
    assert took >= sent / rate, f"{sent} bytes in {took:.2f} s: faster than {rate} B/s"

"""``maildirsync-import inspect``: typed records from an SME-like backup tree."""

from __future__ import annotations

import json
import shutil

import pytest

from importer import inspect as insp


@pytest.fixture
def inv(sme_tree, tmp_path):
    dest = tmp_path / "vmail"
    (dest / "bob@example.com/Maildir").mkdir(parents=True)  # already on the destination
    return insp.inspect_tree(sme_tree, dest_root=str(dest))


def by_name(items):
    return {i.name: i for i in items}


def test_users_with_mailboxes_admin_included_system_accounts_not(inv):
    users = by_name(inv.users)
    assert list(users) == ["admin", "alice", "bob", "carol"]  # admin first, then by name
    assert "root" not in users and "www" not in users and "shared" not in users
    a = users["alice"]
    assert (a.mailbox.messages, a.mailbox.bytes, a.mailbox.folders) == (4, 400, 2)
    assert a.email == "alice@example.com" and a.groups == ["staff"]
    assert users["bob"].mailbox.messages == 1 and users["bob"].mailbox.bytes == 1000
    assert users["bob"].last_name == "O|Brien"
    adm = users["admin"]
    assert adm.system and adm.mailbox.path == "home/e-smith/Maildir"
    assert (adm.mailbox.messages, adm.mailbox.bytes) == (2, 20)
    assert users["carol"].mailbox.exists is False
    assert inv.total_messages == 7


@pytest.mark.parametrize(
    "group, members",
    [("staff", ["alice", "bob"]), ("empty", [])],
)
def test_groups(inv, group, members):
    assert by_name(inv.groups)[group].members == members


@pytest.mark.parametrize(
    "name, account, final",
    [("info", "alice", "alice"), ("sales", "info", "alice"), ("ghost", "nobody", None)],
)
def test_pseudonyms(inv, name, account, final):
    p = by_name(inv.pseudonyms)[name]
    assert (p.account, p.resolves_to) == (account, final)


def test_domains_and_forwards(inv):
    doms = by_name(inv.domains)
    assert doms["example.com"].primary and not doms["other.org"].primary
    assert doms["other.org"].description == "A second domain|with a pipe"
    assert [(f.user, f.mode, f.address) for f in inv.forwards] == [
        ("alice", "both", "alice@elsewhere.test"),
        ("carol", "forward", "carol@out.test"),
    ]


def test_mail_settings(inv):
    m = inv.mail
    assert m.smtp_auth == "enabled" and m.tls == "enabled"
    svc = {s.name: s for s in m.services}
    assert (svc["smtp"].enabled, svc["smtp"].port) == (True, 25)
    assert (svc["smtps"].enabled, svc["smtps"].port) == (True, 465)
    assert (svc["submission"].port, svc["imaps"].port) == (587, 993)
    assert svc["imap"].enabled and svc["imap"].access == "private"
    assert svc["pop3"].enabled is False and svc["pop3s"].enabled is True
    assert m.spam_filter and m.spam_sorting and m.spam_retention_days == "15"


def test_custom_templates_each_with_a_warning(inv):
    assert [(t.path, t.kind) for t in inv.templates] == [
        ("etc/e-smith/templates-custom/etc/postfix/main.cf/10custom", "templates-custom"),
        ("etc/e-smith/templates-user-custom/.qmail/20forward", "templates-user-custom"),
    ]
    assert all("not migrated" in t.warning for t in inv.templates)


def test_features_to_install(inv):
    pkgs = {f.package for f in inv.features}
    assert {"nethserver-directory", "nethserver-mail-server", "nethserver-mail-filter", "nethserver-samba"} <= pkgs


def test_pitfalls(inv):
    kinds = {(p.kind, p.subject) for p in inv.pitfalls}
    assert ("destination_exists", "bob") in kinds
    assert ("destination_exists", "alice") not in kinds
    assert ("root_ssh", "/root/.ssh") in kinds
    assert ("admin_mailbox", "admin") in kinds
    assert ("pseudonym", "ghost") in kinds
    assert ("no_maildir", "carol") in kinds
    assert ("one_shot", inv.dir) in kinds


def test_domain_override(sme_tree, tmp_path):
    inv = insp.inspect_tree(sme_tree, dest_root=str(tmp_path), domain="new.test")
    assert by_name(inv.users)["alice"].email == "alice@new.test"


def test_missing_db_is_a_pitfall(sme_tree, tmp_path):
    (sme_tree / "home/e-smith/db/domains").unlink()
    inv = insp.inspect_tree(sme_tree, dest_root=str(tmp_path))
    assert inv.missing_dbs == ["home/e-smith/db/domains"]
    assert any(p.kind == "missing_db" for p in inv.pitfalls)


def test_cli_text(cli, sme_tree, tmp_path):
    r = cli("inspect", sme_tree, "--dest-root", tmp_path / "vmail")
    assert r.exit_code == 0, r.output
    out = r.stdout
    for needle in [
        "alice@example.com",
        "admin@example.com",
        "system account",
        "staff: alice, bob",
        "sales -> info -> alice",
        "ghost -> nobody -> (dangling)",
        "example.com  (primary)",
        "alice -> alice@elsewhere.test  (and a local copy)",
        "SMTP authentication: enabled",
        "pop3       disabled, port 110",
        "retention: 15 days",
        "WARNING etc/e-smith/templates-custom/etc/postfix/main.cf/10custom",
        "nethserver-mail-server",
        "WARNING [root_ssh]",
    ]:
        assert needle in out, needle


def test_cli_json(cli, sme_tree, tmp_path):
    r = cli("inspect", "--json", sme_tree, "--dest-root", tmp_path / "vmail")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["domain"] == "example.com"
    assert [u["name"] for u in d["users"]] == ["admin", "alice", "bob", "carol"]
    assert d["users"][1]["mailbox"]["messages"] == 4
    assert d["total_messages"] == 7
    assert {p["kind"] for p in d["pitfalls"]} >= {"root_ssh", "admin_mailbox"}
    assert d["mail"]["spam_retention_days"] == "15"


@pytest.mark.parametrize("setup, message", [
    ("missing", "no such directory"),
    ("empty", "is empty"),
    ("not_backup", "not an exploded SME"),
    ("file", "not a directory"),
])
def test_cli_bad_dir(cli, tmp_path, setup, message):
    d = tmp_path / "d"
    if setup == "empty":
        d.mkdir()
    elif setup == "not_backup":
        (d / "something").mkdir(parents=True)
    elif setup == "file":
        d.write_text("")
    r = cli("inspect", d)
    assert r.exit_code == 2 and message in r.stderr


def test_after_migration_import_moved_the_files(cli, sme_tree):
    shutil.rmtree(sme_tree / "home/e-smith/db")
    r = cli("inspect", sme_tree)
    assert r.exit_code == 2 and "already ran" in r.stderr

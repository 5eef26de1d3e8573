"""Inspect an exploded SME Server / NethService backup: what will migrate.

Reads the e-smith databases ``home/e-smith/db/{accounts,configuration,domains}``
(:mod:`importer.esmithdb`) and the Maildirs, and builds typed records: users
(with mailbox size and message count, admin's ``home/e-smith/Maildir``
included), groups, pseudonyms, domains, forwards, the mail settings a client
configuration depends on, custom templates (not migrated), the NethServer
features to install first and the pitfalls known for this archive.

:func:`inspect_tree` returns an :class:`Inventory`; :func:`render_text` prints it
for a person, :func:`to_json` for machines.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from importer import esmithdb, predict
from importer.errors import BadInputError
from importer.predict import plural
from importer.progress import human

DB_DIR = "home/e-smith/db"
DB_NAMES = ("accounts", "configuration", "domains")
DEFAULT_DEST_ROOT = "/var/lib/nethserver/vmail"
TEMPLATE_DIRS = ("etc/e-smith/templates-custom", "etc/e-smith/templates-user-custom")
ADMIN = "admin"

# configuration keys of the mail services, with their usual port
MAIL_SERVICES = (
    ("smtp", ("qpsmtpd", "smtpd"), 25),
    ("smtps", ("sqpsmtpd",), 465),
    ("submission", ("uqpsmtpd",), 587),
    ("imap", ("imap", "dovecot"), 143),
    ("imaps", ("imaps",), 993),
    ("pop3", ("pop3",), 110),
    ("pop3s", ("pop3s",), 995),
)


@dataclass
class Mailbox:
    path: str  # relative to the exploded tree
    exists: bool
    messages: int = 0
    bytes: int = 0
    folders: int = 0


@dataclass
class User:
    name: str
    email: str
    first_name: str
    last_name: str
    mailbox: Mailbox
    system: bool = False  # admin: a 'system' record
    line: int = 0  # its line in the accounts database
    groups: list[str] = field(default_factory=list)
    forward_mode: str | None = None  # EmailForward: local, forward, both
    forward_address: str | None = None


@dataclass
class Group:
    name: str
    description: str
    members: list[str]


@dataclass
class Pseudonym:
    name: str
    account: str  # what the record points to
    resolves_to: str | None  # the final account, None if it dangles or loops
    visible: str | None = None


@dataclass
class Domain:
    name: str
    primary: bool
    description: str = ""
    content: str = ""


@dataclass
class Forward:
    user: str
    mode: str  # forward (only) or both (keep a local copy too)
    address: str


@dataclass
class Service:
    name: str  # smtp, imaps, ...
    key: str | None  # the configuration record it was read from
    enabled: bool | None  # None: not in the configuration
    port: int | None
    access: str | None = None
    props: dict[str, str] = field(default_factory=dict)


@dataclass
class MailSettings:
    smtp_auth: str | None
    tls: str | None
    services: list[Service]
    spam_filter: bool | None
    spam_sorting: bool | None
    spam_retention_days: str | None
    spam_props: dict[str, str] = field(default_factory=dict)


@dataclass
class Template:
    path: str
    kind: str
    warning: str


@dataclass
class Feature:
    feature: str
    package: str
    reason: str
    installed: bool | None = None  # None: this host has no rpm to ask


@dataclass
class Pitfall:
    kind: str
    subject: str
    message: str
    blocking: bool = False  # mail would be lost or the import would fail: `all` stops unless told to go on


@dataclass
class Inventory:
    dir: str
    domain: str | None
    system_name: str | None
    dest_root: str
    users: list[User] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    pseudonyms: list[Pseudonym] = field(default_factory=list)
    domains: list[Domain] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    ibays: list[str] = field(default_factory=list)
    mail: MailSettings | None = None
    templates: list[Template] = field(default_factory=list)
    features: list[Feature] = field(default_factory=list)
    pitfalls: list[Pitfall] = field(default_factory=list)
    missing_dbs: list[str] = field(default_factory=list)
    orphans: list[predict.Orphan] = field(default_factory=list)  # Maildirs no type=user account owns
    skips: list[predict.Skip] = field(default_factory=list)  # what migration-import's mail step will skip
    passwd: str = "this host's user database"

    @property
    def blocking(self) -> list[Pitfall]:
        return [p for p in self.pitfalls if p.blocking]

    @property
    def total_messages(self) -> int:
        return sum(u.mailbox.messages for u in self.users)

    @property
    def total_bytes(self) -> int:
        return sum(u.mailbox.bytes for u in self.users)


# --------------------------------------------------------------------------- Maildirs


def scan_maildir(root: Path, rel: str) -> Mailbox:
    """Count messages (files of ``cur/`` and ``new/`` not starting with ``.``) and
    their bytes, in INBOX and every Maildir++ sub-folder. ``tmp/`` is ignored."""
    box = Mailbox(path=rel, exists=root.is_dir())
    if not box.exists:
        return box
    folders = [root]
    try:
        folders += sorted(p for p in root.iterdir() if p.name.startswith(".") and p.name not in (".", "..")
                          and p.is_dir() and not p.is_symlink())
    except OSError:
        pass
    for folder in folders:
        counted = False
        for sub in ("cur", "new"):
            d = folder / sub
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            counted = True
            for e in entries:
                if e.name.startswith("."):
                    continue
                try:
                    if e.is_file(follow_symlinks=False):
                        box.messages += 1
                        box.bytes += e.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
        if counted:
            box.folders += 1
    return box


def user_maildir_rel(user: str) -> str:
    """Where SME keeps a user's Maildir, relative to the exploded tree."""
    if user == ADMIN:
        return "home/e-smith/Maildir"
    return f"home/e-smith/files/users/{user}/Maildir"


# --------------------------------------------------------------------------- parsing


def _enabled(rec: esmithdb.Record | None) -> bool | None:
    if rec is None:
        return None
    status = rec.props.get("status")
    if status is None:
        return None
    return status.lower() == "enabled"


def _int(s: str | None) -> int | None:
    try:
        return int(s) if s not in (None, "") else None
    except ValueError:
        return None


def _split_list(s: str | None) -> list[str]:
    return [x.strip() for x in (s or "").split(",") if x.strip()]


def load_dbs(tree: Path) -> tuple[dict[str, esmithdb.EsmithDB], list[str]]:
    dbs: dict[str, esmithdb.EsmithDB] = {}
    missing = []
    for name in DB_NAMES:
        p = tree / DB_DIR / name
        if p.is_file():
            try:
                dbs[name] = esmithdb.load(p)
            except OSError as e:
                raise BadInputError(f"cannot read {p}: {e.strerror or e}") from None
        else:
            missing.append(f"{DB_DIR}/{name}")
            dbs[name] = esmithdb.EsmithDB(path=str(p))
    return dbs, missing


def check_tree(tree: str | os.PathLike) -> Path:
    """The exploded tree must exist, be readable, and hold the e-smith databases."""
    p = Path(tree)
    if not p.exists():
        raise BadInputError(f"{p}: no such directory", "explode the backup first: maildirsync-import explode ARCHIVE DIR")
    if not p.is_dir():
        raise BadInputError(f"{p} is not a directory")
    if not os.access(p, os.R_OK | os.X_OK):
        raise BadInputError(f"{p} is not readable", "run as root")
    if not (p / DB_DIR).is_dir():
        try:
            empty = not any(p.iterdir())
        except OSError:
            empty = False
        if empty:
            raise BadInputError(f"{p} is empty", "explode the backup first: maildirsync-import explode ARCHIVE DIR")
        raise BadInputError(
            f"{p} has no {DB_DIR}: it is not an exploded SME/NethService backup, or migration-import "
            "already ran on it (the event moves the files out of the tree)",
            "explode the backup again into an empty directory",
        )
    return p


def _mail_settings(conf: esmithdb.EsmithDB) -> MailSettings:
    services = []
    for name, keys, port in MAIL_SERVICES:
        rec, key = None, None
        for k in keys:
            if k in conf:
                rec, key = conf.get(k), k
                break
        services.append(
            Service(
                name=name,
                key=key,
                enabled=_enabled(rec),
                port=(_int(rec.props.get("TCPPort")) or port) if rec else None,
                access=rec.props.get("access") if rec else None,
                props=dict(rec.props) if rec else {},
            )
        )
    auth = None
    tls = None
    for k in ("qpsmtpd", "smtpd", "uqpsmtpd", "sqpsmtpd"):
        rec = conf.get(k)
        if rec is None:
            continue
        auth = auth or rec.props.get("Authentication") or rec.props.get("SMTPAuth")
        tls = tls or rec.props.get("TLS") or rec.props.get("tls")
    spam = conf.get("spamassassin")
    sort = spam.props.get("SortSpam") if spam else None
    return MailSettings(
        smtp_auth=auth,
        tls=tls,
        services=services,
        spam_filter=_enabled(spam),
        spam_sorting=(sort.lower() == "enabled") if sort else None,
        spam_retention_days=spam.props.get("MessageRetentionTime") if spam else None,
        spam_props=dict(spam.props) if spam else {},
    )


def _resolve_pseudonym(name: str, accounts: esmithdb.EsmithDB) -> str | None:
    seen = set()
    cur = name
    while True:
        if cur in seen:
            return None
        seen.add(cur)
        rec = accounts.get(cur)
        if rec is None:
            return None
        if rec.type != "pseudonym":
            return cur
        cur = rec.props.get("Account", "")
        if not cur:
            return None


def inspect_tree(
    tree: str | os.PathLike,
    dest_root: str = DEFAULT_DEST_ROOT,
    domain: str | None = None,
    passwd: str | None = None,
    packages: bool = True,
) -> Inventory:
    """Read the tree. ``passwd``: a passwd-format file of the destination's users (default: this host's);
    ``packages``: ask rpm which features are installed."""
    root = check_tree(tree)
    dbs, missing = load_dbs(root)
    accounts, conf, domains_db = dbs["accounts"], dbs["configuration"], dbs["domains"]
    domain = domain or conf.value("DomainName")
    inv = Inventory(
        dir=str(root),
        domain=domain,
        system_name=conf.value("SystemName"),
        dest_root=dest_root,
        missing_dbs=missing,
    )
    for m in missing:
        inv.pitfalls.append(Pitfall("missing_db", m, f"{m} is missing: migration-import needs it", blocking=True))
    for name, db in dbs.items():
        for pb in db.problems:
            if pb.kept:
                msg = f"{pb.reason}; read as: {pb.read_as}" if pb.read_as else pb.reason
            else:
                msg = f"{pb.reason}: {pb.text!r} -- not read"
            # An account line that gives no record may be a user, and its mail would go unnoticed.
            inv.pitfalls.append(Pitfall("db_line", f"{DB_DIR}/{name}:{pb.line}", msg,
                                        blocking=not pb.kept and name == "accounts"))  # fmt: skip
    for name, db, known in (("accounts", accounts, predict.ACCOUNT_TYPES), ("domains", domains_db, predict.DOMAIN_TYPES)):
        for rec in db:
            if rec.type not in known:
                near = next((t for t in known if t == rec.type.strip().lower()), None)
                inv.pitfalls.append(Pitfall(
                    "unknown_type", f"{DB_DIR}/{name}:{rec.line}",
                    f"{rec.key!r} has the type {rec.type!r}, which is not one of {', '.join(known)}"
                    + (f" (did you mean {near!r}?)" if near else "") + ": migration-import does not import it",
                ))  # fmt: skip
    if not domain:
        inv.pitfalls.append(
            Pitfall("no_domain", "DomainName", "configuration has no DomainName: pass --domain to name the mail domain",
                    blocking=True)
        )

    # groups first: users list the groups they belong to
    for rec in sorted(accounts.of_type("group"), key=lambda r: r.key):
        inv.groups.append(Group(rec.key, rec.props.get("Description", ""), _split_list(rec.props.get("Members"))))
    member_of: dict[str, list[str]] = {}
    for g in inv.groups:
        for m in g.members:
            member_of.setdefault(m, []).append(g.name)

    user_recs = sorted(accounts.of_type("user"), key=lambda r: r.key)
    admin = accounts.get(ADMIN)
    if admin is not None and admin.type == "system":
        user_recs = [admin] + user_recs
    for rec in user_recs:
        rel = user_maildir_rel(rec.key)
        fwd_mode = rec.props.get("EmailForward")
        fwd_addr = rec.props.get("ForwardAddress") or None
        user = User(
            name=rec.key,
            email=f"{rec.key}@{domain}" if domain else rec.key,
            first_name=rec.props.get("FirstName", ""),
            last_name=rec.props.get("LastName", ""),
            mailbox=scan_maildir(root / rel, rel),
            system=rec.type == "system",
            line=rec.line,
            groups=member_of.get(rec.key, []),
            forward_mode=fwd_mode,
            forward_address=fwd_addr,
        )
        inv.users.append(user)
        if fwd_mode in ("forward", "both"):
            if fwd_addr:
                inv.forwards.append(Forward(rec.key, fwd_mode, fwd_addr))
            else:
                inv.pitfalls.append(
                    Pitfall("forward", rec.key, f"EmailForward is {fwd_mode!r} but ForwardAddress is empty")
                )
    usernames = {u.name for u in inv.users}
    for g in inv.groups:
        for m in g.members:
            if m not in usernames:
                inv.pitfalls.append(Pitfall("group_member", g.name, f"member {m!r} is not a user of this backup"))

    for rec in sorted(accounts.of_type("pseudonym"), key=lambda r: r.key):
        target = rec.props.get("Account", "")
        final = _resolve_pseudonym(rec.key, accounts)
        inv.pseudonyms.append(Pseudonym(rec.key, target, final, rec.props.get("Visible")))
        if final is None:
            inv.pitfalls.append(
                Pitfall("pseudonym", rec.key, f"points to {target!r}, which is not an account of this backup")
            )

    for rec in sorted(domains_db.of_type("domain"), key=lambda r: r.key):
        inv.domains.append(
            Domain(rec.key, rec.key == domain, rec.props.get("Description", ""), rec.props.get("Content", ""))
        )
    if domain and domains_db.records and domain not in domains_db:
        inv.pitfalls.append(Pitfall("domain", domain, "the primary domain is not in the domains database"))

    inv.ibays = sorted(r.key for r in accounts.of_type("ibay"))
    inv.mail = _mail_settings(conf)

    for tdir in TEMPLATE_DIRS:
        base = root / tdir
        if not base.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(base):
            for f in sorted(files):
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                inv.templates.append(
                    Template(
                        rel,
                        tdir.rsplit("/", 1)[1],
                        "not migrated: compare with the NethServer template before copying this fragment",
                    )
                )
    inv.templates.sort(key=lambda t: t.path)

    _features(inv, accounts, conf, packages)
    _pitfalls(inv, root)
    bad_keys = {p.key: p for p in accounts.problems if not p.kept and p.key}
    inv.orphans = predict.orphans(root, accounts, bad_keys, scan_maildir)
    for o in inv.orphans:
        inv.pitfalls.append(Pitfall("orphan_maildir", o.path, f"{plural(o.messages, 'message')}, {human(o.bytes)}: {o.reason}; "
                                    f"{o.todo}", blocking=bool(o.messages)))  # fmt: skip
    if passwd is not None:
        inv.passwd = str(passwd)
    try:
        lookup = predict.passwd_lookup(passwd)
    except OSError as e:
        raise BadInputError(f"cannot read {passwd}: {e.strerror or e}", "give a passwd-format file") from None
    inv.skips = predict.skips(inv, root, lookup)
    for sk in inv.skips:
        if sk.blocking:
            inv.pitfalls.append(Pitfall(sk.kind, sk.user, sk.message, blocking=True))
    if not Path(dest_root).is_dir():
        inv.pitfalls.append(Pitfall("no_dest_root", dest_root, f"the destination mailboxes root {dest_root} does not "
                                    "exist: install nethserver-mail-server (it creates it) before the import",
                                    blocking=True))  # fmt: skip
    return inv


def _features(inv: Inventory, accounts: esmithdb.EsmithDB, conf: esmithdb.EsmithDB, packages: bool) -> None:
    regular = [u for u in inv.users if not u.system]
    if regular or inv.groups:
        inv.features.append(
            Feature("Users and groups", "nethserver-directory", f"{len(regular)} users, {len(inv.groups)} groups")
        )
    with_mail = [u for u in inv.users if u.mailbox.messages]
    if regular or with_mail or inv.pseudonyms:
        inv.features.append(
            Feature(
                "Email",
                "nethserver-mail-server",
                f"{len(with_mail)} mailboxes with mail ({inv.total_messages} messages), "
                f"{len(inv.pseudonyms)} pseudonyms",
            )
        )
    if inv.mail and inv.mail.spam_filter:
        inv.features.append(Feature("Email filter (anti-spam)", "nethserver-mail-filter", "spamassassin is enabled"))
    if inv.ibays:
        inv.features.append(Feature("Shared folders (file server)", "nethserver-samba", f"{len(inv.ibays)} ibays"))
    printers = accounts.of_type("printer")
    if printers:
        inv.features.append(Feature("Printers", "nethserver-cups", f"{len(printers)} printers"))
    if packages:
        have = predict.installed([f.package for f in inv.features])
        for f in inv.features:
            f.installed = have.get(f.package)
            if f.installed is False:
                inv.pitfalls.append(Pitfall("feature_missing", f.package, f"{f.feature} is not installed: "
                                            f"yum install {f.package} (migration.rst: install the features first)",
                                            blocking=True))  # fmt: skip


def _pitfalls(inv: Inventory, root: Path) -> None:
    # (destination Maildirs that already exist are predict.skips' business: expected or not, it tells)
    if (root / "root/.ssh").exists():
        inv.pitfalls.append(
            Pitfall(
                "root_ssh",
                "/root/.ssh",
                "migration-import replaces /root/.ssh with the source's: a key added on this host "
                "(for instance the one maildirsync uses) is removed; add it again after the import",
            )
        )
    for u in inv.users:
        if u.system and u.mailbox.messages:
            inv.pitfalls.append(
                Pitfall(
                    "admin_mailbox",
                    u.name,
                    f"admin's mailbox ({u.mailbox.messages} messages) is not imported by NethServer's "
                    "migration-import (admin is a 'system' account); `maildirsync-import mailboxes` copies it",
                )
            )
        elif not u.system and not u.mailbox.exists:
            inv.pitfalls.append(Pitfall("no_maildir", u.name, f"no Maildir at {u.mailbox.path}"))
    inv.pitfalls.append(
        Pitfall(
            "one_shot",
            inv.dir,
            "migration-import moves files out of this tree: a second run finds nothing; keep the archive",
        )
    )


# --------------------------------------------------------------------------- output


def to_dict(inv: Inventory) -> dict:
    d = asdict(inv)
    d["total_messages"] = inv.total_messages
    d["total_bytes"] = inv.total_bytes
    return d


def to_json(inv: Inventory) -> str:
    return json.dumps(to_dict(inv), indent=2, sort_keys=False)


def _onoff(v: bool | None) -> str:
    return "unknown" if v is None else ("enabled" if v else "disabled")


def render_text(inv: Inventory) -> str:
    out: list[str] = []
    w = out.append
    w(f"Backup in {inv.dir}: system {inv.system_name or '?'}, domain {inv.domain or '?'}")
    w("")
    w(f"Users ({len(inv.users)}; {inv.total_messages} messages, {human(inv.total_bytes)}):")
    if not inv.users:
        w("  (none)")
    width = max([len(u.email) for u in inv.users] + [10])
    for u in inv.users:
        box = u.mailbox
        mail = f"{box.messages:>7} msgs {human(box.bytes):>10} in {box.folders} folder{'s' if box.folders != 1 else ''}" if box.exists else "no Maildir"
        tags = []
        if u.system:
            tags.append("system account")
        if u.groups:
            tags.append("groups: " + ", ".join(u.groups))
        w(f"  {u.email:<{width}}  {mail}" + (f"  ({'; '.join(tags)})" if tags else ""))
    w("")
    w(f"Groups ({len(inv.groups)}):")
    for g in inv.groups:
        w(f"  {g.name}: {', '.join(g.members) or '(no members)'}" + (f"  -- {g.description}" if g.description else ""))
    w("")
    w(f"Pseudonyms ({len(inv.pseudonyms)}):")
    for p in inv.pseudonyms:
        via = "" if p.resolves_to == p.account else f" -> {p.resolves_to or '(dangling)'}"
        w(f"  {p.name} -> {p.account}{via}")
    w("")
    w(f"Domains ({len(inv.domains)}):")
    for d in inv.domains:
        w(f"  {d.name}" + ("  (primary)" if d.primary else ""))
    w("")
    w(f"Forwards ({len(inv.forwards)}):")
    for f in inv.forwards:
        w(f"  {f.user} -> {f.address}" + ("  (and a local copy)" if f.mode == "both" else ""))
    if inv.mail:
        m = inv.mail
        w("")
        w("Mail settings (what client configurations depend on):")
        w(f"  SMTP authentication: {m.smtp_auth or 'not set'}; TLS: {m.tls or 'not set'}")
        for s in m.services:
            if s.key is None:
                w(f"  {s.name:<10} not configured")
            else:
                acc = f", access {s.access}" if s.access else ""
                w(f"  {s.name:<10} {_onoff(s.enabled)}, port {s.port}{acc}")
        w(
            f"  spam filter: {_onoff(m.spam_filter)}; spam sorting: {_onoff(m.spam_sorting)}; "
            f"retention: {m.spam_retention_days + ' days' if m.spam_retention_days else 'not set'}"
        )
    if inv.ibays:
        w("")
        w(f"Ibays ({len(inv.ibays)}): {', '.join(inv.ibays)}")
    w("")
    w(f"Custom templates ({len(inv.templates)}):")
    for t in inv.templates:
        w(f"  WARNING {t.path}: {t.warning}")
    w("")
    w("Install these NethServer features first:")
    for f in inv.features:
        state = {True: "  [installed]", False: "  [NOT INSTALLED]", None: ""}[f.installed]
        w(f"  {f.feature} ({f.package}): {f.reason}{state}")
    w("")
    out.extend(render_orphans(inv))
    w("")
    out.extend(render_skips(inv))
    w("")
    blocking = len(inv.blocking)
    w(f"Pitfalls ({len(inv.pitfalls)}" + (f", {blocking} blocking" if blocking else "") + "):")
    for p in inv.pitfalls:
        w("  " + pitfall_line(p))
    return "\n".join(out) + "\n"


def pitfall_line(p: Pitfall) -> str:
    return f"{'BLOCKING' if p.blocking else 'WARNING'} [{p.kind}] {p.subject}: {p.message}"


def render_orphans(inv: Inventory) -> list[str]:
    out = [f"Maildirs that no user account owns ({len(inv.orphans)}):"]
    if not inv.orphans:
        out.append("  (none: every Maildir of the backup belongs to a user listed above)")
    for o in inv.orphans:
        out.append(f"  {o.path}: {o.messages} msgs, {human(o.bytes)}, {o.folders} folders")
        out.append(f"    {o.reason}")
        out.append(f"    to keep it: {o.todo}")
    return out


def render_skips(inv: Inventory) -> list[str]:
    """What the mail step of migration-import will skip; the users not in passwd in one line when they are
    all of them (the usual case before the import, which creates them)."""
    out = [f"What migration-import will not import (a prediction; passwd: {inv.passwd}):"]
    regular = [u.name for u in inv.users if not u.system]
    nopw = [s.user for s in inv.skips if s.kind == "not_in_passwd"]
    for sk in inv.skips:
        if sk.kind == "not_in_passwd" and regular and len(nopw) == len(regular):
            continue
        tag = "expected" if sk.expected else ("BLOCKING" if sk.blocking else "skip")
        out.append(f"  {tag}: {sk.user}: {sk.message}")
    if regular and len(nopw) == len(regular):
        out.append(f"  note: none of the {len(regular)} users is in this host's passwd yet: the import creates the "
                   "accounts before its mail step; any it cannot create is skipped there with '[ERROR] <user> "
                   "skipped: not found in passwd database', and its mail is not imported")
    if len(out) == 1:
        out.append("  (nothing: every user's mailbox will be imported)")
    return out

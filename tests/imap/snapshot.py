"""What an IMAP client sees of a mailbox, as comparable plain data, taken with stdlib imaplib.

A `MailboxSnapshot` holds the folder list, the subscriptions, and per folder its UIDVALIDITY,
UIDNEXT and, for every UID, the system flags, keywords, INTERNALDATE, RFC822.SIZE and a hash
of the whole message. Snapshots compare with `==`; `diff_snapshots` says what differs.

Taking a snapshot changes nothing a client could see: folders are opened with EXAMINE and
bodies fetched with BODY.PEEK[], so no \\Seen flag is set and no \\Recent flag is consumed.
\\Recent is left out because it belongs to a session, not to the mailbox.
"""
from __future__ import annotations

import hashlib
import imaplib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

# Folder attributes that say whether a folder can hold mail; the others
# (\HasChildren, \Marked, ...) are derived or session-dependent.
_KEPT_ATTRIBUTES = {"\\noselect", "\\nonexistent"}

_LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?P<delim>NIL|"(?:[^"\\]|\\.)*") ?(?P<name>.*)$')
_UID_RE = re.compile(rb"\bUID (\d+)")
_FLAGS_RE = re.compile(rb"\bFLAGS \(([^)]*)\)")
_DATE_RE = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_SIZE_RE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_STATUS_RE = re.compile(rb"\(([^()]*)\)\s*$")


class ImapFailure(AssertionError):
    """The server answered NO/BAD to a command the test relies on."""


@dataclass(frozen=True)
class MessageState:
    uid: int
    flags: tuple[str, ...]      # system flags (\Seen, \Flagged, ...), sorted, without \Recent
    keywords: tuple[str, ...]   # user keywords ($Forwarded, Work, ...), sorted
    internaldate: str           # ISO 8601 in UTC, so servers in other zones still compare
    size: int
    body_sha256: str


@dataclass(frozen=True)
class FolderState:
    name: str
    attributes: tuple[str, ...]
    uidvalidity: int | None = None
    uidnext: int | None = None
    messages: dict[int, MessageState] = field(default_factory=dict)

    def by_hash(self) -> dict[str, MessageState]:
        return {m.body_sha256: m for m in self.messages.values()}


@dataclass(frozen=True)
class MailboxSnapshot:
    user: str
    folders: dict[str, FolderState]
    subscriptions: tuple[str, ...]

    def folder(self, name: str) -> FolderState:
        return self.folders[name]


# -- low-level IMAP helpers --------------------------------------------------------------


def quote(name: str) -> str:
    """An IMAP quoted string; imaplib sends arguments verbatim."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check(result: tuple, what: str) -> list:
    typ, data = result
    if typ != "OK":
        raise ImapFailure(f"IMAP {what} failed: {typ} {data!r}")
    return data


def _unquote(raw: bytes) -> str:
    raw = raw.strip()
    if raw.startswith(b'"') and raw.endswith(b'"'):
        raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return raw.decode("ascii")  # modified UTF-7 names are ASCII on the wire


def _parse_list(data: list) -> list[tuple[str, tuple[str, ...]]]:
    """(name, attributes) from LIST/LSUB data; a name may arrive as a literal (a tuple)."""
    out = []
    for item in data:
        if not item:  # None for an empty answer, b"" for the line closing a literal
            continue
        if isinstance(item, tuple):
            head, literal = item
            m = _LIST_RE.match(head)
            name = literal.decode("ascii")
        else:
            m = _LIST_RE.match(item)
            name = _unquote(m.group("name")) if m else ""
        if m is None:
            raise ImapFailure(f"cannot parse LIST response {item!r}")
        attrs = tuple(sorted(a.decode() for a in m.group("attrs").split()))
        out.append((name, attrs))
    return out


def list_folders(imap: imaplib.IMAP4) -> dict[str, tuple[str, ...]]:
    return dict(_parse_list(check(imap.list('""', '"*"'), "LIST")))


def list_subscriptions(imap: imaplib.IMAP4) -> list[str]:
    return sorted(name for name, _ in _parse_list(check(imap.lsub('""', '"*"'), "LSUB")))


def status(imap: imaplib.IMAP4, folder: str) -> dict[str, int]:
    data = check(imap.status(quote(folder), "(MESSAGES UIDNEXT UIDVALIDITY)"), f"STATUS {folder}")
    # A name sent as a literal arrives as a tuple; the item list follows it.
    m = _STATUS_RE.search(data[-1] if isinstance(data[-1], bytes) else data[-1][-1])
    items = m.group(1).split() if m else []
    return {items[i].decode().upper(): int(items[i + 1]) for i in range(0, len(items), 2)}


def _internaldate_utc(raw: bytes) -> str:
    when = datetime.strptime(raw.decode().strip(), "%d-%b-%Y %H:%M:%S %z")
    return when.astimezone(timezone.utc).isoformat()


def _split_flags(raw: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    words = [w.decode() for w in raw.split()]
    system = sorted(w for w in words if w.startswith("\\") and w.lower() != "\\recent")
    keywords = sorted(w for w in words if not w.startswith("\\"))
    return tuple(system), tuple(keywords)


def _fetch_messages(imap: imaplib.IMAP4) -> dict[int, MessageState]:
    meta: dict[int, tuple] = {}
    for item in check(imap.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)"), "FETCH"):
        line = item[0] if isinstance(item, tuple) else item
        uid, flags, date, size = (r.search(line) for r in (_UID_RE, _FLAGS_RE, _DATE_RE, _SIZE_RE))
        if not (uid and flags and date and size):
            continue  # an unsolicited update, not our answer
        system, keywords = _split_flags(flags.group(1))
        meta[int(uid.group(1))] = (system, keywords, _internaldate_utc(date.group(1)),
                                   int(size.group(1)))
    hashes: dict[int, str] = {}
    for item in check(imap.uid("FETCH", "1:*", "(UID BODY.PEEK[])"), "FETCH BODY"):
        if isinstance(item, tuple) and b"BODY[]" in item[0]:
            uid = _UID_RE.search(item[0])
            if uid is None:
                raise ImapFailure(f"FETCH answer without UID before the body: {item[0]!r}")
            hashes[int(uid.group(1))] = hashlib.sha256(item[1]).hexdigest()
    if set(meta) != set(hashes):
        raise ImapFailure(f"FETCH answers disagree: {sorted(meta)} vs {sorted(hashes)}")
    return {uid: MessageState(uid, *meta[uid], body_sha256=hashes[uid]) for uid in sorted(meta)}


def take_snapshot(imap: imaplib.IMAP4, user: str = "") -> MailboxSnapshot:
    """Everything a client sees of the logged-in user's mailbox; read-only."""
    folders = {}
    for name, attrs in sorted(list_folders(imap).items()):
        kept = tuple(a for a in attrs if a.lower() in _KEPT_ATTRIBUTES)
        if kept:
            folders[name] = FolderState(name, kept)
            continue
        st = status(imap, name)
        check(imap.select(quote(name), readonly=True), f"EXAMINE {name}")
        messages = _fetch_messages(imap) if st.get("MESSAGES") else {}
        imap.close()
        folders[name] = FolderState(name, kept, st.get("UIDVALIDITY"), st.get("UIDNEXT"), messages)
    return MailboxSnapshot(user, folders, tuple(list_subscriptions(imap)))


# -- comparing -----------------------------------------------------------------------------


def diff_snapshots(a: MailboxSnapshot, b: MailboxSnapshot,
                   labels: tuple[str, str] = ("a", "b")) -> list[str]:
    """One readable line per difference; [] when the snapshots are equal."""
    la, lb = labels
    out: list[str] = []
    if a.user != b.user:
        out.append(f"user: {la}={a.user!r} {lb}={b.user!r}")
    for name in sorted(set(a.folders) - set(b.folders)):
        out.append(f"folder {name!r}: only in {la}")
    for name in sorted(set(b.folders) - set(a.folders)):
        out.append(f"folder {name!r}: only in {lb}")
    for sub in sorted(set(a.subscriptions) ^ set(b.subscriptions)):
        out.append(f"subscription {sub!r}: only in {la if sub in a.subscriptions else lb}")
    for name in sorted(set(a.folders) & set(b.folders)):
        fa, fb = a.folders[name], b.folders[name]
        for attr in ("attributes", "uidvalidity", "uidnext"):
            va, vb = getattr(fa, attr), getattr(fb, attr)
            if va != vb:
                out.append(f"folder {name!r} {attr}: {la}={va!r} {lb}={vb!r}")
        for uid in sorted(set(fa.messages) | set(fb.messages)):
            ma, mb = fa.messages.get(uid), fb.messages.get(uid)
            if ma is None or mb is None:
                out.append(f"folder {name!r} uid {uid}: only in {la if mb is None else lb}")
                continue
            for attr in ("flags", "keywords", "internaldate", "size", "body_sha256"):
                va, vb = getattr(ma, attr), getattr(mb, attr)
                if va != vb:
                    out.append(f"folder {name!r} uid {uid} {attr}: {la}={va!r} {lb}={vb!r}")
    return out


def assert_same_mailbox(a: MailboxSnapshot, b: MailboxSnapshot,
                        labels: tuple[str, str] = ("source", "destination")) -> None:
    diff = diff_snapshots(a, b, labels)
    assert not diff, f"{a.user}: mailboxes differ:\n  " + "\n  ".join(diff)
    assert a == b  # the diff covers every field; this guards against it missing one


# -- preparing a mailbox over IMAP ---------------------------------------------------------


def _flag_list(flags=(), keywords=()) -> str:
    return "(" + " ".join([*flags, *keywords]) + ")"


def _uid_command(imap: imaplib.IMAP4, code: str, what: str, *args) -> list[int]:
    """Run a UID-returning command; the numbers of its APPENDUID/COPYUID response code.

    imaplib files response codes, tagged or not, under untagged_responses[code].
    """
    imap.untagged_responses.pop(code, None)
    check(imap._simple_command(*args), what)
    found = imap.untagged_responses.pop(code, None)
    if not found:
        raise ImapFailure(f"{what}: server sent no {code} response code (UIDPLUS)")
    return [int(n) for n in found[-1].split()[1:] if n.isdigit()]


def select(imap: imaplib.IMAP4, folder: str) -> None:
    check(imap.select(quote(folder)), f"SELECT {folder}")


def append(imap: imaplib.IMAP4, folder: str, message: bytes, *, flags=(), keywords=(),
           internaldate: datetime | None = None) -> int:
    """APPEND and return the new UID. `internaldate` must be timezone-aware."""
    imap.untagged_responses.pop("APPENDUID", None)
    flag_arg = _flag_list(flags, keywords) if (flags or keywords) else None
    check(imap.append(quote(folder), flag_arg, internaldate, message), f"APPEND {folder}")
    found = imap.untagged_responses.pop("APPENDUID", None)
    if not found:
        raise ImapFailure(f"APPEND {folder}: server sent no APPENDUID (UIDPLUS)")
    return int(found[-1].split()[1])


def store(imap: imaplib.IMAP4, folder: str, uid: int, *, add=(), remove=()) -> None:
    """Add and remove flags or keywords on one message; `folder` is SELECTed."""
    select(imap, folder)
    if add:
        check(imap.uid("STORE", str(uid), "+FLAGS.SILENT", _flag_list(add)), "STORE +FLAGS")
    if remove:
        check(imap.uid("STORE", str(uid), "-FLAGS.SILENT", _flag_list(remove)), "STORE -FLAGS")


def copy(imap: imaplib.IMAP4, folder: str, uid: int, target: str) -> int:
    select(imap, folder)
    return _uid_command(imap, "COPYUID", f"COPY to {target}", "UID", "COPY", str(uid),
                        quote(target))[-1]


def move(imap: imaplib.IMAP4, folder: str, uid: int, target: str) -> int:
    select(imap, folder)
    return _uid_command(imap, "COPYUID", f"MOVE to {target}", "UID", "MOVE", str(uid),
                        quote(target))[-1]


def expunge(imap: imaplib.IMAP4, folder: str, *uids: int) -> None:
    """Expunge exactly these UIDs (UID EXPUNGE), not every \\Deleted message."""
    select(imap, folder)
    uid_set = ",".join(str(u) for u in uids)
    check(imap.uid("STORE", uid_set, "+FLAGS.SILENT", "(\\Deleted)"), "STORE \\Deleted")
    check(imap.uid("EXPUNGE", uid_set), "UID EXPUNGE")


def create_folder(imap: imaplib.IMAP4, name: str, *, subscribe: bool = False) -> None:
    check(imap.create(quote(name)), f"CREATE {name}")
    if subscribe:
        check(imap.subscribe(quote(name)), f"SUBSCRIBE {name}")


def delete_folder(imap: imaplib.IMAP4, name: str) -> None:
    check(imap.delete(quote(name)), f"DELETE {name}")


def rename_folder(imap: imaplib.IMAP4, old: str, new: str) -> None:
    check(imap.rename(quote(old), quote(new)), f"RENAME {old}")


def subscribe(imap: imaplib.IMAP4, name: str) -> None:
    check(imap.subscribe(quote(name)), f"SUBSCRIBE {name}")


def unsubscribe(imap: imaplib.IMAP4, name: str) -> None:
    check(imap.unsubscribe(quote(name)), f"UNSUBSCRIBE {name}")


def fetch_body(imap: imaplib.IMAP4, folder: str, uid: int) -> bytes:
    """The whole message, without setting \\Seen."""
    check(imap.select(quote(folder), readonly=True), f"EXAMINE {folder}")
    for item in check(imap.uid("FETCH", str(uid), "(BODY.PEEK[])"), "FETCH BODY"):
        if isinstance(item, tuple) and b"BODY[]" in item[0]:
            return item[1]
    raise ImapFailure(f"{folder} uid {uid}: no such message")


def deliver(server, user: str, message: bytes, folder: str = "INBOX") -> int:
    """New mail arriving at `server` for `user`: no flags, so it lands in new/ as \\Recent."""
    with server.connect(user) as imap:
        return append(imap, folder, message)

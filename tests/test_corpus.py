"""The corpus generator and the scenario mutations: realistic, consistent, deterministic."""

from __future__ import annotations

import email.parser
import os
import re
import statistics
from collections import Counter
from pathlib import Path

import pytest
import xxhash

from maildirsync.lab import corpus as C
from maildirsync.lab import scenarios as S

NAME = re.compile(
    r"^(?P<t>\d{10})\.M(?P<usec>\d{1,6})P(?P<pid>\d+)Q(?P<q>\d+)\.(?P<host>[a-z0-9.-]+)"
    r",S=(?P<size>\d+),W=(?P<vsize>\d+)(?::2,(?P<flags>[A-Za-z]*))?$"
)
CACHE = ("dovecot.index", "dovecot.list.index", "dovecot-uidvalidity")


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, int(st.st_mtime), xxhash.xxh3_64_hexdigest(p.read_bytes()))
    return out


def messages(folder: Path) -> dict[str, str]:
    """name -> subdir of every message in a folder."""
    return {n: sub for sub in ("cur", "new") for n in os.listdir(folder / sub)}


def all_folders(root: Path, layout: str) -> list[Path]:
    return [f for md in C.find_maildirs(root, layout).values() for f in C.folders_of(md)]


LINE = re.compile(rb"(\d+) :([^:/\n]+)")  # Dovecot 2.x: "<uid> :<base>", never the flags


def lines_live(folder: Path) -> tuple[int, int]:
    """How many lines the folder's list has, and how many of them name a message on disk."""
    on_disk = {C.base_of(n) for n in messages(folder)}
    entries = C.read_uidlist(folder).entries
    return len(entries), sum(b in on_disk for _, b in entries)


def check_uidlists(root: Path, layout: str) -> None:
    """Every folder's list as Dovecot would leave it: every message numbered once by its base, UIDs
    ascending, lines ``<uid> :<base>``, no compaction overdue, no lock or temporary file left."""
    for folder in all_folders(root, layout):
        data = (folder / "dovecot-uidlist").read_bytes()
        head, _, body = data.partition(b"\n")
        assert re.fullmatch(rb"3 V\d+ N\d+ G[0-9a-f]{32}", head)
        assert all(LINE.fullmatch(line) for line in body.splitlines()), folder
        ul = C.read_uidlist(folder)
        bases = [b for _, b in ul.entries]
        assert {C.base_of(n) for n in messages(folder)} <= set(bases) and len(bases) == len(set(bases)), folder
        uids = [u for u, _ in ul.entries]
        assert uids == sorted(set(uids)) and uids[0] >= 1
        assert re.fullmatch(r"[0-9a-f]{32}", ul.guid)
        assert not C.wants_compaction(*lines_live(folder)), folder
        assert not (folder / "dovecot-uidlist.lock").exists() and not (folder / "dovecot-uidlist.tmp").exists()


def uid_of(root: Path, layout: str) -> dict[tuple[str, str], int]:
    """(folder, base) -> UID of every message on disk."""
    out = {}
    for folder in all_folders(root, layout):
        on_disk = {C.base_of(n) for n in messages(folder)}
        out.update({(str(folder), b): uid for uid, b in C.read_uidlist(folder).entries if b in on_disk})
    return out


def uidlist_files(root: Path, layout: str) -> dict[str, tuple[int, bytes]]:
    """folder -> (inode, bytes) of its dovecot-uidlist."""
    return {str(f): ((f / "dovecot-uidlist").stat().st_ino, (f / "dovecot-uidlist").read_bytes())
            for f in all_folders(root, layout)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> C.Corpus:
    return C.generate(tmp_path_factory.mktemp("tiny"), C.spec_for("tiny", layout="sme8"))


def test_same_seed_same_tree_whatever_the_workers(tmp_path):
    spec = C.spec_for("tiny", messages=30)
    a = C.generate(tmp_path / "a", spec, processes=1)
    b = C.generate(tmp_path / "b", spec, processes=3)
    other = C.generate(tmp_path / "c", C.spec_for("tiny", messages=30, seed=2), processes=1)
    assert snapshot(a.root) == snapshot(b.root)
    assert a.messages == 3 * 3 * 30 and (a.messages, a.bytes) == (b.messages, b.bytes)
    assert snapshot(a.root) != snapshot(other.root)


def test_sme8_and_plain_layouts(tmp_path, tiny):
    base = tiny.root
    assert tiny.maildirs["admin"] == base / "home/e-smith/Maildir"
    users = [u for u in tiny.maildirs if u != "admin"]
    assert len(users) == 2
    for u in users:
        assert tiny.maildirs[u] == base / "home/e-smith/files/users" / u / "Maildir"
    assert C.find_maildirs(base, "sme8") == tiny.maildirs
    plain = C.generate(tmp_path / "p", C.spec_for("tiny", users=2, folders=1, messages=5))
    assert sorted(os.listdir(plain.root)) == sorted(plain.maildirs)
    assert all(md == plain.root / u / "Maildir" for u, md in plain.maildirs.items())


def test_names_sizes_mtimes_and_flags_are_realistic(tiny):
    seen_new = seen_cur = 0
    for folder in all_folders(tiny.root, "sme8"):
        keywords = len((folder / "dovecot-keywords").read_text().splitlines()) if (folder / "dovecot-keywords").exists() else 0
        for name, sub in messages(folder).items():
            m = NAME.match(name)
            assert m, name
            data = (folder / sub / name).read_bytes()
            assert int(m["size"]) == len(data)
            assert int(m["vsize"]) == len(data) + data.count(b"\n")
            assert int((folder / sub / name).stat().st_mtime) == int(m["t"])
            if sub == "new":
                seen_new += 1
                assert m["flags"] is None
            else:
                seen_cur += 1
                flags = m["flags"]
                assert flags == "".join(sorted(set(flags)))
                assert set(flags) <= set("DFPRST") | {chr(ord("a") + i) for i in range(keywords)}
            msg = email.parser.BytesParser().parsebytes(data, headersonly=True)
            assert msg["Message-ID"] and msg["From"] and msg["Date"] and msg["Subject"]
    assert seen_cur > 0
    assert seen_new <= 0.05 * (seen_new + seen_cur)


def test_control_and_cache_files(tiny):
    for user, md in tiny.maildirs.items():
        folders = C.folders_of(md)
        assert [f.name for f in folders[1:]] == [".Drafts", ".Sent"]
        assert (md / "subscriptions").read_text().split() == ["Sent", "Drafts"]
        assert not (md / "maildirfolder").exists()
        for f in folders:
            for sub in ("cur", "new", "tmp"):
                assert (f / sub).is_dir()
            assert (f / "maildirfolder").exists() == (f != md)
            for cache in ("dovecot.index", "dovecot.index.cache", "dovecot.index.log"):
                assert (f / cache).stat().st_size > 0
    check_uidlists(tiny.root, "sme8")


def test_size_distribution(tmp_path):
    corpus = C.generate(tmp_path / "s", C.spec_for("tiny", users=2, folders=2, messages=500, big_fraction=0.01))
    sizes = [(f / sub / n).stat().st_size for f in all_folders(corpus.root, "plain") for n, sub in messages(f).items()]
    median = statistics.median(sizes)
    assert 4 * 1024 <= median <= 6 * 1024
    assert max(sizes) >= 1024 * 1024  # the long tail: attachments of several MiB
    assert statistics.quantiles(sizes, n=20)[-1] > 3 * median


def _bases(root: Path, layout: str) -> dict[str, Counter]:
    return {u: Counter(C.base_of(n) for f in C.folders_of(md) for n in messages(f))
            for u, md in C.find_maildirs(root, layout).items()}


def test_named_sizes_carry_the_history_dovecot_leaves_in_the_uidlist(tmp_path):
    """Lines of expunged messages not compacted yet, and lists appended to since their header was written
    (its N behind the last line); a bare CorpusSpec has neither. Both are still valid lists."""
    spec = C.spec_for("tiny", messages=200)
    assert spec.stale_lines > 0
    root = C.generate(tmp_path / "named", spec).root
    stale = sum(n - live for n, live in map(lines_live, all_folders(root, "plain")))
    behind = sum(C.read_uidlist(f).nextuid < C.read_uidlist(f).next_uid for f in all_folders(root, "plain"))
    assert stale > 0 and behind > 0
    check_uidlists(root, "plain")
    bare = C.generate(tmp_path / "bare", C.CorpusSpec(users=3, folders=3, messages=200))
    for f in all_folders(bare.root, "plain"):
        lines, live = lines_live(f)
        ul = C.read_uidlist(f)
        assert lines == live and ul.nextuid == ul.next_uid == ul.entries[-1][0] + 1


@pytest.mark.parametrize("lines, live, compact", [
    (0, 0, False),  # an empty list: nothing to drop
    (100, 100, False),
    (100, 76, False),  # 24 % stale: left as it is
    (100, 75, True),  # a quarter stale: recreated
    (101, 75, True),
    (3, 2, True),  # Dovecot's integer arithmetic: 3 * 75 / 100 = 2
    (4, 3, True),
    (5, 4, False),
])
def test_compaction_threshold_is_dovecots(lines, live, compact):
    assert C.wants_compaction(lines, live) is compact


@pytest.fixture
def source(tmp_path) -> Path:
    """A tiny tree with Dovecot's history in its lists (stale lines, appended lists)."""
    return C.generate(tmp_path / "src", C.spec_for("tiny", messages=100, layout="sme8")).root


def test_flag_changes_are_renames_only(source):
    before, lists, uids = snapshot(source), uidlist_files(source, "sme8"), uid_of(source, "sme8")
    bases = _bases(source, "sme8")
    total = sum(sum(c.values()) for c in bases.values())
    m = S.apply("flags", source, "sme8", seed=1, step=2, uidlists="dovecot")
    assert m.flag_changes >= 0.09 * total and m.new_to_cur > 0
    assert m.uidlists_rewritten == m.uidlists_appended == 0
    assert uidlist_files(source, "sme8") == lists  # same inode, same bytes: lines are bases
    assert uid_of(source, "sme8") == uids and _bases(source, "sme8") == bases
    after = snapshot(source)
    mtimes = lambda snap: {Path(p).name.split(":")[0]: v[1] for p, v in snap.items() if NAME.match(Path(p).name)}  # noqa: E731
    assert mtimes(after) == mtimes(before)  # a rename never touches INTERNALDATE
    logs = [p for p in before if p.endswith("dovecot.index.log") and after[p][0] > before[p][0]]
    assert len(logs) == m.index_logs_grown > 0
    check_uidlists(source, "sme8")


def test_deliveries_append_to_the_same_list(source):
    lists, uids = uidlist_files(source, "sme8"), uid_of(source, "sme8")
    nexts = {str(f): C.read_uidlist(f).next_uid for f in all_folders(source, "sme8")}
    m = S.apply("new", source, "sme8", seed=1, step=1, uidlists="dovecot")
    total = sum(1 for _ in uids)
    assert m.added == round(total * 0.01) and m.uidlists_rewritten == 0 and m.uidlists_appended > 0
    now = uidlist_files(source, "sme8")
    grown = {f for f in now if now[f] != lists[f]}
    assert len(grown) == m.uidlists_appended
    new_uids = {k: v for k, v in uid_of(source, "sme8").items() if k not in uids}
    assert len(new_uids) == m.added
    for f in grown:
        ino, data = now[f]
        assert ino == lists[f][0] and data.startswith(lists[f][1])  # the header and every line kept
        tail = [LINE.fullmatch(line) for line in data[len(lists[f][1]):].splitlines()]
        assert [int(t[1]) for t in tail] == list(range(nexts[f], nexts[f] + len(tail)))
        assert {t[2].decode() for t in tail} == {b for (folder, b) in new_uids if folder == f}
    assert {k: v for k, v in uid_of(source, "sme8").items() if k in uids} == uids
    check_uidlists(source, "sme8")


def test_expunges_leave_their_lines_until_a_quarter_is_stale(source):
    lists, uids = uidlist_files(source, "sme8"), uid_of(source, "sme8")
    m = S.apply("deleted", source, "sme8", seed=1, step=4, uidlists="dovecot")
    assert m.deleted == round(len(uids) * 0.01)
    assert m.uidlists_rewritten == m.uidlists_appended == 0
    assert uidlist_files(source, "sme8") == lists  # the lines stay: Dovecot does not rewrite for an expunge
    now = uid_of(source, "sme8")
    assert len(now) == len(uids) - m.deleted and all(uids[k] == v for k, v in now.items())
    check_uidlists(source, "sme8")

    m = S.apply("deleted", source, "sme8", seed=1, step=5, fraction=0.3, uidlists="dovecot")
    assert m.uidlists_rewritten > 0 and m.stale_lines_dropped > 0
    after = uidlist_files(source, "sme8")
    for folder in all_folders(source, "sme8"):
        ino, data = after[str(folder)]
        lines, live = lines_live(folder)
        if ino != lists[str(folder)][0]:  # recreated: only the messages still there, the next UID kept
            assert lines == live
            assert C.read_uidlist(folder).nextuid == C.Uidlist.loads(lists[str(folder)][1]).next_uid
        else:
            assert data == lists[str(folder)][1]
    assert all(uids[k] == v for k, v in uid_of(source, "sme8").items())  # nobody renumbered
    check_uidlists(source, "sme8")


def test_moves_keep_the_base_append_at_the_destination_and_leave_a_stale_line(source):
    lists, uids, bases = uidlist_files(source, "sme8"), uid_of(source, "sme8"), _bases(source, "sme8")
    in_new = sum(len(os.listdir(f / "new")) for f in all_folders(source, "sme8"))
    m = S.apply("moved", source, "sme8", seed=1, step=3, uidlists="dovecot")
    assert m.moved == round(len(uids) * 0.01) and m.uidlists_appended > 0
    assert _bases(source, "sme8") == bases  # per user, same bases: moves keep them
    assert sum(len(os.listdir(f / "new")) for f in all_folders(source, "sme8")) <= in_new
    now = uid_of(source, "sme8")
    arrived = {k: v for k, v in now.items() if k not in uids}
    assert len(arrived) == m.moved
    for (folder, base), uid in arrived.items():
        old = C.Uidlist.loads(lists[folder][1])
        assert uid >= old.next_uid  # a new UID in its new folder
        (left,) = [k for k in uids if k[1] == base and k[0] != folder]
        assert base in {b for _, b in C.read_uidlist(Path(left[0])).entries}  # its old line is still there
    check_uidlists(source, "sme8")


def test_churn_compacts_every_list_and_changes_no_message(source):
    S.apply("deleted", source, "sme8", seed=1, step=4, uidlists="dovecot")  # stale lines to drop
    pre, lists, uids = snapshot(source), uidlist_files(source, "sme8"), uid_of(source, "sme8")
    nexts = {str(f): C.read_uidlist(f).next_uid for f in all_folders(source, "sme8")}
    stale = sum(n - live for n, live in map(lines_live, all_folders(source, "sme8")))
    m = S.apply("churn", source, "sme8", seed=1, step=5, uidlists="dovecot")
    post = snapshot(source)
    assert m.uidlists_rewritten == len(lists) and m.stale_lines_dropped == stale > 0
    after = uidlist_files(source, "sme8")
    for folder in all_folders(source, "sme8"):
        assert after[str(folder)][0] != lists[str(folder)][0]  # a new file
        lines, live = lines_live(folder)
        assert lines == live and C.read_uidlist(folder).nextuid == nexts[str(folder)]
    assert uid_of(source, "sme8") == uids
    assert {p: v for p, v in pre.items() if NAME.match(Path(p).name)} == {
        p: v for p, v in post.items() if NAME.match(Path(p).name)}
    logs = [p for p in pre if p.endswith("dovecot.index.log")]
    assert logs and all(post[p][0] > pre[p][0] for p in logs)
    check_uidlists(source, "sme8")


def test_rewrite_mode_recreates_every_touched_list_with_exactly_its_messages(tmp_path):
    """The engine's tests' simplification: no stale line, the header up to date, after every scenario."""
    root = C.generate(tmp_path / "src", C.CorpusSpec(users=2, folders=3, messages=40, layout="sme8")).root
    for step, scenario in enumerate(S.SCENARIOS):
        lists = uidlist_files(root, "sme8")
        m = S.apply(scenario, root, "sme8", seed=1, step=step, fraction=0.2)
        assert m.uidlists_appended == 0 and m.uidlists_rewritten == len(m.touched)
        now = uidlist_files(root, "sme8")
        assert {f for f in now if now[f][0] != lists[f][0]} == {str(f) for f in m.touched}
        for folder in all_folders(root, "sme8"):
            lines, live = lines_live(folder)
            ul = C.read_uidlist(folder)
            assert lines == live == len(messages(folder))
            assert ul.nextuid == ul.next_uid
        check_uidlists(root, "sme8")


def test_nochange_changes_nothing(source):
    before = snapshot(source)
    assert S.apply("nochange", source, "sme8").as_dict()["uidlists_rewritten"] == 0
    assert snapshot(source) == before


def test_scenarios_are_deterministic(tmp_path):
    spec = C.spec_for("tiny", messages=50)
    roots = [C.generate(tmp_path / d, spec).root for d in ("a", "b")]
    for step, scenario in enumerate(S.SCENARIOS):
        results = [S.apply(scenario, r, "plain", seed=7, step=step, uidlists="dovecot").as_dict() for r in roots]
        assert results[0] == results[1]
    a, b = snapshot(roots[0]), snapshot(roots[1])
    # Rewritten control files carry the time of the rewrite; everything else must match exactly.
    assert {p: v[::2] for p, v in a.items()} == {p: v[::2] for p, v in b.items()}
    assert {p: v for p, v in a.items() if NAME.match(Path(p).name)} == {
        p: v for p, v in b.items() if NAME.match(Path(p).name)}

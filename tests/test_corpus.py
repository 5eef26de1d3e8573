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


def check_uidlists(root: Path, layout: str) -> None:
    for folder in all_folders(root, layout):
        ul = C.read_uidlist(folder)
        names = [n for _, n in ul.entries]
        assert sorted(names) == sorted(messages(folder)), folder
        uids = [u for u, _ in ul.entries]
        assert uids == sorted(set(uids)) and uids[0] >= 1
        assert ul.nextuid > uids[-1]
        assert re.fullmatch(r"[0-9a-f]{32}", ul.guid)
        head = (folder / "dovecot-uidlist").read_bytes().split(b"\n", 1)[0]
        assert re.fullmatch(rb"3 V\d+ N\d+ G[0-9a-f]{32}", head)


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


def test_scenarios_keep_uidlists_consistent_and_bases_on_renames(tmp_path):
    spec = C.spec_for("tiny", messages=100, layout="sme8")
    corpus = C.generate(tmp_path / "src", spec)
    root = corpus.root
    before = snapshot(root)
    total = corpus.messages

    assert S.apply("nochange", root, "sme8").as_dict()["uidlists_rewritten"] == 0
    assert snapshot(root) == before

    m = S.apply("new", root, "sme8", seed=1, step=1)
    assert m.added == round(total * 0.01)
    check_uidlists(root, "sme8")
    new_names = [n for p in snapshot(root) if p not in before for n in [Path(p).name] if NAME.match(n)]
    assert len(new_names) == m.added
    total += m.added

    bases = _bases(root, "sme8")
    mtimes = {Path(p).name.split(":")[0]: v[1] for p, v in snapshot(root).items() if NAME.match(Path(p).name)}
    m = S.apply("flags", root, "sme8", seed=1, step=2)
    assert m.flag_changes >= 0.09 * total
    check_uidlists(root, "sme8")
    assert _bases(root, "sme8") == bases
    after = {Path(p).name.split(":")[0]: v[1] for p, v in snapshot(root).items() if NAME.match(Path(p).name)}
    assert after == mtimes  # a rename never touches INTERNALDATE

    in_new = sum(len(os.listdir(f / "new")) for f in all_folders(root, "sme8"))
    m = S.apply("moved", root, "sme8", seed=1, step=3)
    assert m.moved == round(total * 0.01)
    check_uidlists(root, "sme8")
    assert _bases(root, "sme8") == bases  # per user, same bases: moves keep them
    assert sum(len(os.listdir(f / "new")) for f in all_folders(root, "sme8")) <= in_new

    m = S.apply("deleted", root, "sme8", seed=1, step=4)
    assert m.deleted == round(total * 0.01)
    check_uidlists(root, "sme8")
    assert sum(sum(c.values()) for c in _bases(root, "sme8").values()) == total - m.deleted

    pre = snapshot(root)
    m = S.apply("churn", root, "sme8", seed=1, step=5)
    post = snapshot(root)
    check_uidlists(root, "sme8")
    assert {p: v for p, v in pre.items() if NAME.match(Path(p).name)} == {
        p: v for p, v in post.items() if NAME.match(Path(p).name)}
    logs = [p for p in pre if p.endswith("dovecot.index.log")]
    assert logs and all(post[p][0] > pre[p][0] for p in logs)
    uidlists = [p for p in pre if p.endswith("dovecot-uidlist")]
    assert all(post[p][2] == pre[p][2] for p in uidlists)  # rewritten, same content


def test_scenarios_are_deterministic(tmp_path):
    spec = C.spec_for("tiny", messages=50)
    roots = [C.generate(tmp_path / d, spec).root for d in ("a", "b")]
    for step, scenario in enumerate(S.SCENARIOS):
        results = [S.apply(scenario, r, "plain", seed=7, step=step).as_dict() for r in roots]
        assert results[0] == results[1]
    a, b = snapshot(roots[0]), snapshot(roots[1])
    # Rewritten control files carry the time of the rewrite; everything else must match exactly.
    assert {p: v[::2] for p, v in a.items()} == {p: v[::2] for p, v in b.items()}
    assert {p: v for p, v in a.items() if NAME.match(Path(p).name)} == {
        p: v for p, v in b.items() if NAME.match(Path(p).name)}

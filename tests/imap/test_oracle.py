"""The re-sync oracle of the end-to-end test, proven on two known outcomes without the engine:
the changes replayed by hand over IMAP (what a correct sync yields) pass it, and the old
`sync_maildirs.sh` (`rsync -r -l -t --delete`) fails it for the reasons DESIGN.md §1 gives."""
from __future__ import annotations

import shutil
import subprocess
from datetime import datetime

import pytest

from . import snapshot as s
from .dovecot import chown_tree, ensure_mail_user
from .oracle import check_after_resync, selectable
from .scenario import USERS, keep_changing_source, prepare_all, snapshot_all, work_on_destination


@pytest.fixture
def switched(dovecot_tmp, start_dovecot):
    """Source and destination after a perfect first sync (`cp -a`) and a day of use on both."""
    src_root, dst_root = dovecot_tmp / "src", dovecot_tmp / "dst"
    src = start_dovecot("src", src_root)
    prepared = prepare_all(src)
    subprocess.run(["cp", "-a", str(src_root), str(dst_root)], check=True)
    dst = start_dovecot("dst", dst_root)
    s1, d1 = snapshot_all(src), snapshot_all(dst)
    work_on_destination(dst, prepared)
    d_switch = snapshot_all(dst)
    keep_changing_source(src, prepared)
    s2 = snapshot_all(src)
    return src, dst, (d1, d_switch, s1, s2)


def _problems(snaps, d2) -> list[str]:
    d1, d_switch, s1, s2 = snaps
    out = []
    for user in USERS:
        out += check_after_resync(user, d1[user], d_switch[user], s1[user], s2[user], d2[user])
    return out


def _replay(src, dst, snaps) -> None:
    """Apply the source's changes to the destination as a client would, rule by rule."""
    d1, d_switch, s1, s2 = snaps
    empty = s.FolderState("", ())
    for user in USERS:
        with src.connect(user) as si, dst.connect(user) as di:
            for name, folder in selectable(s2[user]).items():
                if name not in d_switch[user].folders:
                    s.create_folder(di, name)
                base = s1[user].folders.get(name, empty).by_hash()
                now = d_switch[user].folders.get(name, empty).by_hash()
                was = d1[user].folders.get(name, empty).by_hash()
                for h, m in folder.by_hash().items():
                    if h not in base:
                        s.append(di, name, s.fetch_body(si, name, m.uid), flags=m.flags,
                                 keywords=m.keywords,
                                 internaldate=datetime.fromisoformat(m.internaldate))
                    elif h in now:
                        old, new = {*base[h].flags, *base[h].keywords}, {*m.flags, *m.keywords}
                        s.store(di, name, now[h].uid, add=sorted(new - old),
                                remove=sorted(old - new))
                for h in set(base) - set(folder.by_hash()):
                    if h in now and (was[h].flags, was[h].keywords) == (now[h].flags,
                                                                       now[h].keywords):
                        s.expunge(di, name, now[h].uid)
            for name in set(s2[user].subscriptions) - set(d_switch[user].subscriptions):
                s.subscribe(di, name)


def test_oracle_accepts_a_correct_resync(switched):
    src, dst, snaps = switched
    _replay(src, dst, snaps)
    assert _problems(snaps, snapshot_all(dst)) == []
    assert src.log_problems() == [] and dst.log_problems() == []


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_oracle_rejects_the_old_rsync_delete_script(switched):
    src, dst, snaps = switched
    _, uid, gid = ensure_mail_user()
    for user in USERS:
        subprocess.run(["rsync", "-r", "-l", "-t", "--delete", f"{src.maildir(user)}/",
                        f"{dst.maildir(user)}/"], check=True)
    chown_tree(dst.mail_root, uid, gid)
    problems = "\n".join(_problems(snaps, snapshot_all(dst)))
    # Mail delivered after the switch is deleted, expunged mail comes back, flags revert.
    assert "INBOX: lost message" in problems, problems
    assert "Sent: lost message" in problems, problems
    assert "(resurrected or not deleted)" in problems, problems
    assert "(flags, keywords, date, size)" in problems, problems
    assert "alice: subscriptions" in problems, problems

"""kill -9 inside the mailbox store (MOAT_FAILPOINT): during moatd's local
delivery, during an APPEND (moatctl mailbox append) and during an EXPUNGE
(moatctl mailbox expunge). After a restart every message that got 250 is in
the mailbox at least once, none is torn, UIDs are unique and ascending, and
UIDVALIDITY is unchanged (SECURITY.md: the store loses at most the message
in flight)."""
from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from moatlib import make_message, send_parallel, token, wait_until

LOCAL = "local.test"
USER = f"alice@{LOCAL}"
N = 12
KILL_AT = 4


def body_for(tok: str) -> bytes:
    line = f"{tok} 0123456789abcdefghijklmnopqrstuvwxyz\r\n".encode()
    return line * 300 + f"END-OF-{tok}\r\n".encode()


def messages(m, box: str = "INBOX") -> list[int]:
    r = m.ctl("mailbox", "messages", USER, box, check=True)
    return [int(line.split()[0]) for line in r.stdout_text.splitlines()[1:]]


def fetch(m, uid: int) -> bytes:
    return m.ctl("mailbox", "fetch", USER, "INBOX", str(uid), check=True).stdout


def status(m) -> dict:
    r = m.ctl("mailbox", "list", USER, check=True)
    for line in r.stdout_text.splitlines()[1:]:
        f = line.split()
        if f[0] == "INBOX":
            return {"messages": int(f[2]), "uidvalidity": int(f[5]), "uidnext": int(f[6])}
    raise AssertionError(r.stdout_text)


def ctl_killed(m, *args: str, point: str, input: bytes | None = None) -> int:
    """Runs moatctl with a failpoint armed; returns its exit status."""
    env = dict(os.environ, MOAT_FAILPOINT=point)
    r = subprocess.run([str(m.moatctl_bin), "--config", str(m.config_path), *args], input=input,
                       capture_output=True, env=env, timeout=30)
    return r.returncode


def check_intact(m, toks: list[str]):
    uids = messages(m)
    assert uids == sorted(set(uids)), f"UIDs not unique and ascending: {uids}"
    seen = []
    for uid in uids:
        data = fetch(m, uid)
        tok = data.split(b"END-OF-")[-1][:16].decode(errors="replace")
        assert data.endswith(f"END-OF-{tok}\r\n".encode()), f"UID {uid} is torn"
        assert data.count(f"{tok} 0123".encode()) == 300, f"UID {uid} is torn"
        seen.append(tok)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("point", ["store.body.before_fsync", "store.body.after_rename", "store.index.torn",
                                   "store.index.after_fsync"])
def test_kill9_during_local_delivery(make_moatd, point):
    m = make_moatd(overrides={"local": {"domains": [LOCAL]}}, start=False)
    m.start()
    m.add_user(USER, "pw")
    m.stop()
    m.start(env={"MOAT_FAILPOINT": f"{point}=kill@{KILL_AT}"})
    toks = [token() for _ in range(N)]

    def send_one(i):
        with m.smtp() as s:
            s.ehlo("crash.test")
            s.mail("sender@sender.test")
            s.rcpt(USER)
            return s.data(make_message(toks[i], rcpt=USER, body=body_for(toks[i])))

    results = send_parallel(send_one, N, threads=3, timeout=90)
    accepted = {toks[i] for i, r in enumerate(results) if isinstance(r, tuple) and r[0] == 250}
    assert m.wait_exit(timeout=60) == -signal.SIGKILL, m.log_tail()
    validity = status(m)["uidvalidity"]
    m.start()  # no failpoint: the queue delivers what is left
    wait_until(lambda: accepted <= set(check_intact(m, toks)), 30, "every accepted message in the mailbox")
    assert status(m)["uidvalidity"] == validity


def test_kill9_during_append_keeps_the_rest(make_moatd):
    m = make_moatd(overrides={"local": {"domains": [LOCAL]}})
    m.add_user(USER, "pw")
    toks = [token() for _ in range(3)]
    for t in toks[:2]:
        m.ctl("mailbox", "append", USER, "INBOX", input=make_message(t, body=body_for(t)), check=True)
    before = status(m)
    for point in ("store.body.before_fsync", "store.body.after_rename", "store.index.torn"):
        rc = ctl_killed(m, "mailbox", "append", USER, "INBOX", point=f"{point}=kill",
                        input=make_message(toks[2], body=body_for(toks[2])))
        assert rc == -signal.SIGKILL, point
        assert check_intact(m, toks) == toks[:2], point
        assert status(m)["uidvalidity"] == before["uidvalidity"]
    # The next APPEND works and gets a fresh UID above the others.
    r = m.ctl("mailbox", "append", USER, "INBOX", input=make_message(toks[2], body=body_for(toks[2])), check=True)
    assert int(r.stdout_text) >= before["uidnext"]
    assert check_intact(m, toks) == toks


def test_kill9_during_expunge(make_moatd):
    m = make_moatd(overrides={"local": {"domains": [LOCAL]}})
    m.add_user(USER, "pw")
    toks = [token() for _ in range(4)]
    for t in toks:
        m.ctl("mailbox", "append", USER, "INBOX", input=make_message(t, body=body_for(t)), check=True)
    validity = status(m)["uidvalidity"]
    # 1st index write: \Deleted flags; 2nd: the expunge record, killed half-way.
    assert ctl_killed(m, "mailbox", "expunge", USER, "INBOX", "2:3", point="store.index.torn=kill@2") == -signal.SIGKILL
    assert check_intact(m, toks) == toks            # the expunge did not happen ...
    assert messages(m) == [1, 2, 3, 4]
    assert ctl_killed(m, "mailbox", "expunge", USER, "INBOX", "2", point="store.expunge.before_write=kill") \
        == -signal.SIGKILL
    assert messages(m) == [1, 2, 3, 4]
    # ... and works once run to the end; the store is consistent.
    out = m.ctl("mailbox", "expunge", USER, "INBOX", "2:3", check=True).stdout_text.split()
    assert out == ["2", "3"]
    assert check_intact(m, toks) == [toks[0], toks[3]]
    assert status(m)["uidvalidity"] == validity
    # With moatd running too (it has the index open): compaction and new mail.
    m.ctl("mailbox", "compact", check=True)
    tok = token()
    m.send(make_message(tok, rcpt=USER, body=body_for(tok)), rcpts=(USER,))
    wait_until(lambda: len(messages(m)) == 3, 20, "delivery after compaction")
    assert messages(m) == [1, 4, 5]

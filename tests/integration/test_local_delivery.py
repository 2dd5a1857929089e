"""Local delivery (issue 5): mail for [local] domains lands in moat's mailbox
store, checked with `moatctl mailbox`. Users, aliases, catch-alls, quotas
and run-time domains come from moatctl user|alias|domain (docs/store.md)."""
from __future__ import annotations

import re
import smtplib

import pytest

from moatlib import make_message, send_parallel, token, wait_until

LOCAL = "local.test"


@pytest.fixture
def local_moatd(make_moatd):
    m = make_moatd(overrides={"local": {"domains": [LOCAL]}})
    for user in ("alice", "bob"):
        m.add_user(f"{user}@{LOCAL}", "secret-" + user)
    return m


def mailbox(m, user: str, box: str = "INBOX") -> list[dict]:
    """`moatctl mailbox messages` as a list of {uid, size, guid, flags}."""
    r = m.ctl("mailbox", "messages", user, box, check=True)
    rows = []
    for line in r.stdout_text.splitlines()[1:]:
        uid, size, _date, guid, flags = line.split(None, 4)
        rows.append({"uid": int(uid), "size": int(size), "guid": guid, "flags": flags})
    return rows


def fetch(m, user: str, uid: int, box: str = "INBOX") -> bytes:
    return m.ctl("mailbox", "fetch", user, box, str(uid), check=True).stdout


def wait_messages(m, user: str, n: int, box: str = "INBOX", timeout: float = 20.0) -> list[dict]:
    wait_until(lambda: len(mailbox(m, user, box)) >= n, timeout, f"{n} message(s) in {user}/{box}")
    return mailbox(m, user, box)


def test_new_user_has_the_default_mailboxes(local_moatd):
    r = local_moatd.ctl("mailbox", "list", f"alice@{LOCAL}", check=True)
    names = [line.split()[0] for line in r.stdout_text.splitlines()[1:]]
    assert names == ["INBOX", "Drafts", "Junk", "Sent", "Trash"]
    assert "\\Junk" in r.stdout_text and "\\Sent" in r.stdout_text


def test_message_lands_byte_for_byte(local_moatd):
    m = local_moatd
    tok = token()
    msg = make_message(tok, rcpt=f"alice@{LOCAL}", body=b"line one\r\n..dot line\r\n\r\nlast\r\n")
    m.send(msg, rcpts=(f"alice@{LOCAL}",))
    rows = wait_messages(m, f"alice@{LOCAL}", 1)
    stored = fetch(m, f"alice@{LOCAL}", rows[0]["uid"])
    assert rows[0]["size"] == len(stored)
    # Our trace fields on top (RFC 5321 §4.4), then exactly the bytes sent.
    assert stored.startswith(b"Return-Path: <sender@sender.test>\r\nReceived: ")
    assert stored.endswith(msg)
    head = stored[: len(stored) - len(msg)]
    assert all(re.match(rb"^(Return-Path|Received|Authentication-Results|[ \t])", l) for l in head.split(b"\r\n") if l)
    assert "status=sent" in m.log_text() and "relay=local" in m.log_text()


def test_unknown_local_user_is_refused_at_rcpt(local_moatd):
    with local_moatd.smtp() as s:
        s.ehlo("client.test")
        s.mail("sender@sender.test")
        code, text = s.rcpt(f"nobody@{LOCAL}")
        assert code == 550 and b"5.1.1" in text
        code, _ = s.rcpt(f"bob@{LOCAL}")
        assert code == 250


def test_one_body_for_many_recipients_and_aliases(local_moatd):
    m = local_moatd
    m.ctl("alias", "add", f"team@{LOCAL}", f"alice@{LOCAL}", check=True)
    m.ctl("alias", "add", f"team@{LOCAL}", f"bob@{LOCAL}", check=True)
    before = m.ctl("mailbox", "usage", check=True).stdout_text
    tok = token()
    msg = make_message(tok, rcpt=f"team@{LOCAL}", body=(b"x" * 70 + b"\r\n") * 300)
    m.send(msg, rcpts=(f"alice@{LOCAL}", f"team@{LOCAL}", f"Bob+news@{LOCAL}"))
    a = wait_messages(m, f"alice@{LOCAL}", 1)
    b = wait_messages(m, f"bob@{LOCAL}", 1)
    assert len(a) == 1 and len(b) == 1          # each user once, though named twice
    assert a[0]["guid"] == b[0]["guid"]          # the same body file
    assert fetch(m, f"alice@{LOCAL}", 1) == fetch(m, f"bob@{LOCAL}", 1)
    bodies = lambda text: int(re.search(r"in (\d+) bodies", text).group(1))
    assert bodies(m.ctl("mailbox", "usage", check=True).stdout_text) == bodies(before) + 1


def test_catch_all_and_runtime_domain(local_moatd):
    m = local_moatd
    m.ctl("domain", "add", "other.test", check=True)
    m.ctl("alias", "add", "@other.test", f"bob@{LOCAL}", check=True)
    assert m.ctl("alias", "resolve", "anyone@other.test", check=True).stdout_text.split() == [f"bob@{LOCAL}"]
    tok = token()
    # moatd re-reads the domain list within a couple of seconds.
    def accepted():
        with m.smtp() as s:
            s.ehlo("client.test")
            s.mail("sender@sender.test")
            return s.rcpt("anyone@other.test")[0] == 250
    wait_until(accepted, 10, "other.test to be local")
    m.send(make_message(tok, rcpt="anyone@other.test"), rcpts=("anyone@other.test",))
    rows = wait_messages(m, f"bob@{LOCAL}", 1)
    assert tok.encode() in fetch(m, f"bob@{LOCAL}", rows[0]["uid"])


def test_quota_452_at_rcpt_when_size_known_else_bounce(local_moatd):
    m = local_moatd
    m.ctl("user", "quota", f"bob@{LOCAL}", "4K", check=True)
    big = make_message(token(), rcpt=f"bob@{LOCAL}", body=(b"y" * 70 + b"\r\n") * 90)
    with m.smtp() as s:
        s.ehlo("client.test")
        s.mail(f"alice@{LOCAL}", [f"SIZE={len(big)}"])
        code, text = s.rcpt(f"bob@{LOCAL}")
        assert code == 452 and b"4.2.2" in text
    # Without SIZE the quota is found at delivery: a DSN (5.2.2) to the sender.
    m.send(big, sender=f"alice@{LOCAL}", rcpts=(f"bob@{LOCAL}",))
    rows = wait_messages(m, f"alice@{LOCAL}", 1)
    dsn = fetch(m, f"alice@{LOCAL}", rows[0]["uid"])
    assert b"multipart/report" in dsn and b"5.2.2" in dsn
    assert mailbox(m, f"bob@{LOCAL}") == []
    # A small message still fits.
    m.send(make_message(token(), rcpt=f"bob@{LOCAL}"), rcpts=(f"bob@{LOCAL}",))
    wait_messages(m, f"bob@{LOCAL}", 1)


def test_tagged_spam_goes_to_junk(make_moatd):
    # Every message scores 0; with the tag threshold below that, all are tagged.
    m = make_moatd(overrides={"local": {"domains": [LOCAL]}, "actions": {"tag": -1.0}})
    m.add_user(f"carol@{LOCAL}", "pw-carol")
    tok = token()
    m.send(make_message(tok, rcpt=f"carol@{LOCAL}"), rcpts=(f"carol@{LOCAL}",))
    rows = wait_messages(m, f"carol@{LOCAL}", 1, box="Junk")
    assert b"X-Spam-Flag: YES" in fetch(m, f"carol@{LOCAL}", rows[0]["uid"], box="Junk")
    assert mailbox(m, f"carol@{LOCAL}") == []


def test_concurrent_deliveries_to_one_mailbox(local_moatd):
    m = local_moatd
    n = 24
    toks = [token() for _ in range(n)]

    def send_one(i):
        return m.send(make_message(toks[i], rcpt=f"alice@{LOCAL}"), rcpts=(f"alice@{LOCAL}",))

    results = send_parallel(send_one, n, threads=6, timeout=60)
    assert all(isinstance(r, str) for r in results), results
    rows = wait_messages(m, f"alice@{LOCAL}", n)
    assert [r["uid"] for r in rows] == list(range(1, n + 1))
    found = {t for r in rows for t in toks if t.encode() in fetch(m, f"alice@{LOCAL}", r["uid"])}
    assert found == set(toks)


def test_relay_denied_for_other_domains_still(local_moatd):
    with local_moatd.smtp() as s:
        s.ehlo("client.test")
        s.mail("sender@sender.test")
        code, _ = s.rcpt("someone@elsewhere.test")
        assert code == 554

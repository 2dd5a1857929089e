"""POP3 (issue 5; RFC 1939, 2449, 2595, 5034, 8314) against the real moatd
with Python's poplib, curl's pop3:// URLs and fetchmail: STLS and implicit
TLS, USER/PASS and SASL PLAIN, UIDL agreeing with the store's UIDs, TOP,
DELE applied only at QUIT, and the SECURITY.md cases (no APOP, no login
before TLS, STLS plaintext injection, line limit)."""
from __future__ import annotations

import poplib
import shutil
import socket
import subprocess
import time

import pytest

from moatlib import LOOPBACK, free_port, insecure_tls_context, make_message, token, wait_until

LOCAL = "local.test"
ALICE = f"alice@{LOCAL}"
PASSWORD = "secret-alice"


@pytest.fixture
def pop_moatd(make_moatd):
    m = make_moatd(overrides={"local": {"domains": [LOCAL]}}, start=False)
    m.ports["pop3"] = free_port()
    m.ports["pop3s"] = free_port()
    m.reconfigure({"listener": m.config["listener"] + [
        {"name": "pop3", "address": f"{LOOPBACK}:{m.ports['pop3']}", "mode": "pop3"},
        {"name": "pop3s", "address": f"{LOOPBACK}:{m.ports['pop3s']}", "mode": "pop3s"},
    ]})
    m.start()
    m.add_user(ALICE, PASSWORD)
    return m


def deliver(m, n: int) -> list[str]:
    toks = []
    for _ in range(n):
        tok = token()
        m.send(make_message(tok, rcpt=ALICE), rcpts=(ALICE,))
        toks.append(tok)
    wait_until(lambda: len(store_rows(m)) >= n, 20, f"{n} message(s) delivered")
    return toks


def store_rows(m) -> list[dict]:
    r = m.ctl("mailbox", "messages", ALICE, "INBOX", check=True)
    rows = []
    for line in r.stdout_text.splitlines()[1:]:
        uid, size, _date, guid, flags = line.split(None, 4)
        rows.append({"uid": int(uid), "size": int(size), "flags": flags})
    return rows


def pop_tls(m) -> poplib.POP3:
    p = poplib.POP3(LOOPBACK, m.ports["pop3"], timeout=10)
    p.stls(context=insecure_tls_context())
    return p


def test_stls_user_pass_list_retr_uidl(pop_moatd):
    m = pop_moatd
    toks = deliver(m, 3)
    rows = store_rows(m)
    p = pop_tls(m)
    assert p.user(ALICE).startswith(b"+OK")
    assert p.pass_(PASSWORD).startswith(b"+OK")
    count, total = p.stat()
    assert count == 3 and total == sum(r["size"] for r in rows)
    _, listing, _ = p.list()
    assert [int(l.split()[1]) for l in listing] == [r["size"] for r in rows]
    _, uidls, _ = p.uidl()
    # UIDL: 8 hex digits of the IMAP UID, then UIDVALIDITY
    assert [int(l.split()[1][:8], 16) for l in uidls] == [r["uid"] for r in rows]
    assert len({l.split()[1] for l in uidls}) == 3
    # the queue may deliver in any order: each RETR gives one of the messages, all three once
    seen = set()
    for i in (1, 2, 3):
        _, lines, octets = p.retr(i)
        body = b"\r\n".join(lines) + b"\r\n"
        assert octets == len(body) == rows[i - 1]["size"]
        seen |= {t for t in toks if t.encode() in body}
    assert seen == set(toks)
    _, top, _ = p.top(1, 0)
    assert top[-1] == b"" and any(l.lower().startswith(b"subject:") for l in top)  # header, empty line, no body
    _, top1, _ = p.top(1, 1)
    assert len(top1) == len(top) + 1
    assert p.quit().startswith(b"+OK")


def test_implicit_tls_and_sasl_plain(pop_moatd):
    m = pop_moatd
    deliver(m, 1)
    p = poplib.POP3_SSL(LOOPBACK, m.ports["pop3s"], timeout=10, context=insecure_tls_context())
    caps = p.capa()
    assert "SASL" in caps and "PLAIN" in caps["SASL"] and "STLS" not in caps
    assert "UIDL" in caps and "TOP" in caps and "RESP-CODES" in caps and "PIPELINING" in caps
    import base64
    resp = p._shortcmd("AUTH PLAIN " + base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode())
    assert resp.startswith(b"+OK")
    assert p.stat()[0] == 1
    p.quit()


def test_dele_only_at_quit_and_dropped_session_expunges_nothing(pop_moatd):
    m = pop_moatd
    deliver(m, 2)
    before = store_rows(m)
    p = pop_tls(m)
    p.user(ALICE)
    p.pass_(PASSWORD)
    p.dele(1)
    assert p.stat()[0] == 1
    p.sock.close()  # dropped without QUIT
    time.sleep(0.5)
    assert store_rows(m) == before
    p = pop_tls(m)
    p.user(ALICE)
    p.pass_(PASSWORD)
    p.dele(1)
    p.rset()
    p.dele(2)
    p.quit()
    rows = store_rows(m)
    assert [r["uid"] for r in rows] == [before[0]["uid"]]


def test_no_login_before_tls_and_no_apop(pop_moatd):
    m = pop_moatd
    p = poplib.POP3(LOOPBACK, m.ports["pop3"], timeout=10)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    with pytest.raises(poplib.error_proto) as e:
        p.user(ALICE)
    assert b"[AUTH]" in e.value.args[0]
    with pytest.raises(poplib.error_proto):
        p._shortcmd("APOP " + ALICE + " c4c9334bac560ecc979e58001b3e22fb")
    p.quit()


def test_wrong_password_and_failure_limit(pop_moatd):
    m = pop_moatd
    p = pop_tls(m)
    for i in range(2):
        p.user(ALICE)
        with pytest.raises(poplib.error_proto) as e:
            p.pass_("wrong")
        assert b"[AUTH]" in e.value.args[0]
    p.user(ALICE)
    with pytest.raises(poplib.error_proto):
        p.pass_("wrong")
    # third failure: the server hangs up
    with pytest.raises((poplib.error_proto, OSError, EOFError)):
        p.noop()


def test_stls_discards_pipelined_plaintext(pop_moatd):
    m = pop_moatd
    s = socket.create_connection((LOOPBACK, m.ports["pop3"]), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"STLS\r\nUSER injected\r\n")
    assert f.readline().startswith(b"+OK")
    t = insecure_tls_context().wrap_socket(s, server_hostname="moat.test")
    t.sendall(b"NOOP\r\n")
    line = t.recv(512)
    # NOOP before login is an error; the injected USER must not have been run
    assert line.startswith(b"-ERR"), line
    t.sendall(b"CAPA\r\n")
    data = b""
    while not data.endswith(b".\r\n"):
        data += t.recv(4096)
    assert b"USER" in data  # fresh AUTHORIZATION state
    t.close()


def test_line_limit(pop_moatd):
    m = pop_moatd
    s = socket.create_connection((LOOPBACK, m.ports["pop3"]), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"NOOP " + b"x" * 5000 + b"\r\nCAPA\r\n")
    assert f.readline().startswith(b"-ERR")
    assert f.readline().startswith(b"+OK")
    s.close()


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
def test_curl_pop3(pop_moatd):
    m = pop_moatd
    toks = deliver(m, 2)
    base = f"pop3://{LOOPBACK}:{m.ports['pop3']}/"
    auth = ["--ssl-reqd", "-k", "-u", f"{ALICE}:{PASSWORD}"]
    r = subprocess.run(["curl", "-s", *auth, base], capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2
    r = subprocess.run(["curl", "-s", *auth, base + "2"], capture_output=True, timeout=20)
    assert r.returncode == 0
    second = {t for t in toks if t.encode() in r.stdout}  # delivery order is the queue's
    assert len(second) == 1
    r = subprocess.run(["curl", "-s", *auth, f"pop3s://{LOOPBACK}:{m.ports['pop3s']}/1"], capture_output=True, timeout=20)
    assert r.returncode == 0
    first = {t for t in toks if t.encode() in r.stdout}
    assert len(first) == 1 and first != second


@pytest.mark.skipif(not shutil.which("fetchmail"), reason="fetchmail not installed")
def test_fetchmail_pop3(pop_moatd, tmp_path):
    m = pop_moatd
    toks = deliver(m, 2)
    rc = tmp_path / "fetchmailrc"
    out = tmp_path / "mbox"
    rc.write_text(f'poll {LOOPBACK} service {m.ports["pop3s"]} protocol pop3 auth password\n'
                  f'  user "{ALICE}" password "{PASSWORD}" ssl no sslcertck\n'
                  f'  mda "cat >> {out}"\n')
    rc.chmod(0o600)
    r = subprocess.run(["fetchmail", "-f", str(rc), "-N", "--nosyslog", "-a", "-k"], capture_output=True,
                       timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout + r.stderr
    data = out.read_bytes()
    assert all(t.encode() in data for t in toks)
    assert len(store_rows(m)) == 2  # -k: kept

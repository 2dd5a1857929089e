"""IMAP (issue 5; RFC 3501 with LITERAL-, IDLE, UIDPLUS, MOVE, UNSELECT,
NAMESPACE, ID, ENABLE, SASL-IR, SPECIAL-USE, CHILDREN; STARTTLS and
implicit TLS) against the real moatd with Python's imaplib, curl's imap://
URLs and fetchmail; several sessions, a POP3 session and deliveries on one
mailbox at once; the IMAP cases of SECURITY.md (STARTTLS injection, huge
literals and sequence sets, deep nesting, login only over TLS)."""
from __future__ import annotations

import imaplib
import poplib
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from moatlib import LOOPBACK, free_port, insecure_tls_context, make_message, token, wait_until

LOCAL = "local.test"
ALICE = f"alice@{LOCAL}"
PASSWORD = "secret-alice"


@pytest.fixture
def imap_moatd(make_moatd):
    m = make_moatd(overrides={"local": {"domains": [LOCAL]}}, start=False)
    for name in ("imap", "imaps", "pop3"):
        m.ports[name] = free_port()
    m.reconfigure({"listener": m.config["listener"] + [
        {"name": n, "address": f"{LOOPBACK}:{m.ports[n]}", "mode": n} for n in ("imap", "imaps", "pop3")]})
    m.start()
    m.add_user(ALICE, PASSWORD)
    return m


def imap(m, *, login=True) -> imaplib.IMAP4:
    c = imaplib.IMAP4(LOOPBACK, m.ports["imap"], timeout=15)
    c.starttls(ssl_context=insecure_tls_context())
    if login:
        c.login(ALICE, PASSWORD)
    return c


def deliver(m, n: int = 1) -> list[str]:
    toks = []
    for _ in range(n):
        tok = token()
        m.send(make_message(tok, rcpt=ALICE, subject=f"subject {tok}"), rcpts=(ALICE,))
        toks.append(tok)
    return toks


def count(c) -> int:
    typ, data = c.select("INBOX")
    assert typ == "OK"
    return int(data[0])


def test_login_list_select_fetch_store_expunge(imap_moatd):
    m = imap_moatd
    toks = deliver(m, 3)
    c = imap(m)
    wait_until(lambda: count(c) == 3, 20, "3 messages")
    typ, boxes = c.list()
    names = [b.decode() for b in boxes]
    assert any(n.endswith('"INBOX"') or n.endswith(" INBOX") for n in names)
    assert any("\\Sent" in n and "Sent" in n for n in names)
    typ, data = c.fetch("1:*", "(UID FLAGS RFC822.SIZE ENVELOPE)")
    assert typ == "OK"
    text = b"".join(d if isinstance(d, bytes) else d[0] for d in data)
    assert text.count(b"ENVELOPE") == 3 and toks[0].encode() in text  # subject in ENVELOPE
    typ, data = c.fetch("2", "(BODY.PEEK[])")
    assert sum(t.encode() in data[0][1] for t in toks) == 1  # delivery order is the queue's
    assert b"\\Seen" not in c.fetch("2", "(FLAGS)")[1][0]
    c.fetch("2", "(BODY[TEXT])")
    assert b"\\Seen" in c.fetch("2", "(FLAGS)")[1][0]
    typ, data = c.search(None, "UNSEEN")
    assert data[0].split() == [b"1", b"3"]
    typ, data = c.uid("SEARCH", None, "ALL")
    uids = [int(x) for x in data[0].split()]
    assert len(uids) == 3 and uids == sorted(uids)
    c.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = c.expunge()
    assert data == [b"1"]
    assert count(c) == 2
    c.logout()


def test_append_uidplus_copy_move_and_bodystructure(imap_moatd):
    m = imap_moatd
    c = imap(m)
    msg = (b"From: a@x.test\r\nTo: b@y.test\r\nSubject: appended\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
           b"--b\r\nContent-Type: application/octet-stream\r\n\r\nxyz\r\n--b--\r\n")
    typ, data = c.append("Drafts", "(\\Draft)", None, msg)
    assert typ == "OK" and b"APPENDUID" in data[0]
    c.select("Drafts")
    typ, data = c.fetch("1", "(BODYSTRUCTURE RFC822.SIZE BODY.PEEK[])")
    line = data[0][0]
    assert b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0' in line  # LF count, as Dovecot
    assert b'"mixed" ("boundary" "b")' in line and f"RFC822.SIZE {len(msg)}".encode() in line
    assert data[0][1] == msg
    typ, data = c.copy("1", "Trash")
    assert typ == "OK" and b"COPYUID" in data[0]
    typ, data = c.uid("MOVE", "1:*", "Trash")
    assert typ == "OK"
    assert c.select("Drafts")[1][0] == b"0"
    assert count_box(c, "Trash") == 2
    c.logout()


def count_box(c, box) -> int:
    typ, data = c.status(box, "(MESSAGES)")
    return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))


def test_implicit_tls_and_sasl_ir(imap_moatd):
    m = imap_moatd
    c = imaplib.IMAP4_SSL(LOOPBACK, m.ports["imaps"], ssl_context=insecure_tls_context(), timeout=15)
    assert "AUTH=PLAIN" in c.capabilities and "STARTTLS" not in c.capabilities
    c.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{PASSWORD}".encode())
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def test_login_refused_before_tls(imap_moatd):
    m = imap_moatd
    c = imaplib.IMAP4(LOOPBACK, m.ports["imap"], timeout=15)
    assert "LOGINDISABLED" in c.capabilities and "STARTTLS" in c.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        c.login(ALICE, PASSWORD)
    c.logout()


def test_wrong_password(imap_moatd):
    c = imap(imap_moatd, login=False)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        c.login(ALICE, "wrong")


def raw_tls(m):
    s = socket.create_connection((LOOPBACK, m.ports["imap"]), timeout=15)
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK")
    s.sendall(b"a STARTTLS\r\nb LOGIN injected x\r\n")
    assert f.readline().startswith(b"a OK")
    t = insecure_tls_context().wrap_socket(s, server_hostname="moat.test")
    return t


def read_until(t, tag: bytes) -> bytes:
    data = b""
    while not re.search(rb"(^|\r\n)" + re.escape(tag) + rb" [A-Z]+ [^\r\n]*\r\n", data):
        chunk = t.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_starttls_discards_pipelined_plaintext(imap_moatd):
    t = raw_tls(imap_moatd)
    t.sendall(b"c NOOP\r\n")
    data = read_until(t, b"c")
    assert b"b " not in data and data.startswith(b"c OK")
    t.close()


def test_literal_limits_nesting_and_huge_sets(imap_moatd):
    m = imap_moatd
    t = raw_tls(m)
    t.sendall(f"l LOGIN {ALICE} {PASSWORD}\r\n".encode())
    assert b"l OK" in read_until(t, b"l")
    # APPEND over the message size limit: refused before the continuation
    t.sendall(b"a APPEND INBOX {999999999}\r\n")
    data = read_until(t, b"a")
    assert b"a NO [TOOBIG]" in data and b"+ " not in data
    # deep nesting and a huge (unexpanded) sequence set
    t.sendall(b"n SEARCH " + b"(" * 200 + b"ALL" + b")" * 200 + b"\r\n")
    assert b"n BAD" in read_until(t, b"n")
    t.sendall(b"s SELECT INBOX\r\n")
    read_until(t, b"s")
    start = time.time()
    t.sendall(b"f FETCH 1:4294967295 (FLAGS)\r\nu UID FETCH 1:4294967295,1:4294967295 (FLAGS)\r\n")
    # both answers may come in one write (pipelined commands share it)
    both = read_until(t, b"u")
    assert b"f OK" in both and b"u OK" in both
    assert time.time() - start < 2
    # a non-synchronizing literal over the limit cannot be skipped: BYE
    t.sendall(b"x APPEND INBOX {999999999+}\r\nabc")
    assert b"* BYE" in read_until(t, b"x")
    t.close()


def test_sessions_see_each_others_changes_and_idle_pushes(imap_moatd):
    m = imap_moatd
    a, b = imap(m), imap(m)
    deliver(m, 1)
    wait_until(lambda: count(a) == 1, 20, "first delivery")
    b.select("INBOX")
    # IDLE in b, then a delivery and a flag change from a
    b.send(b"i1 IDLE\r\n")
    assert b.readline().startswith(b"+")
    deliver(m, 1)
    line = b.readline()
    assert re.match(rb"\* 2 EXISTS", line), line
    a.select("INBOX")
    a.store("1", "+FLAGS", "(\\Flagged)")
    line = b.readline()
    assert b"FETCH" in line and b"\\Flagged" in line, line
    a.store("1", "+FLAGS", "(\\Deleted)")
    b.readline()
    a.expunge()
    line = b.readline()
    assert re.match(rb"\* 1 EXPUNGE", line), line
    b.send(b"DONE\r\n")
    assert b.readline().startswith(b"i1 OK")
    typ, data = b.noop()
    assert typ == "OK"
    a.logout()
    b.logout()


def test_concurrency_imap_pop3_and_deliveries(imap_moatd):
    m = imap_moatd
    errors = []

    def imap_worker():
        try:
            c = imap(m)
            for _ in range(10):
                c.select("INBOX")
                c.fetch("1:*", "(FLAGS)")
                c.noop()
            c.logout()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def pop_worker():
        try:
            for _ in range(5):
                p = poplib.POP3(LOOPBACK, m.ports["pop3"], timeout=15)
                p.stls(context=insecure_tls_context())
                p.user(ALICE)
                p.pass_(PASSWORD)
                p.uidl()
                p.quit()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=imap_worker) for _ in range(3)] + [threading.Thread(target=pop_worker)]
    for t in threads:
        t.start()
    deliver(m, 6)
    for t in threads:
        t.join(60)
    assert not errors, errors
    c = imap(m)
    wait_until(lambda: count(c) == 6, 20, "6 messages")
    typ, data = c.uid("SEARCH", None, "ALL")
    uids = [int(x) for x in data[0].split()]
    assert uids == sorted(set(uids)) and len(uids) == 6
    # UIDL agrees with IMAP UIDs
    p = poplib.POP3(LOOPBACK, m.ports["pop3"], timeout=15)
    p.stls(context=insecure_tls_context())
    p.user(ALICE)
    p.pass_(PASSWORD)
    _, lines, _ = p.uidl()
    assert [int(l.split()[1][:8], 16) for l in lines] == uids
    p.quit()
    c.logout()


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
def test_curl_imap(imap_moatd):
    m = imap_moatd
    toks = deliver(m, 2)
    c = imap(m)
    wait_until(lambda: count(c) == 2, 20, "2 messages")
    c.logout()
    auth = ["--ssl-reqd", "-k", "-u", f"{ALICE}:{PASSWORD}"]
    r = subprocess.run(["curl", "-s", *auth, f"imap://{LOOPBACK}:{m.ports['imap']}/INBOX;UID=2"],
                       capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert sum(t.encode() in r.stdout for t in toks) == 1
    r = subprocess.run(["curl", "-s", *auth, f"imaps://{LOOPBACK}:{m.ports['imaps']}/"], capture_output=True, timeout=20)
    assert r.returncode == 0 and b"INBOX" in r.stdout


@pytest.mark.skipif(not shutil.which("fetchmail"), reason="fetchmail not installed")
def test_fetchmail_imap(imap_moatd, tmp_path):
    m = imap_moatd
    toks = deliver(m, 2)
    c = imap(m)
    wait_until(lambda: count(c) == 2, 20, "2 messages")
    c.logout()
    rc = tmp_path / "fetchmailrc"
    out = tmp_path / "mbox"
    rc.write_text(f'poll {LOOPBACK} service {m.ports["imaps"]} protocol imap auth password\n'
                  f'  user "{ALICE}" password "{PASSWORD}" ssl no sslcertck\n'
                  f'  mda "cat >> {out}"\n')
    rc.chmod(0o600)
    r = subprocess.run(["fetchmail", "-f", str(rc), "-N", "--nosyslog", "-a", "-k"], capture_output=True,
                       timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout + r.stderr
    data = out.read_bytes()
    assert all(t.encode() in data for t in toks)

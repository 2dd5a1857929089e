"""IMAP extensions of issue 5 against the real moatd: CONDSTORE and QRESYNC
(RFC 7162), ESEARCH (RFC 4731) with SEARCHRES (RFC 5182), LIST-EXTENDED
(RFC 5258), LIST-STATUS (RFC 5819), LITERAL- (RFC 7888), ENABLE IMAP4rev2
(RFC 9051), and ALPN on the implicit-TLS IMAP and POP3 ports (RFC 7301,
ALPACA) with `openssl s_client`. Raw commands over TLS so the bytes the
client sees are asserted, plus imaplib where a stock client is the point."""
from __future__ import annotations

import imaplib
import re
import shutil
import socket
import subprocess

import pytest

from moatlib import LOOPBACK, free_port, insecure_tls_context

LOCAL = "local.test"
ALICE = f"alice@{LOCAL}"
PASSWORD = "secret-alice"


@pytest.fixture
def moatd(make_moatd):
    m = make_moatd(overrides={"local": {"domains": [LOCAL]}}, start=False)
    names = ("imap", "imaps", "pop3s")
    for name in names:
        m.ports[name] = free_port()
    m.reconfigure({"listener": m.config["listener"] + [
        {"name": n, "address": f"{LOOPBACK}:{m.ports[n]}", "mode": n} for n in names]})
    m.start()
    m.add_user(ALICE, PASSWORD)
    return m


class Raw:
    """One IMAP connection over implicit TLS; cmd() returns every byte up to
    and including the tagged reply."""

    def __init__(self, m, login=True):
        s = socket.create_connection((LOOPBACK, m.ports["imaps"]), timeout=15)
        self.t = insecure_tls_context().wrap_socket(s, server_hostname="moat.test")
        self.buf = b""
        self.n = 0
        self.greeting = self._line()
        if login:
            assert b" OK " in self.cmd(f"LOGIN {ALICE} {PASSWORD}")

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.t.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def send(self, data: bytes):
        self.t.sendall(data)

    def read_tagged(self, tag: str) -> bytes:
        out = b""
        while True:
            line = self._line()
            out += line
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:  # a literal in the response: take its bytes whole
                n = int(m.group(1))
                while len(self.buf) < n:
                    self.buf += self.t.recv(65536)
                out += self.buf[:n]
                self.buf = self.buf[n:]
                continue
            if line.startswith(tag.encode() + b" "):
                return out

    def cmd(self, text: str | bytes) -> bytes:
        self.n += 1
        tag = f"t{self.n}"
        data = text.encode() if isinstance(text, str) else text
        self.last = tag
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.read_tagged(tag)

    def append(self, box: str, msg: bytes, flags: str = "") -> int:
        self.n += 1
        tag = f"t{self.n}"
        f = f" ({flags})" if flags else ""
        self.send(f"{tag} APPEND {box}{f} {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
        r = self.read_tagged(tag)
        return int(re.search(rb"APPENDUID \d+ (\d+)", r).group(1))

    def close(self):
        try:
            self.cmd("LOGOUT")
        except (OSError, AssertionError):
            pass
        self.t.close()


def message(subject: str, body: str = "hello", frm: str = "a@x.test", date: str = "Tue, 03 Feb 2026 10:00:00 +0000") -> bytes:
    return (f"From: {frm}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nDate: {date}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@x.test>\r\n\r\n{body}\r\n").encode()


def tagged(r: bytes) -> bytes:
    return r.strip().split(b"\r\n")[-1]


def fetches(r: bytes) -> int:
    return len(re.findall(rb"^\* \d+ FETCH ", r, re.M))


def modseq_of(r: bytes, uid: int) -> int:
    return int(re.search(rb"UID " + str(uid).encode() + rb"[^\r\n]*MODSEQ \((\d+)\)", r).group(1))


def test_capabilities(moatd):
    c = Raw(moatd)
    caps = c.cmd("CAPABILITY").split(b"\r\n")[0].split()
    for cap in (b"IMAP4rev1", b"IMAP4rev2", b"LITERAL-", b"CONDSTORE", b"QRESYNC", b"ESEARCH", b"SEARCHRES",
                b"LIST-EXTENDED", b"LIST-STATUS", b"ENABLE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE"):
        assert cap in caps
    assert b"LITERAL+" not in caps  # LITERAL-: non-synchronizing literals only up to 4096 bytes
    c.close()


def test_condstore_fetch_store_search_status(moatd):
    c = Raw(moatd)
    uids = [c.append("INBOX", message(f"m{i}")) for i in range(3)]
    r = c.cmd("SELECT INBOX (CONDSTORE)")
    highest = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", r).group(1))
    r = c.cmd("FETCH 1:* (UID MODSEQ)")
    seqs = [modseq_of(r, u) for u in uids]
    assert seqs == sorted(seqs) and seqs[-1] == highest
    # a flag change moves the message's MODSEQ past HIGHESTMODSEQ and is echoed with it
    r = c.cmd("STORE 1 +FLAGS (\\Flagged)")
    assert re.search(rb"\* 1 FETCH \(UID %d FLAGS \(\\Flagged\) MODSEQ \((\d+)\)\)" % uids[0], r)
    m1 = modseq_of(r, uids[0])
    assert m1 > highest
    # CHANGEDSINCE: only the changed message; MODSEQ implied
    r = c.cmd(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")
    assert fetches(r) == 1 and b"MODSEQ (%d)" % m1 in r
    # UNCHANGEDSINCE older than message 1's MODSEQ: 1 is left alone, 2 changes
    r = c.cmd(f"STORE 1:2 (UNCHANGEDSINCE {highest}) +FLAGS.SILENT (\\Seen)")
    assert tagged(r).startswith(c.last.encode() + b" OK [MODIFIED 1]")
    assert b"\\Seen" not in c.cmd("FETCH 1 (FLAGS)")
    r = c.cmd("FETCH 2 (UID FLAGS MODSEQ)")
    assert b"\\Seen" in r
    m2 = modseq_of(r, uids[1])
    # UID STORE names UIDs in MODIFIED
    r = c.cmd(f"UID STORE {uids[1]} (UNCHANGEDSINCE 1) -FLAGS (\\Seen)")
    assert f"OK [MODIFIED {uids[1]}]".encode() in tagged(r)
    # SEARCH MODSEQ: matches with the highest MODSEQ among them
    r = c.cmd(f"SEARCH MODSEQ {m1}")
    assert b"* SEARCH 1 2 (MODSEQ %d)" % m2 in r
    r = c.cmd('SEARCH MODSEQ "/flags/\\\\seen" all 999999999')
    assert b"* SEARCH\r\n" in r
    r = c.cmd("STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
    assert b'* STATUS "INBOX" (HIGHESTMODSEQ %d MESSAGES 3)' % m2 in r
    assert b"BAD" in tagged(c.cmd("FETCH 1 (FLAGS) (CHANGEDSINCE 0)"))
    c.close()


def test_qresync_vanished_and_resync(moatd):
    a = Raw(moatd)
    uids = [a.append("INBOX", message(f"q{i}")) for i in range(4)]
    r = a.cmd("ENABLE QRESYNC")
    assert b"* ENABLED QRESYNC" in r
    # QRESYNC parameters without ENABLE are refused
    other = Raw(moatd)
    assert b"BAD" in tagged(other.cmd("SELECT INBOX (QRESYNC (1 1))"))
    r = a.cmd("SELECT INBOX")
    validity = int(re.search(rb"UIDVALIDITY (\d+)", r).group(1))
    known = int(re.search(rb"HIGHESTMODSEQ (\d+)", r).group(1))
    # another session expunges message 2 and flags message 3
    other.cmd("SELECT INBOX")
    other.cmd(f"UID STORE {uids[1]} +FLAGS (\\Deleted)")
    other.cmd(f"UID EXPUNGE {uids[1]}")
    other.cmd(f"UID STORE {uids[2]} +FLAGS (\\Answered)")
    # the QRESYNC session hears VANISHED, not EXPUNGE, and flags with MODSEQ
    r = a.cmd("NOOP")
    assert f"* VANISHED {uids[1]}\r\n".encode() in r and b"EXPUNGE" not in r
    assert re.search(rb"FETCH \(UID %d FLAGS \(\\Answered\) MODSEQ \(\d+\)\)" % uids[2], r)
    # UID FETCH ... (CHANGEDSINCE n VANISHED): VANISHED (EARLIER) first
    r = a.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {known} VANISHED)")
    assert r.startswith(f"* VANISHED (EARLIER) {uids[1]}\r\n".encode())
    assert fetches(r) == 1 and b"UID %d" % uids[2] in r
    assert b"BAD" in tagged(a.cmd(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {known} VANISHED)"))  # UID FETCH only
    # EXPUNGE's tagged OK carries HIGHESTMODSEQ once CONDSTORE is on
    a.cmd(f"UID STORE {uids[3]} +FLAGS.SILENT (\\Deleted)")
    r = a.cmd("EXPUNGE")
    assert f"* VANISHED {uids[3]}\r\n".encode() in r and b"OK [HIGHESTMODSEQ " in tagged(r)
    # a new session resynchronises from the old state in one SELECT
    b = Raw(moatd)
    b.cmd("ENABLE QRESYNC")
    r = b.cmd(f"SELECT INBOX (QRESYNC ({validity} {known} 1:{uids[3]}))")
    assert f"* VANISHED (EARLIER) {uids[1]},{uids[3]}\r\n".encode() in r
    changed = re.findall(rb"\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\) MODSEQ \(\d+\)\)", r)
    assert changed == [(str(uids[2]).encode(), b"\\Answered")]
    # known-uids limits what is reported; a wrong UIDVALIDITY reports nothing
    r = b.cmd(f"SELECT INBOX (QRESYNC ({validity} {known} {uids[0]}))")
    assert b"[CLOSED]" in r and b"VANISHED" not in r and b"FETCH" not in r
    r = b.cmd(f"SELECT INBOX (QRESYNC ({validity + 1} {known}))")
    assert b"VANISHED" not in r and b" OK [READ-WRITE]" in tagged(r)
    for c in (a, b, other):
        c.close()


def test_esearch_searchres_and_search_keys(moatd):
    c = Raw(moatd)
    c.append("INBOX", message("alpha report", "the quick brown fox"), "\\Seen")
    c.append("INBOX", message("beta", "lazy dog", frm="boss@corp.test", date="Mon, 01 Jan 2024 09:00:00 +0000"))
    c.append("INBOX", message("gamma report", "nothing here"), "\\Flagged")
    c.cmd("SELECT INBOX")
    r = c.cmd("SEARCH RETURN (MIN MAX COUNT ALL) ALL")
    assert f'* ESEARCH (TAG "{c.last}") MIN 1 MAX 3 COUNT 3 ALL 1:3\r\n'.encode() in r
    r = c.cmd("UID SEARCH RETURN () UNSEEN")
    assert f'* ESEARCH (TAG "{c.last}") UID ALL 2:3\r\n'.encode() in r  # the UIDs of messages 2 and 3
    r = c.cmd("SEARCH RETURN (COUNT) KEYWORD nosuch")
    assert f'* ESEARCH (TAG "{c.last}") COUNT 0\r\n'.encode() in r
    # boolean and text keys
    assert b"* SEARCH 1 3\r\n" in c.cmd("SEARCH SUBJECT report")
    assert b"* SEARCH 2\r\n" in c.cmd("SEARCH OR FROM boss BODY zebra")
    assert b"* SEARCH 1 3\r\n" in c.cmd("SEARCH NOT (FROM boss)")
    assert b"* SEARCH 1\r\n" in c.cmd('SEARCH TEXT "QUICK BROWN"')
    assert b"* SEARCH 2\r\n" in c.cmd("SEARCH SENTBEFORE 1-Feb-2026")
    assert b"* SEARCH 1 2 3\r\n" in c.cmd("SEARCH SINCE 1-Jan-2020 HEADER Message-ID x.test")
    assert b"NO [BADCHARSET" in c.cmd("SEARCH CHARSET KOI8-R ALL")
    assert b"BAD" in tagged(c.cmd("SEARCH " + "NOT " * 100 + "ALL"))
    # SAVE, then "$" in FETCH, STORE and another SEARCH (RFC 5182)
    r = c.cmd("SEARCH RETURN (SAVE) SUBJECT report")
    assert b"ESEARCH" not in r and b" OK " in tagged(r)
    r = c.cmd("FETCH $ (UID)")
    assert re.findall(rb"\* (\d+) FETCH", r) == [b"1", b"3"]
    c.cmd("STORE $ +FLAGS (\\Answered)")
    assert b"* SEARCH 1 3\r\n" in c.cmd("SEARCH ANSWERED")
    assert b"* SEARCH 3\r\n" in c.cmd("SEARCH $ FLAGGED")
    # imaplib, an ordinary client: OR and UNSEEN
    c.close()
    im = imaplib.IMAP4_SSL(LOOPBACK, moatd.ports["imaps"], ssl_context=insecure_tls_context(), timeout=15)
    im.login(ALICE, PASSWORD)
    im.select("INBOX")
    typ, data = im.search(None, "OR", "FLAGGED", "FROM", "boss")
    assert typ == "OK" and data[0].split() == [b"2", b"3"]
    im.logout()



def test_search_text_is_decoded_like_dovecot(moatd):
    """BODY/TEXT on decoded text, SENT* on the Date field: one message for
    each difference bench/imap found against Dovecot (bench/README.md)."""
    c = Raw(moatd)
    html = (b"From: a@x.test\r\nSubject: offer\r\nDate: Tue, 3 Sep 2002 10:00:00 +0000\r\n"
            b"Content-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"<a href=3D\"http://x.test/unsub=\r\nscribe.htm\">Gr=FC=DFe</a>\r\n")
    forward = (b"From: b@x.test\r\nSubject: fwd\r\nDate: Tue, 03 Dec 0102 17:08:50 +1100\r\n"
               b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
               b"--b1\r\nContent-Type: message/rfc822\r\n\r\nList-Id: Red Hat Linux beta <l.y.test>\r\n\r\ninner\r\n"
               b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               b"c2VjcmV0IHdvcmQ=\r\n--b1--\r\n")
    undated = b"From: c@x.test\r\nSubject: no date\r\n\r\nplain unsubscribe text\r\n"
    for m in (html, forward, undated):
        c.append("INBOX", m)
    c.cmd("SELECT INBOX")
    assert b"* SEARCH 1 3\r\n" in c.cmd('SEARCH BODY "unsubscribe"')        # 1: in an href, split by a soft break
    assert b"* SEARCH 1\r\n" in c.cmd('SEARCH CHARSET UTF-8 BODY "GRÜßE"')  # Latin-1, any case
    assert b"* SEARCH 2\r\n" in c.cmd("SEARCH TEXT linux")                  # the attached message's header
    assert b"* SEARCH\r\n" in c.cmd("SEARCH BODY linux")                    # ... which is not body text
    assert b"* SEARCH\r\n" in c.cmd("SEARCH BODY secret")                   # nor is a base64 application part
    assert b"* SEARCH 2\r\n" in c.cmd("SEARCH SENTBEFORE 1-Sep-2002")       # "0102" is the year 102
    assert b"* SEARCH 1\r\n" in c.cmd("SEARCH SENTON 3-Sep-2002")
    today = c.cmd("SEARCH SENTSINCE 1-Jan-2020")                             # 3: no Date, INTERNALDATE (today)
    assert b"* SEARCH 3\r\n" in today, today
    c.close()

def test_list_extended_and_list_status(moatd):
    c = Raw(moatd)
    for box in ("Work", "Work/Projects", "Work/Old", "Lone/Child"):
        assert b" OK " in tagged(c.cmd(f'CREATE "{box}"'))
    c.cmd('UNSUBSCRIBE "Work"')
    c.cmd('UNSUBSCRIBE "Work/Old"')
    c.append("Work/Projects", message("p1"))
    r = c.cmd('LIST (SUBSCRIBED) "" "Work*"')
    assert b'* LIST (\\HasNoChildren \\Subscribed) "/" "Work/Projects"\r\n' in r
    assert b'"Work"\r\n' not in r and b"Work/Old" not in r
    # RECURSIVEMATCH: "Work" is not subscribed, a child below the pattern level is
    r = c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    assert b'* LIST (\\HasChildren) "/" "Work" ("CHILDINFO" ("SUBSCRIBED"))\r\n' in r
    assert b"BAD" in tagged(c.cmd('LIST (RECURSIVEMATCH) "" "*"'))
    assert b"BAD" in tagged(c.cmd('LIST (BOGUS) "" "*"'))
    r = c.cmd('LIST (SPECIAL-USE) "" "*"')
    names = re.findall(rb'"/" "?([^"\r\n]+)"?\r\n', r)
    assert sorted(names) == [b"Drafts", b"Junk", b"Sent", b"Trash"]
    # several patterns, RETURN options
    r = c.cmd('LIST "" ("INBOX" "Work/%") RETURN (CHILDREN SUBSCRIBED SPECIAL-USE)')
    assert re.findall(rb'"/" "?([^"\r\n]+)"?\r\n', r) == [b"INBOX", b"Work/Old", b"Work/Projects"]
    assert b'(\\HasNoChildren) "/" "Work/Old"' in r and b'(\\HasNoChildren \\Subscribed) "/" "Work/Projects"' in r
    # LIST-STATUS: a STATUS after each selectable mailbox
    r = c.cmd('LIST "" "Work/%" RETURN (STATUS (MESSAGES UIDNEXT HIGHESTMODSEQ))')
    assert re.search(rb'\* STATUS "Work/Projects" \(MESSAGES 1 UIDNEXT 2 HIGHESTMODSEQ \d+\)\r\n', r)
    assert b'* STATUS "Work/Old" (MESSAGES 0 UIDNEXT 1' in r
    assert b"BAD" in tagged(c.cmd('LIST "" "*" RETURN (STATUS (BOGUS))'))
    # a parent level without a mailbox: \Noselect to IMAP4rev1 LIST, \NonExistent to extended LIST
    r = c.cmd('LIST "" "Lone"')
    assert b'* LIST (\\Noselect \\HasChildren) "/" "Lone"\r\n' in r
    r = c.cmd('LIST "" ("Lone") RETURN (STATUS (MESSAGES))')
    assert b'* LIST (\\NonExistent \\HasChildren) "/" "Lone"\r\n' in r and b"STATUS" not in r
    c.close()


def test_literal_minus(moatd):
    c = Raw(moatd)
    small = message("small")
    assert c.append("INBOX", small) > 0  # {n+} within 4096 bytes
    big = message("big", "x" * 5000)
    c.send(b"b1 APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\n")
    r = c.read_tagged("b1")
    assert r.startswith(b"b1 BAD [TOOBIG]")
    assert b" OK " in tagged(c.cmd("NOOP"))  # the literal's bytes were skipped, not run as commands
    c.send(b"b2 APPEND INBOX {%d}\r\n" % len(big))
    assert c._line().startswith(b"+ ")
    c.send(big + b"\r\n")
    assert b"b2 OK [APPENDUID" in c.read_tagged("b2")
    c.close()


def test_enable_imap4rev2(moatd):
    c = Raw(moatd)
    c.append("INBOX", message("r1"))
    assert b" OK " in tagged(c.cmd('CREATE "D&APw-sseldorf"'))  # modified UTF-7 before ENABLE
    assert b"* ENABLED IMAP4REV2\r\n" in c.cmd("ENABLE IMAP4rev2")
    r = c.cmd("SELECT INBOX")
    assert b"RECENT" not in r and b"[UNSEEN" not in r and b"* 1 EXISTS" in r
    r = c.cmd("SEARCH ALL")
    assert f'* ESEARCH (TAG "{c.last}") ALL 1\r\n'.encode() in r
    r = c.cmd("SEARCH DELETED")
    assert f'* ESEARCH (TAG "{c.last}")\r\n'.encode() in r
    # mailbox names are UTF-8 now, not modified UTF-7
    r = c.cmd('LIST "" "D*"')
    assert b"D\xc3\xbcsseldorf\r\n" in r or b'"D\xc3\xbcsseldorf"' in r
    assert b" OK " in tagged(c.cmd('CREATE "Köln"'.encode()))
    assert b"BAD" in tagged(c.cmd("STATUS INBOX (RECENT)"))
    c.close()
    old = Raw(moatd)
    assert b'"K&APY-ln"' in old.cmd('LIST "" "K*"')
    old.close()


def openssl(port: int, alpn: str | None, bye: bytes = b"a LOGOUT\n") -> str:
    # -ign_eof: keep reading until the server closes after LOGOUT/QUIT, so the
    # greeting and the session summary are always in the output
    args = ["openssl", "s_client", "-connect", f"{LOOPBACK}:{port}", "-servername", "moat.test", "-crlf", "-ign_eof"]
    if alpn:
        args += ["-alpn", alpn]
    p = subprocess.run(args, input=bye, capture_output=True, timeout=20)
    return (p.stdout + p.stderr).decode(errors="replace")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_alpn_on_implicit_tls_ports(moatd):
    imaps, pop3s = moatd.ports["imaps"], moatd.ports["pop3s"]
    out = openssl(imaps, "imap")
    assert "ALPN protocol: imap" in out and "* OK" in out
    out = openssl(pop3s, "pop3", b"QUIT\n")
    assert "ALPN protocol: pop3" in out and "+OK" in out
    # a client that sends no ALPN is served; one meant for another protocol is not (ALPACA)
    out = openssl(imaps, None)
    assert "No ALPN negotiated" in out and "* OK" in out
    for port, wrong in ((imaps, "smtp"), (imaps, "pop3"), (pop3s, "imap"), (imaps, "http/1.1")):
        out = openssl(port, wrong, b"QUIT\n" if port == pop3s else b"a LOGOUT\n")
        assert "no application protocol" in out and "* OK" not in out and "+OK" not in out

"""IMAP BINARY (RFC 3516, part of IMAP4rev2 RFC 9051 §6.4.5) against the real
moatd: FETCH BINARY[part], BINARY.PEEK, BINARY.SIZE and partials give the
part's bytes with the Content-Transfer-Encoding removed (base64 with NUL
bytes comes back as a literal8 "~{n}"), an unknown encoding gives
NO [UNKNOWN-CTE], only the non-PEEK form sets \\Seen, and APPEND takes a
literal8 message."""
from __future__ import annotations

import base64
import imaplib
import re

import pytest

from test_imap import ALICE, PASSWORD, imap, imap_moatd, raw_tls, read_until  # noqa: F401  (fixture)

PAYLOAD = bytes(range(256)) * 2 + b"\0\0end"  # NUL bytes, CR and LF alone, 8-bit
QP_TEXT = b"Gr\xc3\xbc\xc3\x9fe, a soft break and = sign"


def message() -> bytes:
    b64 = base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    return (b"From: sender@example.test\r\nTo: " + ALICE.encode() + b"\r\nSubject: binary\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"Gr=C3=BC=C3=9Fe, a soft=\r\n break and =3D sign\r\n"
            b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b64 + b"\r\n"
            b"--b1\r\nContent-Type: application/x-thing\r\nContent-Transfer-Encoding: x-weird\r\n\r\nabc\r\n"
            b"--b1--\r\n")


def fetch1(c, items: str) -> tuple[bytes, bytes]:
    """FETCH 1 with one literal item: (the line before the literal, the literal)."""
    typ, data = c.fetch("1", items)
    assert typ == "OK", data
    assert isinstance(data[0], tuple), data
    return data[0][0], data[0][1]


def flags(c) -> bytes:
    typ, data = c.fetch("1", "(FLAGS)")
    return data[0]


def test_binary_fetch_decodes_parts(imap_moatd):
    m = imap_moatd
    raw = message()
    c = imap(m)
    assert b"BINARY" in c.capabilities or "BINARY" in c.capabilities
    assert c.append("INBOX", None, None, raw)[0] == "OK"
    c.select("INBOX")

    # base64 with NUL bytes: decoded exactly, sent as a literal8
    head, data = fetch1(c, "(BINARY.PEEK[2])")
    assert data == PAYLOAD
    assert head.endswith(b"BINARY[2] ~{%d}" % len(PAYLOAD))
    # partials of the decoded bytes, labelled with their offset
    head, data = fetch1(c, "(BINARY.PEEK[2]<0.10>)")
    assert data == PAYLOAD[:10] and head.endswith(b"BINARY[2]<0> ~{10}")
    head, data = fetch1(c, "(BINARY.PEEK[2]<500.100>)")
    assert data == PAYLOAD[500:600] and head.endswith(b"BINARY[2]<500> ~{17}")  # cut at the end
    head, data = fetch1(c, "(BINARY.PEEK[2]<1.5>)")
    assert data == PAYLOAD[1:6] and head.endswith(b"BINARY[2]<1> {5}")  # no NUL in it: a plain literal
    # quoted-printable text: decoded, no NUL, so a plain literal
    head, data = fetch1(c, "(BINARY.PEEK[1])")
    assert data == QP_TEXT and head.endswith(b"BINARY[1] {%d}" % len(QP_TEXT))
    # empty section: the whole message, nothing decoded
    head, data = fetch1(c, "(BINARY.PEEK[])")
    assert data == raw
    # BINARY.SIZE: the decoded sizes
    typ, data = c.fetch("1", "(BINARY.SIZE[1] BINARY.SIZE[2])")
    assert typ == "OK"
    assert data[0] == b"1 (BINARY.SIZE[1] %d BINARY.SIZE[2] %d)" % (len(QP_TEXT), len(PAYLOAD))
    # none of that was a read
    assert b"\\Seen" not in flags(c)

    # unknown transfer encoding: NO [UNKNOWN-CTE], nothing sent, \Seen not set
    typ, data = c.fetch("1", "(BINARY[3])")
    assert typ == "NO" and b"[UNKNOWN-CTE]" in data[0]
    typ, data = c.fetch("1", "(BINARY.SIZE[3])")
    assert typ == "NO" and b"[UNKNOWN-CTE]" in data[0]
    assert b"\\Seen" not in flags(c)

    # bad section syntax: BAD (imaplib raises)
    for bad in ("(BINARY[1.MIME])", "(BINARY[0])", "(BINARY.SIZE[2]<0.1>)", "(BINARY[2]<0.0>)", "(BINARY[1..2])"):
        with pytest.raises(imaplib.IMAP4.error, match="BAD"):
            c.fetch("1", bad)

    # BINARY[] without PEEK sets \Seen, and says so in the same response
    typ, data = c.fetch("1", "(BINARY[2])")
    assert typ == "OK" and data[0][1] == PAYLOAD
    assert b"FLAGS (\\Seen)" in data[0][0] + data[1]
    assert b"\\Seen" in flags(c)
    c.logout()


def test_unknown_cte_still_answers_other_messages(imap_moatd):
    m = imap_moatd
    c = imap(m)
    plain = b"From: a@example.test\r\nSubject: plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
    weird = b"From: a@example.test\r\nSubject: weird\r\nContent-Transfer-Encoding: x-weird\r\n\r\nabc\r\n"
    for raw in (plain, weird, plain):
        assert c.append("INBOX", None, None, raw)[0] == "OK"
    c.select("INBOX")
    # a single-part message's part 1 is its body (RFC 9051 §6.4.5)
    typ, data = c.fetch("1:3", "(BINARY.PEEK[1])")
    assert typ == "NO"
    # imaplib keeps the untagged responses of a failed command
    typ, fetched = c.response("FETCH")
    assert [d[1] for d in fetched if isinstance(d, tuple)] == [b"hello", b"hello"]
    c.logout()


def test_append_literal8_and_binary_fetch_raw(imap_moatd):
    m = imap_moatd
    t = raw_tls(m)
    t.sendall(f"l LOGIN {ALICE} {PASSWORD}\r\n".encode())
    assert b"l OK" in read_until(t, b"l")
    body = b"x\0y\r\nz\0"
    msg = (b"From: a@example.test\r\nSubject: raw binary\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + body)
    # literal8, synchronizing: continuation, then the bytes
    t.sendall(b"a APPEND INBOX ~{%d}\r\n" % len(msg))
    assert read_until_line(t).startswith(b"+ ")
    t.sendall(msg + b"\r\n")
    assert re.search(rb"a OK \[APPENDUID \d+ 1\]", read_until(t, b"a"))
    # literal8, non-synchronizing (LITERAL-)
    t.sendall(b"b APPEND INBOX ~{%d+}\r\n" % len(msg) + msg + b"\r\n")
    assert re.search(rb"b OK \[APPENDUID \d+ 2\]", read_until(t, b"b"))
    # literal8 anywhere but APPEND's message is a syntax error
    t.sendall(b"c APPEND ~{5+}\r\nINBOX {1+}\r\nx\r\n")
    assert b"c BAD" in read_until(t, b"c")
    t.sendall(b"d LOGIN ~{1}\r\n")
    assert b"d BAD" in read_until(t, b"d")
    t.sendall(b"s SELECT INBOX\r\n")
    assert b"* 2 EXISTS" in read_until(t, b"s")
    # the exact bytes on the wire
    t.sendall(b"f FETCH 1:2 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[1]<2.3>)\r\n")
    got = read_until(t, b"f")
    one = b" FETCH (BINARY[1] ~{7}\r\n" + body + b" BINARY.SIZE[1] 7 BINARY[1]<2> {3}\r\ny\r\n)\r\n"
    assert got == b"* 1" + one + b"* 2" + one + b"f OK FETCH completed\r\n"
    t.sendall(b"g FETCH 1 (FLAGS)\r\n")
    assert b"* 1 FETCH (FLAGS ())" in read_until(t, b"g")
    t.close()


def read_until_line(t) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = t.recv(1)
        if not chunk:
            break
        data += chunk
    return data

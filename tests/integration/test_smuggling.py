"""SMTP smuggling (CVE-2023-51764/5/6): only CRLF.CRLF ends DATA. A bare CR or
LF in DATA is refused (bare_line = "reject") or normalised to CRLF
(bare_line = "normalize") and never passed on, so the next hop (smtp-sink,
which like many servers accepts LF.LF) never sees a second message."""
import pytest

from moatlib import RawSmtp, relay_domain, token

ENDINGS = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CR": b"\r.\r",
    "CRLF.LF": b"\r\n.\n",
    "CR.CRLF": b"\r.\r\n",
}


def smuggling_payload(tok: str, fake_end: bytes) -> bytes:
    return (f"From: <sender@sender.test>\r\nTo: <user@example.test>\r\nSubject: outer {tok}\r\n"
            f"Message-ID: <{tok}@moat-tests.invalid>\r\n\r\nfirst message body\r\n").encode() \
        + b"last line" + fake_end \
        + (f"MAIL FROM:<smuggled@sender.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
           f"From: <ceo@sender.test>\r\nSubject: smuggled {tok}\r\n\r\nsmuggled body\r\n").encode() \
        + b".\r\n"                                        # the real CRLF.CRLF end


def send_payload(port: int, payload: bytes):
    c = RawSmtp(port)
    assert c.cmd("EHLO client.test")[0] == 250
    assert c.cmd("MAIL FROM:<sender@sender.test>")[0] == 250
    assert c.cmd("RCPT TO:<user@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(payload)
    end = c.reply()
    # nothing more may come: the smuggled MAIL/RCPT/DATA were data, not commands
    quit_reply = c.cmd("QUIT")
    c.close()
    return end, quit_reply


@pytest.mark.asan
@pytest.mark.parametrize("ending", list(ENDINGS), ids=list(ENDINGS))
def test_bare_line_reject(make_sink, make_moatd, ending):
    sink = make_sink("sink")
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   overrides={"limits": {"bare_line": "reject"}})
    tok = token()
    (code, text), quit_reply = send_payload(m.port(), smuggling_payload(tok, ENDINGS[ending]))
    assert (code, text.split(" ")[0]) == (550, "5.6.11"), f"{code} {text}"
    assert quit_reply[0] == 221, f"the smuggled commands were answered: {quit_reply}"
    sink.assert_quiet(2.0)


@pytest.mark.asan
@pytest.mark.parametrize("ending", list(ENDINGS), ids=list(ENDINGS))
def test_bare_line_normalize(make_sink, make_moatd, ending):
    sink = make_sink("sink")
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   overrides={"limits": {"bare_line": "normalize"}})
    tok = token()
    (code, text), quit_reply = send_payload(m.port(), smuggling_payload(tok, ENDINGS[ending]))
    assert code == 250, f"{code} {text}"
    assert quit_reply[0] == 221, f"the smuggled commands were answered: {quit_reply}"
    got = sink.wait_for(1)
    sink.assert_quiet(2.0, expect=1)                     # ONE message, no smuggled second
    msg = got[0]
    assert msg.recipients == ["user@example.test"]
    assert msg.header("Subject") == f"outer {tok}"
    assert b"MAIL FROM:<smuggled@sender.test>" in msg.body
    assert f"smuggled {tok}".encode() in msg.body
    assert not any(c.recipients == ["victim@example.test"] for c in sink.messages())


def test_bare_lf_in_headers_rejected(make_sink, make_moatd):
    sink = make_sink("sink")
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)])   # default: reject
    tok = token()
    payload = f"Subject: {tok}\nX-Evil: 1\r\n\r\nbody\r\n.\r\n".encode()
    (code, text), _ = send_payload(m.port(), payload)
    assert code == 550 and text.startswith("5.6.11"), f"{code} {text}"
    sink.assert_quiet(1.0)

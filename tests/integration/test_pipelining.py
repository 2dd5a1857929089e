"""Pipelining abuse (RFC 2920) and STARTTLS injection (CVE-2011-0411)."""
import time

import pytest

from moatlib import HOSTNAME, RawSmtp, relay_domain, token

TXN = (b"MAIL FROM:<sender@sender.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n"
       b"Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n")


def test_talk_before_banner_refused(make_sink, make_moatd):
    sink = make_sink("sink")
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   overrides={"limits": {"greet_pause": "1s"}})
    c = RawSmtp(m.port(), read_banner=False)
    c.send(b"EHLO early.test\r\n" + TXN)                 # before the 220
    code, text = c.reply()
    assert code == 554, f"{code} {text}"
    assert c.closed_by_peer(5)
    c.close()
    sink.assert_quiet(1.5)
    # a patient client on the same server is fine
    c = RawSmtp(m.port())
    assert c.banner[0] == 220
    c.close()


def test_data_before_354_refused(moatd, sink):
    c = RawSmtp(moatd.port())
    assert c.cmd("EHLO client.test")[0] == 250
    c.send(TXN)                                        # MAIL, RCPT, DATA and the payload at once
    codes = []
    while len(codes) < 3:
        try:
            codes.append(c.reply()[0])
        except ConnectionError:
            break
    assert 354 not in codes, codes
    assert codes[-1] == 554, codes
    assert c.closed_by_peer(5)
    sink.assert_quiet(1.5)


def test_pipelining_after_helo_refused(moatd, sink):
    c = RawSmtp(moatd.port())
    assert c.cmd("HELO client.test")[0] == 250
    c.send(b"MAIL FROM:<sender@sender.test>\r\nRCPT TO:<user@example.test>\r\n")
    code, text = c.reply()
    assert code == 554, f"{code} {text}"
    assert c.closed_by_peer(5)
    sink.assert_quiet(1.0)


def test_lockstep_after_helo_works(moatd, sink):
    tok = token()
    c = RawSmtp(moatd.port())
    assert c.cmd("HELO client.test")[0] == 250
    assert c.cmd("MAIL FROM:<sender@sender.test>")[0] == 250
    assert c.cmd("RCPT TO:<user@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(f"Subject: {tok}\r\n\r\nbody\r\n.\r\n")
    assert c.reply()[0] == 250
    c.cmd("QUIT")
    m = sink.wait_token(tok)
    assert " with SMTP " in m.header_fields()[0][1]


@pytest.mark.asan
def test_starttls_injection_discarded(moatd, sink):
    c = RawSmtp(moatd.port())
    assert c.cmd("EHLO client.test")[0] == 250
    c.send(b"STARTTLS\r\nRSET\r\n")                      # RSET injected in plaintext
    code, _ = c.reply()
    assert code == 220
    time.sleep(0.2)                                       # let a wrong server answer the RSET
    c.starttls()
    code, text = c.cmd("EHLO client.test")
    # the first reply after TLS answers our EHLO, not the injected RSET
    assert code == 250 and text.startswith(HOSTNAME), text
    assert "AUTH" in text and "STARTTLS" not in text, text
    c.close()


def test_starttls_injected_mail_not_executed(moatd, sink):
    c = RawSmtp(moatd.port())
    assert c.cmd("EHLO client.test")[0] == 250
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
    assert c.reply()[0] == 220
    c.starttls()
    assert c.cmd("EHLO client.test")[0] == 250
    code, text = c.cmd("RCPT TO:<user@example.test>")
    assert code == 503, f"RCPT without our own MAIL must be out of sequence: {code} {text}"
    c.close()


def test_state_reset_after_starttls(moatd, sink):
    c = RawSmtp(moatd.port())
    assert c.cmd("EHLO client.test")[0] == 250
    assert c.cmd("STARTTLS")[0] == 220
    c.starttls()
    code, _ = c.cmd("MAIL FROM:<sender@sender.test>")
    assert code == 503                                    # EHLO is needed again after TLS
    c.close()


def test_pipelining_after_ehlo_works(moatd, sink):
    tok = token()
    c = RawSmtp(moatd.port())
    code, text = c.cmd("EHLO client.test")
    assert "PIPELINING" in text
    c.send(b"MAIL FROM:<sender@sender.test>\r\nRCPT TO:<user@example.test>\r\nRCPT TO:<two@example.test>\r\nDATA\r\n")
    codes = [c.reply()[0] for _ in range(4)]
    assert codes == [250, 250, 250, 354], codes
    c.send(f"Subject: {tok}\r\n\r\npipelined body\r\n.\r\nQUIT\r\n")
    assert c.reply()[0] == 250
    assert c.reply()[0] == 221
    c.close()
    m = sink.wait_token(tok)
    assert sorted(m.recipients) == ["two@example.test", "user@example.test"]

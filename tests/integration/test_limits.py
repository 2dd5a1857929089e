"""Every limit is enforced and has a test (SECURITY.md promise 3); each is
configured small here."""
import socket
import time

import pytest

from moatlib import RawSmtp, make_message, relay_domain, token

USER, PASSWORD = "alice@example.test", "s3cret-pass"


@pytest.fixture
def limited(make_sink, make_moatd, request):
    """moatd whose [limits] get the test's indirect parameter merged in."""
    sink = make_sink("sink")
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   overrides={"limits": request.param})
    return m, sink


def start_data(c: RawSmtp, rcpt="user@example.test"):
    assert c.cmd("EHLO client.test")[0] == 250
    assert c.cmd("MAIL FROM:<sender@sender.test>")[0] == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert c.cmd("DATA")[0] == 354


@pytest.mark.asan
@pytest.mark.parametrize("limited", [{"line_length": 1000}], indirect=True)
def test_line_length(limited):
    m, sink = limited
    c = RawSmtp(m.port())
    c.cmd("EHLO client.test")
    assert c.cmd("NOOP " + "x" * 993)[0] == 250           # 1000 bytes with CRLF: allowed
    code, text = c.cmd("NOOP " + "x" * 994)
    assert code == 500 and text.startswith("5.5.6"), f"{code} {text}"
    assert c.cmd("NOOP")[0] == 250                        # the session goes on, in step
    c.close()
    # a DATA line over the limit
    c = RawSmtp(m.port())
    start_data(c)
    c.send(b"Subject: long\r\n\r\n" + b"y" * 1100 + b"\r\n.\r\n")
    code, text = c.reply()
    assert code == 500 and text.startswith("5.5.6"), f"{code} {text}"
    c.close()
    sink.assert_quiet(1.0)


@pytest.mark.parametrize("limited", [{"message_size": 10000}], indirect=True)
def test_message_size(limited):
    m, sink = limited
    c = RawSmtp(m.port())
    code, text = c.cmd("EHLO client.test")
    assert "SIZE 10000" in text
    code, text = c.cmd("MAIL FROM:<sender@sender.test> SIZE=20000")
    assert code == 552 and text.startswith("5.3.4"), f"{code} {text}"
    assert c.cmd("MAIL FROM:<sender@sender.test> SIZE=5000")[0] == 250
    assert c.cmd("RCPT TO:<user@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(make_message(body=(b"z" * 70 + b"\r\n") * 300) + b".\r\n")   # ~21 KB
    code, text = c.reply()
    assert code == 552 and text.startswith("5.3.4"), f"{code} {text}"
    c.close()
    sink.assert_quiet(1.0)
    # just under the limit goes through
    tok = token()
    m.send(make_message(tok, body=(b"z" * 70 + b"\r\n") * 100))
    sink.wait_token(tok)


@pytest.mark.parametrize("limited", [{"header_size": 2000}], indirect=True)
def test_header_size(limited):
    m, sink = limited
    c = RawSmtp(m.port())
    start_data(c)
    hdrs = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"h" * 60) for i in range(60))
    c.send(b"Subject: big header\r\n" + hdrs + b"\r\nbody\r\n.\r\n")
    code, text = c.reply()
    assert code == 552 and text.startswith("5.3.4"), f"{code} {text}"
    c.close()
    sink.assert_quiet(1.0)


@pytest.mark.parametrize("limited", [{"recipients": 3}], indirect=True)
def test_recipients(limited):
    m, sink = limited
    tok = token()
    c = RawSmtp(m.port())
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<sender@sender.test>")[0] == 250
    for i in range(3):
        assert c.cmd(f"RCPT TO:<r{i}@example.test>")[0] == 250
    code, text = c.cmd("RCPT TO:<r3@example.test>")
    assert code == 452 and text.startswith("4.5.3"), f"{code} {text}"
    assert c.cmd("DATA")[0] == 354
    c.send(f"Subject: {tok}\r\n\r\nbody\r\n.\r\n")
    assert c.reply()[0] == 250
    c.close()
    sink.wait_token(tok)
    got = sorted(r for msg in sink.messages() if msg.contains(tok) for r in msg.recipients)
    assert got == ["r0@example.test", "r1@example.test", "r2@example.test"]


@pytest.mark.parametrize("limited", [{"hard_errors": 3}], indirect=True)
def test_hard_errors(limited):
    m, sink = limited
    c = RawSmtp(m.port())
    c.cmd("EHLO client.test")
    codes = []
    for _ in range(5):
        try:
            codes.append(c.cmd("BOGUS command")[0])
        except ConnectionError:
            break
        if codes[-1] == 421:
            break
    assert codes[-1] == 421, codes
    assert len(codes) <= 4, f"421 came after {len(codes)} errors, limit is 3: {codes}"
    assert c.closed_by_peer(5)


@pytest.mark.parametrize("limited", [{"command_timeout": "2s"}], indirect=True)
def test_command_timeout(limited):
    m, sink = limited
    c = RawSmtp(m.port(), timeout=10)
    c.cmd("EHLO client.test")
    t0 = time.monotonic()
    code, text = c.reply()                                # we say nothing
    took = time.monotonic() - t0
    assert code == 421, f"{code} {text}"
    assert 1.5 <= took <= 6, took
    assert c.closed_by_peer(5)


@pytest.mark.parametrize("limited", [{"command_timeout": "2s"}], indirect=True)
def test_command_timeout_is_per_command_not_per_byte(limited):
    m, sink = limited
    c = RawSmtp(m.port(), timeout=10)
    t0 = time.monotonic()
    closed = False
    for ch in b"EHLO slow.client.test.example.invalid\r\n":   # one byte every 0.25 s: ~10 s
        try:
            c.send(bytes([ch]))
        except OSError:
            closed = True
            break
        time.sleep(0.25)
        if time.monotonic() - t0 > 8:
            break
    if not closed:
        code, _ = c.reply()
        assert code == 421, code
    assert time.monotonic() - t0 < 9


@pytest.mark.parametrize("limited", [{"data_timeout": "2s", "command_timeout": "20s"}], indirect=True)
def test_data_timeout(limited):
    m, sink = limited
    c = RawSmtp(m.port(), timeout=15)
    start_data(c)
    t0 = time.monotonic()
    c.send(b"Subject: slow\r\n\r\nhalf")
    for _ in range(40):                                   # keep dribbling: the deadline is for the phase
        try:
            c.send(b"x")
        except OSError:
            break
        time.sleep(0.2)
        if time.monotonic() - t0 > 6:
            break
    code, text = c.reply()
    assert code == 421, f"{code} {text}"
    assert time.monotonic() - t0 < 8
    sink.assert_quiet(1.0)


@pytest.mark.parametrize("limited", [{"connections_per_client": 3}], indirect=True)
def test_connections_per_client(limited):
    m, sink = limited
    conns = [RawSmtp(m.port()) for _ in range(3)]
    assert all(c.banner[0] == 220 for c in conns)
    extra = RawSmtp(m.port(), read_banner=False)
    code, text = extra.reply()
    assert code == 421, f"{code} {text}"
    extra.close()
    conns[0].cmd("QUIT")
    conns[0].close()
    time.sleep(0.5)
    again = RawSmtp(m.port())                             # a slot is free again
    assert again.banner[0] == 220
    for c in conns[1:] + [again]:
        c.close()


def test_max_hops(moatd, sink):
    c = RawSmtp(moatd.port())
    start_data(c)
    received = b"".join(b"Received: from hop%d.test by hop%d.test; Thu, 1 Jan 2026 00:00:00 +0000\r\n" % (i, i + 1)
                        for i in range(60))
    c.send(received + b"Subject: loop\r\n\r\nbody\r\n.\r\n")
    code, text = c.reply()
    assert code == 554 and text.startswith("5.4.6"), f"{code} {text}"
    c.close()
    sink.assert_quiet(1.0)


def test_max_hops_under_limit_passes(moatd, sink):
    tok = token()
    received = [f"Received: from hop{i}.test by hop{i + 1}.test; Thu, 1 Jan 2026 00:00:00 +0000" for i in range(20)]
    moatd.send(make_message(tok, extra_headers=received))
    sink.wait_token(tok)


@pytest.mark.parametrize("limited", [{"auth_failures": 2}], indirect=True)
def test_auth_failures(limited):
    m, sink = limited
    m.add_user(USER, PASSWORD)
    c = RawSmtp(m.port("submissions"), tls=True)
    c.cmd("EHLO client.test")
    codes = []
    for _ in range(4):
        try:
            codes.append(c.auth_plain(USER, "nope")[0])
        except (ConnectionError, OSError):
            break
        if codes[-1] == 421:
            break
    assert codes[:2] == [535, 535], codes
    assert len(codes) <= 3 and (len(codes) == 2 or codes[-1] == 421), codes
    assert c.closed_by_peer(5)

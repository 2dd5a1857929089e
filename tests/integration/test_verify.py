"""Recipient verification at RCPT: unknown users are refused before DATA, so
moat never accepts mail it would have to bounce (backscatter)."""
import pytest

from moatlib import RawSmtp, make_message, relay_domain, token


def rcpt_codes(port, addrs):
    c = RawSmtp(port)
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<sender@sender.test>")[0] == 250
    out = {a: c.cmd(f"RCPT TO:<{a}>") for a in addrs}
    c.cmd("QUIT")
    c.close()
    return out


def test_static_list(make_sink, make_moatd):
    sink = make_sink("sink")
    m = make_moatd(relay_domains=[
        relay_domain("example.test", sink.port, verify="static",
                     recipients=["alice@example.test", "bob@example.test"]),
        relay_domain("catchall.test", sink.port, verify="static", recipients=["@catchall.test"]),
    ])
    r = rcpt_codes(m.port(), ["alice@example.test", "bob@EXAMPLE.test", "carol@example.test",
                              "anyone@catchall.test"])
    assert r["alice@example.test"][0] == 250
    assert r["bob@EXAMPLE.test"][0] == 250
    code, text = r["carol@example.test"]
    assert code == 550 and text.startswith("5.1.1"), f"{code} {text}"
    assert r["anyone@catchall.test"][0] == 250
    tok = token()
    m.send(make_message(tok), rcpts=["alice@example.test"])
    sink.wait_token(tok)


@pytest.fixture
def callout(make_sink, make_moatd):
    good = make_sink("good")                          # accepts every RCPT
    bad = make_sink("bad", hard=["RCPT"], hard_reply="550 5.1.1 no such user")
    down = make_sink("down", start=False)             # nobody listening
    m = make_moatd(relay_domains=[
        relay_domain("good.test", good.port, verify="callout", callout_cache_ttl="1s"),
        relay_domain("bad.test", bad.port, verify="callout", callout_cache_ttl="1s"),
        relay_domain("down.test", down.port, verify="callout", callout_cache_ttl="1s"),
    ])
    return m, good, bad, down


def test_callout(callout):
    m, good, bad, down = callout
    r = rcpt_codes(m.port(), ["user@good.test", "user@bad.test", "user@down.test"])
    assert r["user@good.test"][0] == 250
    code, text = r["user@bad.test"]
    assert code == 550 and text.startswith("5.1.1"), f"{code} {text}"
    code, text = r["user@down.test"]
    assert code == 451, f"{code} {text}"
    # a callout is MAIL/RCPT/RSET: it never delivers anything
    good.assert_quiet(1.0)
    # and real mail to a verified recipient still goes
    tok = token()
    m.send(make_message(tok, rcpt="user@good.test"), rcpts=["user@good.test"])
    good.wait_token(tok)


def test_callout_down_then_up(callout):
    m, good, bad, down = callout
    assert rcpt_codes(m.port(), ["x@down.test"])["x@down.test"][0] == 451
    down.start()
    import time
    time.sleep(1.5)                                   # past the cache TTL of the failure, if cached
    assert rcpt_codes(m.port(), ["x@down.test"])["x@down.test"][0] == 250

"""No open relay (SECURITY.md promise 4): unauthenticated mail only for the
configured domains, and only in address forms every next hop reads alike."""
import pytest

from moatlib import RawSmtp, make_message, relay_domain, token

TRICKS = [
    "user@outside.test",
    "user%outside.test@example.test",          # percent hack
    "outside.test!user@example.test",          # bang path
    '"user@outside.test"@example.test',        # quoted local part holding @
    "@example.test:user@outside.test",         # source route
    "@outside.test:user@example.test",
    "user@[127.0.0.1]",                        # address literal
    "user@example.test.",                      # trailing dot
    "user@example.test.outside.test",
    "user@sub.example.test",
    "user@outside.test@example.test",
    "user@exаmple.test",                       # Cyrillic 'а'
]


@pytest.fixture
def guarded(make_sink, make_moatd):
    """example.test goes to `sink`; anything relayed elsewhere would reach
    the smarthost sink (used only for authenticated mail)."""
    sink = make_sink("sink")
    outside = make_sink("outside")
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   overrides={"relay": {"smarthost": f"[127.0.0.1]:{outside.port}"}})
    return m, sink, outside


def test_outside_domain_554(guarded):
    m, sink, outside = guarded
    c = RawSmtp(m.port())
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<sender@sender.test>")[0] == 250
    code, text = c.cmd("RCPT TO:<user@outside.test>")
    assert code == 554 and text.startswith("5.7.1"), f"{code} {text}"
    c.close()


@pytest.mark.parametrize("addr", TRICKS)
def test_relay_tricks_rejected(guarded, addr):
    m, sink, outside = guarded
    c = RawSmtp(m.port())
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<sender@sender.test> SMTPUTF8")[0] == 250
    code, text = c.cmd(f"RCPT TO:<{addr}>")
    assert 500 <= code < 600, f"RCPT TO:<{addr}> answered {code} {text}"
    code, _ = c.cmd("DATA")
    assert code == 503 or code == 554, code              # no valid recipient
    c.close()
    sink.assert_quiet(1.0)
    outside.assert_quiet(0.1)


def test_case_games_are_the_relay_domain(guarded):
    m, sink, outside = guarded
    tok = token()
    m.send(make_message(tok, rcpt="USER@EXAMPLE.TEST"), rcpts=["USER@EXAMPLE.TEST"])
    got = sink.wait_token(tok)
    assert [r.lower() for r in got.recipients] == ["user@example.test"]
    tok2 = token()
    m.send(make_message(tok2), rcpts=["User@Example.Test"])
    sink.wait_token(tok2)
    outside.assert_quiet(0.5)


def test_relay_networks_may_relay(make_sink, make_moatd):
    sink = make_sink("sink")
    outside = make_sink("outside")
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   overrides={"relay": {"networks": ["127.0.0.1/32"],
                                        "smarthost": f"[127.0.0.1]:{outside.port}"}})
    tok = token()
    m.send(make_message(tok, rcpt="bob@outside.test"), rcpts=["bob@outside.test"])
    outside.wait_token(tok)

"""Reputation checks through the real moatd against a real unbound on
127.0.0.1: DNSBL at connect (554), RHSBL on the sender domain, a refusing
list skipped (fail-open), greylisting (451 4.7.1, then the accepted retry,
kept across a restart), its skips, rate limits on connections (421) and
messages (451), and the counters in `moatctl metrics`."""
import re
import socket
import time

import pytest

from moatlib import LOOPBACK, free_port, is_listening, make_message, relay_domain, token, wait_until

BASE_FILTERS = [{"name": "helo"}, {"name": "hops"}, {"name": "size"}]
USER, PASSWORD = "alice@example.org", "s3cret-pass-for-tests"


def start_unready(m):
    """Starts moatd and waits for its listeners only: the readiness probe
    expects a 220 that a refused or rate-limited client does not get."""
    m.start(wait=False)
    wait_until(lambda: all(is_listening(p) for p in m.ports.values()), 20, "moatd listeners")
    return m


def banner(m, listener="smtp", wait_close=False) -> tuple[bytes, bool]:
    """The first reply line and (with wait_close) whether the server then
    closed the connection."""
    with socket.create_connection((LOOPBACK, m.port(listener)), timeout=10) as s:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(512)
            if not chunk:
                break
            data += chunk
        if not wait_close:
            s.sendall(b"QUIT\r\n")
            return data, False
        s.settimeout(5)
        try:
            closed = s.recv(512) == b""
        except socket.timeout:
            closed = False
        return data, closed


def metric(m, name: str) -> float:
    """Sum of every sample of `name` in `moatctl metrics`."""
    out = m.ctl("metrics", check=True).stdout_text
    total = 0.0
    for line in out.splitlines():
        mo = re.match(rf"{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if mo:
            total += float(mo.group(2))
    return total


def dnsbl_moatd(make_moatd, sink, dns, zones, **extra):
    over = {"dns": {"upstream": dns.upstream}, "dnsbl": {"zone": zones},
            "filter": BASE_FILTERS + [{"name": "dnsbl", "fail": "open"}]}
    over.update(extra)
    return make_moatd(relay_domains=[relay_domain("example.com", sink.port)], overrides=over, start=False)


# ---------------------------------------------------------------- DNSBL


@pytest.mark.asan
def test_listed_client_refused_at_connect(make_dns, make_moatd, sink):
    # Tests connect from 127.0.0.1, so the list names 1.0.0.127.
    dns = make_dns(["1.0.0.127.bl.example.com. A 127.0.0.2", '1.0.0.127.bl.example.com. TXT "listed"'],
                   zones=["bl.example.com", "clean.example.com"])
    m = start_unready(dnsbl_moatd(make_moatd, sink, dns, [
        {"zone": "bl.example.com", "weight": 20},
        {"zone": "clean.example.com", "weight": 20}]))
    line, closed = banner(m, wait_close=True)
    assert line.startswith(b"554 5.7.1 "), line
    assert b"DNS blocklist" in line and b"DNSBL_BL_EXAMPLE_COM" in line, line
    assert b"CLEAN_EXAMPLE_COM" not in line
    assert closed, "the session must end after the 554"
    assert metric(m, "moat_dnsbl_listed_total") >= 1
    assert "reject: CONNECT from" in m.log_text()


def test_listed_ipv6_client_refused_at_connect(make_dns, make_moatd, sink):
    """IPv6 clients are looked up by 32 reversed nibbles (RFC 5782 §2.4)."""
    nibbles = ".".join("1" + "0" * 31)
    dns = make_dns([f"{nibbles}.bl.example.com. A 127.0.0.2"], zones=["bl.example.com"])
    m = dnsbl_moatd(make_moatd, sink, dns, [{"zone": "bl.example.com", "weight": 20}])
    v6 = free_port()
    m.config["listener"].append({"name": "v6", "address": f"[::1]:{v6}", "mode": "smtp"})
    m.write_config()
    m.ports["v6"] = v6
    start_unready(m)
    with socket.create_connection(("::1", v6), timeout=10) as s:
        line = s.recv(512)
    assert line.startswith(b"554 5.7.1 ") and b"DNSBL_BL_EXAMPLE_COM" in line, line
    line, _ = banner(m)  # 127.0.0.1 is not listed
    assert line.startswith(b"220 "), line


def test_listing_below_reject_only_scores(make_dns, make_moatd, sink):
    """A light list does not refuse; its symbol still counts in the message's
    score (re-added at MAIL from the cache) and shows in X-Spam-Symbols."""
    dns = make_dns(["1.0.0.127.light.example.com. A 127.0.0.3"], zones=["light.example.com"])
    m = start_unready(dnsbl_moatd(make_moatd, sink, dns, [
        {"zone": "light.example.com", "weight": 6, "answers": ["127.0.0.2-127.0.0.11"]}]))
    tok = token()
    m.send(make_message(tok, rcpt="user@example.com"), rcpts=("user@example.com",))
    got = sink.wait_token(tok)
    assert got.header("X-Spam-Flag") == "YES", got.header_bytes
    assert "DNSBL_LIGHT_EXAMPLE_COM(6)" in got.header("X-Spam-Symbols")


def test_answer_outside_the_configured_range_is_not_a_listing(make_dns, make_moatd, sink):
    dns = make_dns(["1.0.0.127.bl.example.com. A 127.0.0.20"])
    m = start_unready(dnsbl_moatd(make_moatd, sink, dns, [
        {"zone": "bl.example.com", "weight": 20, "answers": ["127.0.0.2-127.0.0.11"]}]))
    line, _ = banner(m)
    assert line.startswith(b"220 "), line


def test_rhsbl_sender_domain(make_dns, make_moatd, sink):
    dns = make_dns(["spam.example.org.dbl.example.com. A 127.0.1.2"], zones=["dbl.example.com"])
    m = start_unready(dnsbl_moatd(make_moatd, sink, dns, [
        {"zone": "dbl.example.com", "type": "domain", "weight": 20}]))
    with m.smtp() as s:
        s.ehlo("client.example.net")
        code, text = s.mail("bob@spam.example.org")
        assert code == 550 and b"5.7.1" in text and b"RHSBL_DBL_EXAMPLE_COM" in text, (code, text)
        code, _ = s.mail("bob@good.example.org")
        assert code == 250
    # The HELO name is checked too, at HELO.
    with m.smtp() as s:
        code, text = s.ehlo("spam.example.org")
        assert code == 550 and b"RHSBL_DBL_EXAMPLE_COM" in text, (code, text)
    assert "dnsbl: lookup" not in m.log_text()  # clean names are NXDOMAIN, not errors


def test_refusing_list_is_skipped_and_mail_accepted(make_dns, make_moatd, sink):
    dns = make_dns(["1.0.0.127.bl.example.com. A 127.0.0.2"], zones=["bl.example.com"], servfail=["broken.example.net"])
    m = start_unready(dnsbl_moatd(make_moatd, sink, dns, [
        {"zone": "broken.example.net", "weight": 20},
        {"zone": "bl.example.com", "weight": 6}]))  # tags (>= 5), so X-Spam-Symbols shows it
    tok = token()
    m.send(make_message(tok, rcpt="user@example.com"), rcpts=("user@example.com",))
    got = sink.wait_token(tok)
    assert "DNSBL_BL_EXAMPLE_COM" in (got.header("X-Spam-Symbols") or ""), got.header_bytes
    assert "FILTER_FAILED_OPEN" not in (got.header("X-Spam-Symbols") or "")
    assert re.search(r"dnsbl: lookup of 1\.0\.0\.127\.broken\.example\.net failed, skipped", m.log_text())
    assert metric(m, "moat_dnsbl_errors_total") >= 1


def test_unanswered_list_is_skipped_within_the_budget(make_dns, make_moatd, sink):
    """A list that never answers costs the filter's deadline (4/5 of its
    budget), not a pipeline timeout: the other list still refuses, and with
    only the silent list the client gets its banner, even with fail = closed."""
    dns = make_dns(["1.0.0.127.bl.example.com. A 127.0.0.2"], zones=["bl.example.com"], timeout=["slow.example.net"])
    m = start_unready(dnsbl_moatd(make_moatd, sink, dns, [
        {"zone": "slow.example.net", "weight": 20},
        {"zone": "bl.example.com", "weight": 20}],
        filter=BASE_FILTERS + [{"name": "dnsbl", "fail": "closed", "budget": "1s"}]))
    t = time.monotonic()
    line, _ = banner(m)
    assert line.startswith(b"554 5.7.1 ") and b"DNSBL_BL_EXAMPLE_COM" in line, line
    assert time.monotonic() - t < 1.8
    assert "no answer within 800ms" in m.log_text()
    assert "timed out: over its" not in m.log_text()

    m.stop()
    m.reconfigure({"dnsbl": {"zone": [{"zone": "slow.example.net", "weight": 20}]}})
    start_unready(m)
    line, _ = banner(m)
    assert line.startswith(b"220 "), line


# ---------------------------------------------------------------- greylisting


def greylist_moatd(make_moatd, sink, **greylist):
    g = {"delay": "2s", "retry_window": "1h", "auto_allow_after": 0}
    g.update(greylist)
    return make_moatd(relay_domains=[relay_domain("example.com", sink.port)],
                      overrides={"greylist": g, "filter": BASE_FILTERS + [{"name": "greylist"}]})


def test_greylist_first_attempt_deferred_retry_accepted(make_moatd, sink):
    m = greylist_moatd(make_moatd, sink)
    tok = token()
    msg = make_message(tok, sender="bob@example.net", rcpt="user@example.com")
    with m.smtp() as s:
        s.ehlo("client.example.net")
        assert s.mail("bob@example.net")[0] == 250
        code, text = s.rcpt("user@example.com")
        assert code == 451 and text.startswith(b"4.7.1 Greylisted"), (code, text)
        code, text = s.rcpt("user@example.com")  # too early
        assert code == 451, (code, text)
    time.sleep(2.5)
    qid = m.send(msg, sender="bob@example.net", rcpts=("user@example.com",))
    assert qid
    sink.wait_token(tok)
    assert metric(m, "moat_greylist_total") >= 3


def test_greylist_refused_recipient_does_not_hold_back_the_others(make_moatd, sink):
    """One new triplet in a transaction defers only that recipient."""
    m = greylist_moatd(make_moatd, sink)
    with m.smtp() as s:
        s.ehlo("client.example.net")
        s.mail("bob@example.net")
        assert s.rcpt("a@example.com")[0] == 451
    time.sleep(2.5)
    tok = token()
    with m.smtp() as s:
        s.ehlo("client.example.net")
        s.mail("bob@example.net")
        assert s.rcpt("a@example.com")[0] == 250
        assert s.rcpt("b@example.com")[0] == 451
        code, text = s.data(make_message(tok, sender="bob@example.net", rcpt="a@example.com"))
        assert code == 250, (code, text)
    got = sink.wait_token(tok)
    assert got.recipients == ["a@example.com"]


@pytest.mark.asan
def test_greylisting_many_recipients_keeps_the_session(make_moatd, sink):
    """451s are deferrals, not client errors: 30 greylisted recipients (more
    than limits.hard_errors) do not end the session."""
    m = greylist_moatd(make_moatd, sink)
    with m.smtp() as s:
        s.ehlo("client.example.net")
        s.mail("list@example.net")
        for i in range(30):
            assert s.rcpt(f"u{i}@example.com")[0] == 451
        assert s.noop()[0] == 250


def test_greylist_state_survives_restart(make_moatd, sink):
    m = greylist_moatd(make_moatd, sink)
    with m.smtp() as s:
        s.ehlo("client.example.net")
        s.mail("carol@example.net")
        assert s.rcpt("user@example.com")[0] == 451
    m.restart()
    time.sleep(2.5)
    tok = token()
    m.send(make_message(tok, sender="carol@example.net", rcpt="user@example.com"),
           sender="carol@example.net", rcpts=("user@example.com",))
    sink.wait_token(tok)


def test_greylist_auto_allows_a_network_that_retried(make_moatd, sink):
    m = greylist_moatd(make_moatd, sink, auto_allow_after=1)
    with m.smtp() as s:
        s.ehlo("client.example.net")
        s.mail("dave@example.net")
        assert s.rcpt("user@example.com")[0] == 451
    time.sleep(2.5)
    with m.smtp() as s:
        s.ehlo("client.example.net")
        s.mail("dave@example.net")
        assert s.rcpt("user@example.com")[0] == 250
        s.rset()
        s.mail("someone-else@example.net")
        assert s.rcpt("other@example.com")[0] == 250  # a new triplet, but the network is allowed


def test_greylist_skips_whitelisted_and_authenticated(make_moatd, sink):
    m = greylist_moatd(make_moatd, sink, whitelist=["127.0.0.0/8"])
    tok = token()
    m.send(make_message(tok, sender="erin@example.net", rcpt="user@example.com"),
           sender="erin@example.net", rcpts=("user@example.com",))
    sink.wait_token(tok)

    m2 = greylist_moatd(make_moatd, sink)
    m2.add_user(USER, PASSWORD)
    tok = token()
    with m2.smtp("submissions") as s:
        s.ehlo("client.example.net")
        s.login(USER, PASSWORD)
        s.mail(USER)
        code, text = s.rcpt("user@example.com")
        assert code == 250, (code, text)
        assert s.data(make_message(tok, sender=USER, rcpt="user@example.com"))[0] == 250
    sink.wait_token(tok)
    # Unauthenticated on the same server: greylisted.
    with m2.smtp() as s:
        s.ehlo("client.example.net")
        s.mail("erin@example.net")
        assert s.rcpt("user@example.com")[0] == 451


# ---------------------------------------------------------------- rate limits


def ratelimit_moatd(make_moatd, sink, **limits):
    return make_moatd(relay_domains=[relay_domain("example.com", sink.port)],
                      overrides={"ratelimit": limits, "filter": [{"name": "ratelimit"}] + BASE_FILTERS},
                      start=False)


def test_connection_rate_421_and_counted(make_moatd, sink):
    m = start_unready(ratelimit_moatd(make_moatd, sink, connections="3/1h"))
    for _ in range(3):
        line, _ = banner(m)
        assert line.startswith(b"220 "), line
    line, closed = banner(m, wait_close=True)
    assert line.startswith(b"421 4.7.0 "), line
    assert b"RATELIMIT_CONNECTIONS" in line
    assert closed
    assert metric(m, "moat_ratelimit_hits_total") == 1
    # A reload rebuilds the filters but keeps the buckets.
    m.sighup()
    wait_until(lambda: "reload: configuration" in m.log_text(), 10, "reload")
    line, _ = banner(m)
    assert line.startswith(b"421 "), line
    # The submission listener counts the same client.
    line, _ = banner(m, "submission")
    assert line.startswith(b"421 "), line


@pytest.mark.asan
def test_message_rate_451_and_counted(make_moatd, sink):
    m = start_unready(ratelimit_moatd(make_moatd, sink, messages="2/1h", recipients="3/1h"))
    tok = token()
    with m.smtp() as s:
        s.ehlo("client.example.net")
        for i in range(2):
            assert s.mail("frank@example.net")[0] == 250
            assert s.rcpt("user@example.com")[0] == 250
            if i == 0:
                assert s.data(make_message(tok, sender="frank@example.net", rcpt="user@example.com"))[0] == 250
            else:
                s.rset()
        code, text = s.mail("frank@example.net")
        assert code == 451 and text.startswith(b"4.7.1 Rate limit exceeded"), (code, text)
        assert b"RATELIMIT_MESSAGES" in text
    sink.wait_token(tok)
    assert metric(m, "moat_ratelimit_hits_total") == 1


def test_recipient_rate_451(make_moatd, sink):
    m = start_unready(ratelimit_moatd(make_moatd, sink, recipients="2/1h"))
    tok = token()
    with m.smtp() as s:
        s.ehlo("client.example.net")
        assert s.mail("gina@example.net")[0] == 250
        assert s.rcpt("a@example.com")[0] == 250
        assert s.rcpt("b@example.com")[0] == 250
        code, text = s.rcpt("c@example.com")
        assert code == 451 and b"RATELIMIT_RECIPIENTS" in text, (code, text)
        # The refused recipient's deferral does not hold back the message.
        assert s.data(make_message(tok, sender="gina@example.net", rcpt="a@example.com"))[0] == 250
    got = sink.wait_token(tok)
    assert sorted(got.recipients) == ["a@example.com", "b@example.com"]

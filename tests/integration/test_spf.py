"""SPF (RFC 7208) through the real moatd against a real unbound on 127.0.0.1.

The client is 127.0.0.1, so the test zones publish records about that
address: pass, fail (550 5.7.23 when [scores] make SPF_FAIL reject),
softfail, neutral, none, permerror, temperror (451 4.4.3 with fail closed;
delivered with spf=temperror with fail open), the Received-SPF and
Authentication-Results fields of the delivered mail, the HELO identity for
<> (§2.4), [spf] check_helo, and no check for authenticated submission."""
import pytest

from moatlib import HOSTNAME, make_message, relay_domain, token

BASE_FILTERS = [{"name": "helo"}, {"name": "hops"}, {"name": "size"}]

RECORDS = [
    'pass.example.org. TXT "v=spf1 ip4:192.0.2.0/24 ip4:127.0.0.1 -all"',
    'fail.example.org. TXT "v=spf1 ip4:192.0.2.1 -all"',
    'soft.example.org. TXT "v=spf1 ~all"',
    'neutral.example.org. TXT "v=spf1 ?all"',
    'nospf.example.org. TXT "some other text"',
    'broken.example.org. TXT "v=spf1 ip4:127.0.0.1/33 -all"',
    'macro.example.org. TXT "v=spf1 exists:%{l}.allow.example.org -all"',
    'good.allow.example.org. A 127.0.0.2',
    'mx.example.org. TXT "v=spf1 mx -all"',
    'mx.example.org. MX 10 mail.mx.example.org.',
    'mail.mx.example.org. A 127.0.0.1',
    'helo.example.org. TXT "v=spf1 a -all"',
    'helo.example.org. A 127.0.0.1',
    'badhelo.example.org. TXT "v=spf1 -all"',
]


@pytest.fixture
def dns(make_dns):
    return make_dns(RECORDS, zones=["example.org."], servfail=["down.example.org"])


def spf_moatd(make_moatd, sink, dns, fail="closed", scores=None, spf=None, **extra):
    over = {"dns": {"upstream": dns.upstream, "timeout": "2s"},
            "filter": BASE_FILTERS + [{"name": "spf", "fail": fail}]}
    if scores:
        over["scores"] = scores
    if spf:
        over["spf"] = spf
    over.update(extra)
    return make_moatd(relay_domains=[relay_domain("example.test", sink.port)], overrides=over)


def transaction(m, sender, helo="client.example.org"):
    """EHLO, MAIL FROM, and (when accepted) RCPT and DATA; returns the MAIL
    reply, the DATA reply (or None) and the message token."""
    tok = token()
    raw = m.raw()
    try:
        raw.cmd(f"EHLO {helo}")
        mail = raw.cmd(f"MAIL FROM:<{sender}>")
        if mail[0] != 250:
            return mail, None, tok
        assert raw.cmd("RCPT TO:<user@example.test>")[0] == 250
        assert raw.cmd("DATA")[0] == 354
        msg = make_message(tok, sender=sender or "bounce@example.org")
        raw.send(msg + b".\r\n")
        return mail, raw.reply(), tok
    finally:
        raw.close()


def delivered(sink, tok):
    m = sink.wait_token(tok)
    return m, m.headers("Received-SPF"), m.header("Authentication-Results") or ""


@pytest.mark.asan
def test_pass_headers(make_moatd, sink, dns):
    m = spf_moatd(make_moatd, sink, dns)
    mail, data, tok = transaction(m, "alice@pass.example.org")
    assert mail[0] == 250 and data[0] == 250, (mail, data)
    msg, rspf, ar = delivered(sink, tok)
    assert len(rspf) == 1, rspf
    assert rspf[0].startswith(f"pass ({HOSTNAME}: domain of alice@pass.example.org designates 127.0.0.1"), rspf
    assert 'envelope-from="alice@pass.example.org"' in rspf[0] and "client-ip=127.0.0.1;" in rspf[0]
    assert "identity=mailfrom;" in rspf[0] and f"receiver={HOSTNAME};" in rspf[0]
    assert ar.startswith(f"{HOSTNAME};"), ar
    assert "spf=pass smtp.mailfrom=pass.example.org" in " ".join(ar.split()), ar
    # One of each, above the message's own fields.
    names = [n for n, _ in msg.header_fields()]
    assert names.count("Authentication-Results") == 1 and names.count("Received-SPF") == 1
    assert names.index("Received-SPF") < names.index("From")


def test_fail_tags_by_default_and_rejects_with_scores(make_moatd, sink, dns):
    m = spf_moatd(make_moatd, sink, dns)
    mail, data, tok = transaction(m, "alice@fail.example.org")
    assert mail[0] == 250 and data[0] == 250, (mail, data)   # SPF_FAIL (5) only tags
    msg, rspf, ar = delivered(sink, tok)
    assert rspf[0].startswith("fail ("), rspf
    assert "spf=fail smtp.mailfrom=fail.example.org" in " ".join(ar.split()), ar
    assert msg.header("X-Spam-Flag") == "YES", msg.header_fields()   # score 5 = the tag threshold
    assert "SPF_FAIL" in (msg.header("X-Spam-Symbols") or msg.header("X-Spam-Status") or ""), msg.header_fields()
    m.stop()
    m2 = spf_moatd(make_moatd, sink, dns, scores={"SPF_FAIL": 20})
    mail, data, tok = transaction(m2, "alice@fail.example.org")
    assert mail[0] == 550 and mail[1].startswith("5.7.23"), mail
    sink.assert_quiet(1.0, expect=1)


@pytest.mark.parametrize("domain,result", [
    ("soft.example.org", "softfail"),
    ("neutral.example.org", "neutral"),
    ("nospf.example.org", "none"),
    ("nxdomain.example.org", "none"),
    ("broken.example.org", "permerror"),
    ("mx.example.org", "pass"),
])
def test_results(make_moatd, sink, dns, domain, result):
    m = spf_moatd(make_moatd, sink, dns)
    mail, data, tok = transaction(m, f"bob@{domain}")
    assert mail[0] == 250 and data[0] == 250, (mail, data)
    _, rspf, ar = delivered(sink, tok)
    assert rspf[0].split()[0] == result, rspf
    assert f"spf={result} smtp.mailfrom={domain}" in " ".join(ar.split()), ar
    if result == "permerror":
        assert "problem=" in rspf[0], rspf


def test_macros_in_the_record(make_moatd, sink, dns):
    m = spf_moatd(make_moatd, sink, dns)
    mail, data, tok = transaction(m, "good@macro.example.org")
    assert data[0] == 250
    assert delivered(sink, tok)[1][0].startswith("pass"), "exists:%{l}.allow... should match good."
    mail, data, tok = transaction(m, "evil@macro.example.org")
    assert delivered(sink, tok)[1][0].startswith("fail")


@pytest.mark.asan
def test_temperror_fail_closed_is_451(make_moatd, sink, dns):
    m = spf_moatd(make_moatd, sink, dns)
    mail, data, _ = transaction(m, "alice@down.example.org")
    assert mail[0] == 451 and mail[1].startswith("4.4.3"), mail
    sink.assert_quiet(1.0)
    metrics = m.ctl("metrics", check=True).stdout_text
    assert 'moat_spf_results_total{result="temperror",identity="mailfrom"} 1' in metrics, metrics


def test_temperror_fail_open_delivers_with_temperror(make_moatd, sink, dns):
    m = spf_moatd(make_moatd, sink, dns, fail="open")
    mail, data, tok = transaction(m, "alice@down.example.org")
    assert mail[0] == 250 and data[0] == 250, (mail, data)
    _, rspf, ar = delivered(sink, tok)
    assert rspf[0].startswith("temperror"), rspf
    assert "spf=temperror smtp.mailfrom=down.example.org" in " ".join(ar.split()), ar


def test_null_sender_uses_helo_identity(make_moatd, sink, dns):
    m = spf_moatd(make_moatd, sink, dns)
    mail, data, tok = transaction(m, "", helo="helo.example.org")
    assert mail[0] == 250 and data[0] == 250, (mail, data)
    _, rspf, ar = delivered(sink, tok)
    assert rspf[0].startswith("pass"), rspf
    assert "identity=helo;" in rspf[0] and 'envelope-from="postmaster@helo.example.org"' in rspf[0], rspf
    assert "spf=pass smtp.helo=helo.example.org" in " ".join(ar.split()), ar


def test_check_helo_adds_a_second_result(make_moatd, sink, dns):
    m = spf_moatd(make_moatd, sink, dns, spf={"check_helo": True})
    mail, data, tok = transaction(m, "alice@pass.example.org", helo="badhelo.example.org")
    assert data[0] == 250
    _, rspf, ar = delivered(sink, tok)
    assert [r.split()[0] for r in rspf] == ["pass", "fail"], rspf
    flat = " ".join(ar.split())
    assert "spf=pass smtp.mailfrom=pass.example.org" in flat and "spf=fail smtp.helo=badhelo.example.org" in flat, ar
    assert flat.index("smtp.mailfrom") < flat.index("smtp.helo")   # DMARC reads the first spf result


def test_second_transaction_gets_its_own_result(make_moatd, sink, dns):
    """ctx lives from MAIL FROM to end of DATA and is reset per transaction:
    no Received-SPF or A-R entry carries over or doubles."""
    m = spf_moatd(make_moatd, sink, dns)
    tok1, tok2 = token(), token()
    raw = m.raw()
    try:
        raw.cmd("EHLO client.example.org")
        for sender, tok in (("a@pass.example.org", tok1), ("b@soft.example.org", tok2)):
            assert raw.cmd(f"MAIL FROM:<{sender}>")[0] == 250
            assert raw.cmd("RCPT TO:<user@example.test>")[0] == 250
            assert raw.cmd("DATA")[0] == 354
            raw.send(make_message(tok, sender=sender) + b".\r\n")
            assert raw.reply()[0] == 250
    finally:
        raw.close()
    _, r1, a1 = delivered(sink, tok1)
    _, r2, a2 = delivered(sink, tok2)
    assert len(r1) == 1 and r1[0].startswith("pass") and "spf=pass" in a1 and "softfail" not in a1
    assert len(r2) == 1 and r2[0].startswith("softfail") and "spf=softfail" in a2 and "spf=pass" not in a2


@pytest.mark.asan
def test_forged_results_with_our_authserv_id_are_removed(make_moatd, sink, dns):
    """RFC 8601 §5: an inbound Authentication-Results field that claims our
    authserv-id (any case, folded, even `Name :`) is removed; others stay."""
    m = spf_moatd(make_moatd, sink, dns)
    tok = token()
    forged = [f"Authentication-Results: {HOSTNAME.upper()}; spf=pass",
              "\tsmtp.mailfrom=forged.example.org",
              f"Authentication-Results : (c) {HOSTNAME}; dmarc=pass header.from=forged.example.org",
              "Authentication-Results: upstream.example.net; dkim=pass header.d=example.net"]
    msg = make_message(tok, sender="alice@fail.example.org", extra_headers=forged)
    raw = m.raw()
    try:
        raw.cmd("EHLO client.example.org")
        assert raw.cmd("MAIL FROM:<alice@fail.example.org>")[0] == 250
        assert raw.cmd("RCPT TO:<user@example.test>")[0] == 250
        assert raw.cmd("DATA")[0] == 354
        raw.send(msg + b".\r\n")
        assert raw.reply()[0] == 250
    finally:
        raw.close()
    got = sink.wait_token(tok)
    ars = [" ".join(v.split()) for n, v in got.header_fields() if n.strip().lower() == "authentication-results"]
    ours = [a for a in ars if a.lower().startswith(HOSTNAME.lower())]
    assert len(ours) == 1 and "spf=fail smtp.mailfrom=fail.example.org" in ours[0], ars
    assert "forged" not in " ".join(ours), ars
    assert any(a.startswith("upstream.example.net; dkim=pass") for a in ars), ars

"""DMARC (RFC 7489) through the real moatd, its spf and dkim filters and a
real unbound: p=reject fails with 550 5.7.1 at the end of DATA, p=quarantine
is held, p=none is delivered with dmarc=fail, aligned SPF or DKIM is
delivered with dmarc=pass, a DNS SERVFAIL is 451 4.4.3, a second From
cannot dodge a p=reject policy, and aggregate report rows are recorded."""
import re
import sqlite3
import time

import pytest

from moatlib import HOSTNAME, entry_id, entry_state, make_message, relay_domain, token, wait_until

dkim = pytest.importorskip("dkim", reason="python3-dkim (dkimpy) is not installed")

ZONES = ["example.com", "example.org"]
RECORDS = [
    '_dmarc.reject.example.com. TXT "v=DMARC1; p=reject"',
    '_dmarc.quar.example.com. TXT "v=DMARC1; p=quarantine"',
    '_dmarc.none.example.com. TXT "v=DMARC1; p=none"',
    '_dmarc.good.example.com. TXT "v=DMARC1; p=reject; rua=mailto:agg@good.example.com"',
    'good.example.com. TXT "v=spf1 ip4:127.0.0.1 -all"',
    'bad-spf.example.com. TXT "v=spf1 -all"',
]
RCPT = "user@example.net"


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory):
    """A throwaway RSA-2048 key for good.example.com (selector sel) and its TXT record."""
    import subprocess
    d = tmp_path_factory.mktemp("dkimkey")
    key = d / "k.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    import base64
    p = base64.b64encode(pub).decode()
    # TXT strings are at most 255 bytes each.
    parts = " ".join(f'"{p[i:i + 200]}"' for i in range(0, len(p), 200))
    return key.read_bytes(), f'sel._domainkey.good.example.com. TXT "v=DKIM1; k=rsa; p=" {parts}'


@pytest.fixture
def world(make_dns, make_sink, make_moatd, dkim_key):
    def start(fail="closed", servfail=(), overrides=None):
        dns = make_dns(records=RECORDS + [dkim_key[1]], zones=ZONES, servfail=servfail)
        sink = make_sink("sink")
        o = {"dns": {"upstream": dns.upstream},
             "filter": [{"name": "spf"}, {"name": "dkim"}, {"name": "dmarc", "fail": fail}]}
        o.update(overrides or {})
        m = make_moatd(relay_domains=[relay_domain("example.net", sink.port)], overrides=o)
        return m, sink
    return start


def data_reply(m, msg: bytes, sender: str) -> tuple[int, str]:
    with m.smtp() as s:
        s.ehlo("client.example.org")
        code, _ = s.mail(sender)
        assert code == 250
        code, _ = s.rcpt(RCPT)
        assert code == 250
        code, text = s.data(msg)
        return code, text.decode(errors="replace")


def our_ar(captured) -> str:
    ar = [v for v in captured.headers("Authentication-Results") if v.startswith(HOSTNAME + ";")]
    assert len(ar) == 1, captured.header_fields()
    return re.sub(r"\s+", " ", ar[0])


def dmarc_result(captured) -> str:
    m = re.search(r"dmarc=[^;]*", our_ar(captured))
    assert m, our_ar(captured)
    return m.group(0).strip()


@pytest.mark.asan
def test_reject_policy_550_at_end_of_data(world):
    m, sink = world()
    tok = token()
    code, text = data_reply(m, make_message(tok, sender="ceo@reject.example.com", rcpt=RCPT),
                            "bounce@elsewhere.example.org")
    assert code == 550 and text.startswith("5.7.1"), (code, text)
    assert "DMARC" in text, text
    sink.assert_quiet(1.5)


def test_quarantine_policy_is_held(world):
    m, sink = world()
    tok = token()
    qid = m.send(make_message(tok, sender="ceo@quar.example.com", rcpt=RCPT),
                 sender="bounce@elsewhere.example.org", rcpts=[RCPT])
    assert qid
    # held in the quarantine store (docs/quarantine.md), not the queue
    e = m.ctl_json("quarantine", "show", qid)
    assert e["kind"] == "quarantine" and "DMARC" in e["reason"], e
    sink.assert_quiet(2.0)


def test_none_policy_delivered_with_dmarc_fail(world):
    m, sink = world()
    tok = token()
    m.send(make_message(tok, sender="ceo@none.example.com", rcpt=RCPT),
           sender="bounce@elsewhere.example.org", rcpts=[RCPT])
    got = sink.wait_token(tok)
    assert dmarc_result(got) == "dmarc=fail header.from=none.example.com policy.dmarc=none"


def test_aligned_spf_passes(world):
    m, sink = world()
    tok = token()
    m.send(make_message(tok, sender="ceo@good.example.com", rcpt=RCPT),
           sender="bounce@good.example.com", rcpts=[RCPT])
    got = sink.wait_token(tok)
    ar = our_ar(got)
    assert "spf=pass" in ar, ar
    assert dmarc_result(got) == "dmarc=pass header.from=good.example.com policy.dmarc=reject"


@pytest.mark.asan
def test_aligned_dkim_passes_despite_spf_fail(world, dkim_key):
    m, sink = world()
    tok = token()
    msg = make_message(tok, sender="ceo@good.example.com", rcpt=RCPT)
    sig = dkim.sign(msg, b"sel", b"good.example.com", dkim_key[0], include_headers=[b"from", b"to", b"subject"])
    m.send(sig + msg, sender="x@bad-spf.example.com", rcpts=[RCPT])
    got = sink.wait_token(tok)
    ar = our_ar(got)
    assert "dkim=pass" in ar and "spf=fail" in ar, ar
    assert dmarc_result(got) == "dmarc=pass header.from=good.example.com policy.dmarc=reject"


def test_second_from_cannot_dodge_reject(world, dkim_key):
    """Composition Kills: a From the gateway passes (good.example.com, DKIM
    aligned) next to the one the victim sees (reject.example.com)."""
    m, sink = world()
    tok = token()
    msg = make_message(tok, sender="ceo@good.example.com", rcpt=RCPT)
    sig = dkim.sign(msg, b"sel", b"good.example.com", dkim_key[0], include_headers=[b"from", b"to", b"subject"])
    code, text = data_reply(m, sig + b"From: ceo@reject.example.com\r\n" + msg, "bounce@good.example.com")
    assert code == 550 and text.startswith("5.7.1"), (code, text)
    code, text = data_reply(m, sig + msg.replace(b"From: <", b"From : <"), "bounce@good.example.com")
    assert code == 550, (code, text)   # "From :": ambiguous, never a pass; good.example.com is p=reject
    sink.assert_quiet(1.0)


def test_servfail_is_temperror(world):
    m, sink = world(servfail=["_dmarc.broken.example.com"])
    code, text = data_reply(m, make_message(token(), sender="a@broken.example.com", rcpt=RCPT),
                            "bounce@elsewhere.example.org")
    assert code == 451 and text.startswith("4.4.3"), (code, text)


def test_servfail_fail_open_delivers_temperror(world):
    m, sink = world(fail="open", servfail=["_dmarc.broken.example.com"])
    tok = token()
    m.send(make_message(tok, sender="a@broken.example.com", rcpt=RCPT),
           sender="bounce@elsewhere.example.org", rcpts=[RCPT])
    got = sink.wait_token(tok)
    assert dmarc_result(got) == "dmarc=temperror header.from=broken.example.com"


def test_override_and_report_rows(world):
    m, sink = world(overrides={"dmarc": {"override": [{"domain": "reject.example.com", "policy": "none"}]}})
    tok = token()
    m.send(make_message(tok, sender="ceo@reject.example.com", rcpt=RCPT),
           sender="bounce@elsewhere.example.org", rcpts=[RCPT])
    got = sink.wait_token(tok)
    assert dmarc_result(got) == "dmarc=fail header.from=reject.example.com policy.dmarc=reject"
    tok2 = token()
    m.send(make_message(tok2, sender="ceo@good.example.com", rcpt=RCPT),
           sender="bounce@good.example.com", rcpts=[RCPT])
    sink.wait_token(tok2)
    db = m.data_dir / "db" / "dmarc.sqlite"

    def read_rows():
        with sqlite3.connect(db) as c:
            return c.execute("SELECT source_ip, header_from, policy, disposition, spf, spf_domain, count"
                             " FROM dmarc_rows ORDER BY header_from").fetchall()
    # Rows are written on the blocking pool after the message goes on
    # (filters/dmarc/dmarc.cpp record_report): give the last one a moment.
    deadline = time.monotonic() + 5
    rows = read_rows()
    while len(rows) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = read_rows()
    assert rows == [("127.0.0.1", "good.example.com", "reject", "none", "pass", "good.example.com", 1),
                    ("127.0.0.1", "reject.example.com", "reject", "none", "fail", "elsewhere.example.org", 1)]

"""DKIM (RFC 6376, RFC 8463) through the real moatd and a real unbound:
inbound signatures made by dkimpy are verified (pass, fail on an altered
body, temperror on a SERVFAIL key: 451 4.4.3 when the filter fails closed,
delivered with dkim=temperror when it fails open), and the results reach the
delivered message's Authentication-Results; mail from an authenticated user
is signed with RSA-2048 and Ed25519 keys made by `moatctl dkim keygen`, and
both signatures verify with Debian's dkimpy and with OpenDKIM's
opendkim-testmsg."""
import os
import re
import shutil
import smtplib
import stat
import subprocess

import pytest

from dnsserver import DnsServer
from moatlib import HOSTNAME, insecure_tls_context, make_message, relay_domain, token

dkim = pytest.importorskip("dkim", reason="python3-dkim (dkimpy) is not installed")

USER, PASSWORD = "alice@example.org", "dkim test password"
SENDER_DOMAIN = "sender.example.com"     # signs inbound test mail (with dkimpy)


def keygen(moat_bin, workdir, domain, selector, type_):
    r = subprocess.run([str(moat_bin / "moatctl"), "dkim", "keygen", domain, selector, "--type", type_,
                        "--dir", str(workdir / "keys")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith(f"{selector}._domainkey.{domain}. IN TXT \""), line
    assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', line)), line   # RFC 1035 character-strings
    key = workdir / "keys" / f"{domain}.{selector}.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    record = "".join(re.findall(r'"([^"]*)"', line))
    name, _, rest = line.partition(" ")
    return key, record, f"{name} 300 {rest}"


def dnsfunc_for(records: dict):
    def dnsfunc(name, timeout=5):
        n = (name.decode() if isinstance(name, bytes) else name).lower().rstrip(".")
        v = records.get(n)
        return v.encode() if v else None
    return dnsfunc


def dkimpy_verify_all(message: bytes, records: dict) -> list[bool]:
    d = dkim.DKIM(message)
    n = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
    out = []
    for i in range(n):
        try:
            out.append(bool(dkim.DKIM(message).verify(idx=i, dnsfunc=dnsfunc_for(records))))
        except dkim.DKIMException:
            out.append(False)
    return out


def only_signature(message: bytes, keep: int) -> bytes:
    """The message with every DKIM-Signature field but the keep-th removed
    (opendkim-testmsg reports one verdict per message)."""
    head, sep, body = message.partition(b"\r\n\r\n")
    fields, cur = [], []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and cur:
            cur.append(line)
        else:
            if cur:
                fields.append(cur)
            cur = [line]
    fields.append(cur)
    out, n = [], 0
    for f in fields:
        if f[0].lower().startswith(b"dkim-signature:"):
            n += 1
            if n - 1 != keep:
                continue
        out.extend(f)
    return b"\r\n".join(out) + sep + body


def opendkim_testmsg(message: bytes, records: list[str], workdir, name: str) -> subprocess.CompletedProcess:
    """opendkim-testmsg verifies through the libc resolver (port 53 of
    /etc/resolv.conf), so it runs in its own network and mount namespace with
    an unbound on 127.0.0.1:53 serving `records` and a resolv.conf naming it."""
    if not shutil.which("opendkim-testmsg"):
        pytest.skip("opendkim-testmsg (opendkim-tools) is not installed")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("opendkim-testmsg needs a private network namespace (root and unshare)")
    d = DnsServer(workdir, records, name=name)
    d.port = 53
    d.workdir.mkdir(parents=True, exist_ok=True)
    conf = d.workdir / "unbound.conf"
    conf.write_text(d.config())
    resolv = d.workdir / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    msg = d.workdir / "message.eml"
    msg.write_bytes(message)
    probe = records[0].split()[0]
    # unbound's output goes nowhere: it must not hold our pipes open.
    script = f"""
ip link set lo up
mount --bind {resolv} /etc/resolv.conf
/usr/sbin/unbound -d -c {conf} >/dev/null 2>&1 &
ub=$!
for i in $(seq 100); do
  dig +short +time=1 +tries=1 @127.0.0.1 {probe} TXT 2>/dev/null | grep -q DKIM1 && break
  sleep 0.1
done
timeout 30 opendkim-testmsg < {msg}
rc=$?
kill $ub
exit $rc
"""
    r = subprocess.run(["unshare", "--net", "--mount", "--fork", "sh", "-c", script],
                       capture_output=True, text=True, timeout=60)
    if "unshare failed" in r.stderr or "Operation not permitted" in r.stderr:
        pytest.skip(f"no network namespace here: {r.stderr.strip()}")
    return r


@pytest.fixture
def keys(moat_bin, workdir):
    """Our signing keys for example.org (RSA-2048, Ed25519) and a key pair
    for the outside sender whose mail dkimpy signs."""
    out = {}
    for sel, t in (("rsa2026", "rsa"), ("ed2026", "ed25519")):
        out[sel] = keygen(moat_bin, workdir, "example.org", sel, t)
    out["sender"] = keygen(moat_bin, workdir, SENDER_DOMAIN, "s1", "rsa")
    return out


@pytest.fixture
def world(keys, make_dns, make_sink, make_moatd):
    """unbound with the three key records, a sink for example.net (inbound),
    a smarthost sink (outbound), moatd with the dkim filter signing for
    example.org, and one user."""
    def start(servfail=(), fail="closed", timeout=(), dns_timeout="10s", budget="5000ms"):
        # A name that must time out has no data here (local data would answer it).
        records = [k[2] for k in keys.values() if k[2].split()[0].rstrip(".") not in timeout]
        dns = make_dns(records=records, servfail=servfail, timeout=timeout)
        sink = make_sink("sink")
        outside = make_sink("smarthost")
        m = make_moatd(relay_domains=[relay_domain("example.net", sink.port)], overrides={
            "dns": {"upstream": dns.upstream, "timeout": dns_timeout},
            "relay": {"smarthost": f"[127.0.0.1]:{outside.port}"},
            "filter": [{"name": "dkim", "fail": fail, "budget": budget}],
            "dkim": {"sign": [{"domain": "example.org", "selector": sel, "key": str(keys[sel][0])}
                              for sel in ("rsa2026", "ed2026")]},
        })
        m.add_user(USER, PASSWORD)
        return m, sink, outside
    return start


def signed_inbound(keys, tok, body="Hello from the sender.\r\n"):
    msg = make_message(tok, sender=f"bob@{SENDER_DOMAIN}", rcpt="user@example.net", body=body)
    key = keys["sender"][0].read_bytes()
    sig = dkim.sign(msg, b"s1", SENDER_DOMAIN.encode(), key, include_headers=[b"from", b"to", b"subject"])
    return sig + msg


def dkim_results(captured) -> list[str]:
    ar = [v for v in captured.headers("Authentication-Results") if v.startswith(HOSTNAME + ";")]
    assert len(ar) == 1, captured.header_fields()
    # Values that are not RFC 2045 tokens ('/' in b=) come quoted; compare unquoted.
    return [r.replace('"', "") for r in re.findall(r"dkim=\S+[^;]*", ar[0])]


@pytest.mark.asan
def test_inbound_pass_in_authentication_results(keys, world):
    m, sink, _ = world()
    tok = token()
    msg = signed_inbound(keys, tok)
    b8 = re.search(rb"b=([A-Za-z0-9+/]{8})", re.sub(rb"\s+", b"", msg.split(b"bh=")[1])).group(1).decode()
    m.send(msg, sender=f"bob@{SENDER_DOMAIN}", rcpts=["user@example.net"])
    got = sink.wait_token(tok)
    res = dkim_results(got)
    assert len(res) == 1, res
    assert res[0].startswith("dkim=pass"), res
    assert f"header.d={SENDER_DOMAIN}" in res[0] and "header.s=s1" in res[0], res
    assert "header.a=rsa-sha256" in res[0] and f"header.b={b8}" in res[0], res
    # The signature itself arrives untouched: dkimpy still verifies it at the sink.
    records = {f"s1._domainkey.{SENDER_DOMAIN}": keys["sender"][1]}
    assert dkimpy_verify_all(got.content, records) == [True]


def test_inbound_altered_body_fails(keys, world):
    m, sink, _ = world()
    tok = token()
    msg = signed_inbound(keys, tok).replace(b"Hello from the sender.", b"Hello from the forger.")
    m.send(msg, sender=f"bob@{SENDER_DOMAIN}", rcpts=["user@example.net"])
    res = dkim_results(sink.wait_token(tok))
    assert res[0].startswith("dkim=fail"), res
    assert "body hash did not verify" in res[0], res


def test_unsigned_inbound_is_none(world):
    m, sink, _ = world()
    tok = token()
    m.send(make_message(tok, rcpt="user@example.net"), rcpts=["user@example.net"])
    assert dkim_results(sink.wait_token(tok)) == ["dkim=none"]


def test_key_servfail_answers_451_when_closed(keys, world):
    m, sink, _ = world(servfail=[f"s1._domainkey.{SENDER_DOMAIN}"])
    tok = token()
    with m.smtp() as s, pytest.raises(smtplib.SMTPDataError) as e:
        s.sendmail(f"bob@{SENDER_DOMAIN}", ["user@example.net"], signed_inbound(keys, tok))
    assert e.value.smtp_code == 451
    assert e.value.smtp_error.decode().startswith("4.4.3"), e.value.smtp_error
    sink.assert_quiet(1.0)


def test_key_timeout_answers_451_4_4_3_within_budget(keys, world):
    # DNS timeout (2s) inside the filter budget (6s): the DNS temperror
    # decides the reply, not the budget.
    m, sink, _ = world(timeout=[f"s1._domainkey.{SENDER_DOMAIN}"], dns_timeout="2s", budget="6s")
    tok = token()
    with m.smtp() as s, pytest.raises(smtplib.SMTPDataError) as e:
        s.sendmail(f"bob@{SENDER_DOMAIN}", ["user@example.net"], signed_inbound(keys, tok))
    assert e.value.smtp_code == 451
    assert e.value.smtp_error.decode().startswith("4.4.3"), e.value.smtp_error
    sink.assert_quiet(0.5)


def test_key_servfail_delivered_as_temperror_when_open(keys, world):
    m, sink, _ = world(servfail=[f"s1._domainkey.{SENDER_DOMAIN}"], fail="open")
    tok = token()
    m.send(signed_inbound(keys, tok), sender=f"bob@{SENDER_DOMAIN}", rcpts=["user@example.net"])
    res = dkim_results(sink.wait_token(tok))
    assert res[0].startswith("dkim=temperror"), res


def send_authenticated(m, tok, sender_addr=USER):
    msg = make_message(tok, sender=sender_addr, rcpt="carol@outside.example.net",
                       body="Signed by moat.\r\n\r\nSecond paragraph.\r\n")
    with m.smtp("submission") as s:
        s.ehlo("client.example.org")
        s.starttls(context=insecure_tls_context())
        s.ehlo("client.example.org")
        s.login(USER, PASSWORD)
        s.sendmail(USER, ["carol@outside.example.net"], msg)
    return msg


@pytest.mark.asan
def test_outbound_signed_rsa_and_ed25519_verify_with_dkimpy_and_opendkim(keys, world, workdir):
    m, _, outside = world()
    tok = token()
    send_authenticated(m, tok)
    got = outside.wait_token(tok)
    sigs = got.headers("DKIM-Signature")
    assert len(sigs) == 2, got.header_fields()
    algs = sorted(re.search(r"a=([\w-]+)", s).group(1) for s in sigs)
    assert algs == ["ed25519-sha256", "rsa-sha256"], sigs
    for s in sigs:
        assert "d=example.org" in s and "c=relaxed/relaxed" in s, s
    records = {f"{sel}._domainkey.example.org": keys[sel][1] for sel in ("rsa2026", "ed2026")}
    assert dkimpy_verify_all(got.content, records) == [True, True]
    zone = [keys[sel][2] for sel in ("rsa2026", "ed2026")]
    for i in range(2):
        r = opendkim_testmsg(only_signature(got.content, i), zone, workdir, f"ns{i}")
        assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", (i, r)
    # A changed body is caught by both, which shows the checks are real.
    forged = got.content.replace(b"Second paragraph.", b"Changed paragraph.")
    assert dkimpy_verify_all(forged, records) == [False, False]
    r = opendkim_testmsg(only_signature(forged, 0), zone, workdir, "ns-forged")
    assert r.returncode != 0 or r.stderr.strip(), r


def test_outbound_from_other_domain_not_signed(keys, world):
    m, _, outside = world()
    tok = token()
    send_authenticated(m, tok, sender_addr="alice@elsewhere.example.com")
    got = outside.wait_token(tok)
    assert got.headers("DKIM-Signature") == []


def test_missing_key_file_refuses_to_start(keys, make_moatd, make_dns, workdir):
    dns = make_dns(records=[keys["sender"][2]])
    m = make_moatd(start=False, overrides={
        "dns": {"upstream": dns.upstream},
        "filter": [{"name": "dkim"}],
        "dkim": {"sign": [{"domain": "example.org", "selector": "gone", "key": str(workdir / "nope.pem")}]},
    })
    m.start(wait=False)
    assert m.wait_exit(20) != 0
    assert "nope.pem" in m.log_text() and "dkim.sign" in m.log_text(), m.log_tail()

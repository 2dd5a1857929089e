"""ARC (RFC 8617) through the real moatd and a real unbound, checked against
Debian's dkimpy as the reference: a chain sealed upstream by dkimpy verifies
(arc=pass in our Authentication-Results) and moatd's own set on top verifies
with dkimpy at the next hop; unsealed mail gets a first set (cv=none); a
message altered after sealing is arc=fail and sealed cv=fail."""
import base64
import re
import subprocess

import pytest

from moatlib import HOSTNAME, make_message, relay_domain, token

dkim = pytest.importorskip("dkim", reason="python3-dkim (dkimpy) is not installed")

RCPT = "user@example.net"
UPSTREAM = "list.example.com"      # a mailing list that seals before us
OURS = "gw.example.org"            # our [arc] domain


def rsa_key(path):
    subprocess.run(["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(path), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return path.read_bytes(), "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def txt_line(name, record):
    parts = " ".join(f'"{record[i:i + 200]}"' for i in range(0, len(record), 200))
    return f"{name}. TXT {parts}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("arckeys")
    return {"up": (d / "up.pem", *rsa_key(d / "up.pem")), "gw": (d / "gw.pem", *rsa_key(d / "gw.pem"))}


@pytest.fixture(params=["arc", "spf+dkim+arc+dmarc"])
def world(request, keys, make_dns, make_sink, make_moatd):
    filters = [{"name": n} for n in request.param.split("+")]
    names = {f"up._domainkey.{UPSTREAM}": keys["up"][2], f"gw._domainkey.{OURS}": keys["gw"][2]}
    dns = make_dns(records=[txt_line(n, r) for n, r in names.items()], zones=["example.com", "example.org"])
    sink = make_sink("sink")
    m = make_moatd(relay_domains=[relay_domain("example.net", sink.port)], overrides={
        "dns": {"upstream": dns.upstream},
        "filter": filters,
        "arc": {"domain": OURS, "selector": "gw", "key": str(keys["gw"][0])},
    })

    def dnsfunc(name, timeout=5):
        n = (name.decode() if isinstance(name, bytes) else name).lower().rstrip(".")
        v = names.get(n)
        return v.encode() if v else None
    return m, sink, dnsfunc


def upstream_sealed(keys, tok):
    msg = (f"Authentication-Results: {UPSTREAM}; spf=pass smtp.mailfrom={UPSTREAM}\r\n").encode() + \
        make_message(tok, sender=f"owner@{UPSTREAM}", rcpt=RCPT)
    sig = dkim.arc_sign(msg, b"up", UPSTREAM.encode(), keys["up"][1], UPSTREAM.encode(),
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return b"".join(sig) + msg


def arc_result(captured) -> str:
    ar = [v for v in captured.headers("Authentication-Results") if v.startswith(HOSTNAME + ";")]
    assert len(ar) == 1, captured.header_fields()
    m = re.search(r"arc=\S+", ar[0])
    assert m, ar[0]
    return m.group(0).rstrip(";")


def our_set(captured) -> dict:
    out = {}
    for name in ("ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results"):
        vals = [v for v in captured.headers(name) if f"d={OURS}" in v or f"{HOSTNAME};" in v]
        assert len(vals) == 1, (name, captured.header_fields())
        out[name] = re.sub(r"\s+", " ", vals[0])
    return out


@pytest.mark.asan
def test_upstream_chain_passes_and_our_seal_verifies_with_dkimpy(keys, world):
    m, sink, dnsfunc = world
    tok = token()
    msg = upstream_sealed(keys, tok)
    cv, _, why = dkim.arc_verify(msg, dnsfunc=dnsfunc)
    assert cv == b"pass", why                        # the reference agrees on the input
    m.send(msg, sender=f"owner@{UPSTREAM}", rcpts=[RCPT])
    got = sink.wait_token(tok)
    assert arc_result(got) == "arc=pass"
    ours = our_set(got)
    assert "i=2;" in ours["ARC-Seal"] and "cv=pass" in ours["ARC-Seal"], ours
    assert ours["ARC-Authentication-Results"].startswith(f"i=2; {HOSTNAME};"), ours
    assert "arc=pass" in ours["ARC-Authentication-Results"], ours
    if "spf=" in got.headers("Authentication-Results")[0]:
        # With spf and dkim before arc, the seal carries their results too.
        assert "spf=none" in ours["ARC-Authentication-Results"], ours
        assert "dkim=" in ours["ARC-Authentication-Results"], ours
    cv, _, why = dkim.arc_verify(got.content, dnsfunc=dnsfunc)
    assert cv == b"pass", why


def test_unsealed_mail_gets_a_first_set(world):
    m, sink, dnsfunc = world
    tok = token()
    m.send(make_message(tok, rcpt=RCPT), rcpts=[RCPT])
    got = sink.wait_token(tok)
    assert arc_result(got) == "arc=none"
    ours = our_set(got)
    assert "i=1;" in ours["ARC-Seal"] and "cv=none" in ours["ARC-Seal"], ours
    cv, _, why = dkim.arc_verify(got.content, dnsfunc=dnsfunc)
    assert cv == b"pass", why


def test_altered_after_sealing_fails(keys, world):
    m, sink, dnsfunc = world
    tok = token()
    msg = upstream_sealed(keys, tok).replace(b"Hello from the moat test suite.", b"Hello from the forger.")
    cv, _, _ = dkim.arc_verify(msg, dnsfunc=dnsfunc)
    assert cv == b"fail"
    m.send(msg, sender=f"owner@{UPSTREAM}", rcpts=[RCPT])
    got = sink.wait_token(tok)
    assert arc_result(got) == "arc=fail"
    assert "cv=fail" in our_set(got)["ARC-Seal"]
    cv, _, why = dkim.arc_verify(got.content, dnsfunc=dnsfunc)
    assert cv != b"pass", why          # dkimpy stops at the cv=fail seal without a verdict

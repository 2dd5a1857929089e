"""The DNS test server answers what the sender-check tests rely on:
static records, NXDOMAIN vs NODATA, refused and unanswered names."""
import subprocess


def dig(dns, name, rtype="TXT", timeout=2):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(dns.port), "+time=%d" % timeout, "+tries=1",
                          name, rtype], capture_output=True, text=True)
    return out.stdout


def test_records_nxdomain_servfail_timeout(make_dns):
    dns = make_dns(['example.org. TXT "v=spf1 ip4:192.0.2.0/24 -all"', "mx.example.org. A 192.0.2.1"],
                   servfail=["broken.example.net"], timeout=["slow.example.net"])
    out = dig(dns, "example.org")
    assert "status: NOERROR" in out and '"v=spf1 ip4:192.0.2.0/24 -all"' in out
    assert "status: NOERROR" in dig(dns, "mx.example.org", "TXT") and "ANSWER: 0" in dig(dns, "mx.example.org", "TXT")
    assert "status: NXDOMAIN" in dig(dns, "nothere.example.org")
    assert "status: REFUSED" in dig(dns, "x.broken.example.net")
    slow = dig(dns, "x.slow.example.net", timeout=1)
    assert "timed out" in slow or "status: SERVFAIL" in slow

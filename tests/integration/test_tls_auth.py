"""STARTTLS and implicit TLS seen through openssl s_client; AUTH only over
TLS; submission needs AUTH before MAIL; authenticated relay to other domains."""
import re
import smtplib
import ssl
import subprocess
import time

import pytest

from moatlib import HOSTNAME, RawSmtp, insecure_tls_context, make_message, relay_domain, token

USER, PASSWORD = "alice@example.test", "correct horse battery staple"


def s_client(args, stdin: bytes, timeout=30):
    """Runs s_client, typing one line of `stdin` per second like a person:
    moat refuses a client that sends EHLO and QUIT in one go (RFC 2920)."""
    p = subprocess.Popen(["openssl", "s_client", "-brief", "-crlf", "-ign_eof", *args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in stdin.splitlines(keepends=True):
        time.sleep(1.0)
        p.stdin.write(line)
        p.stdin.flush()
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def ehlo_lines_after_tls(out: str) -> list[str]:
    """The lines of the last EHLO reply in s_client's output."""
    lines = [l.strip() for l in out.splitlines()]
    starts = [i for i, l in enumerate(lines) if l.startswith(f"250-{HOSTNAME}") or l == f"250 {HOSTNAME}"]
    assert starts, f"no EHLO reply in s_client output:\n{out}"
    block = []
    for l in lines[starts[-1]:]:
        block.append(l)
        if l.startswith("250 "):
            break
    return block


@pytest.fixture
def relay2(make_sink, make_moatd):
    """moatd relaying example.test to `sink` and everything authenticated to
    a smarthost (a second sink); one user."""
    sink = make_sink("sink")
    outside = make_sink("smarthost")
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   overrides={"relay": {"smarthost": f"[127.0.0.1]:{outside.port}"}})
    m.add_user(USER, PASSWORD)
    return m, sink, outside


@pytest.mark.asan
def test_starttls_s_client(moatd):
    rc, out, err = s_client(["-starttls", "smtp", "-connect", f"127.0.0.1:{moatd.port()}"],
                            b"EHLO client.test\nQUIT\n")
    assert re.search(r"Protocol version: TLSv1\.[23]", err), err
    block = ehlo_lines_after_tls(out)
    assert any(l[4:].upper().startswith("AUTH") and "PLAIN" in l and "LOGIN" in l for l in block), block
    assert not any("STARTTLS" in l for l in block), block
    assert "221" in out


def test_implicit_tls_submissions_s_client(moatd):
    rc, out, err = s_client(["-connect", f"127.0.0.1:{moatd.port('submissions')}"],
                            b"EHLO client.test\nQUIT\n")
    assert re.search(r"Protocol version: TLSv1\.[23]", err), err
    assert re.search(rf"^220 {re.escape(HOSTNAME)}", out, re.M), out
    block = ehlo_lines_after_tls(out)
    assert any("AUTH" in l and "PLAIN" in l for l in block), block
    assert not any("STARTTLS" in l for l in block), block


def test_old_tls_versions_refused(moatd):
    ctx = insecure_tls_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        s = smtplib.SMTP_SSL("127.0.0.1", moatd.port("submissions"), timeout=10, context=ctx)
        s.ehlo()
        s.close()


def test_no_auth_before_tls_on_smtp_port(moatd):
    c = RawSmtp(moatd.port())
    code, text = c.cmd("EHLO client.test")
    assert code == 250
    assert "STARTTLS" in text
    assert not any(l.upper().startswith("AUTH") for l in text.splitlines()), text
    code, _ = c.auth_plain(USER, PASSWORD)
    assert 500 <= code < 600 and code != 535, code      # refused as unavailable, not judged
    c.close()


def test_submission_mail_before_auth_530(moatd):
    c = RawSmtp(moatd.port("submission"))
    c.cmd("EHLO client.test")
    code, text = c.cmd("MAIL FROM:<alice@example.test>")
    assert code == 530, text                               # before STARTTLS
    assert c.cmd("STARTTLS")[0] == 220
    c.starttls()
    code, text = c.cmd("EHLO client.test")
    assert code == 250 and "AUTH" in text
    code, text = c.cmd("MAIL FROM:<alice@example.test>")
    assert code == 530, text                               # after TLS, before AUTH
    assert text.startswith("5.7.0"), text
    c.close()


def test_auth_plain_then_relay_outside(relay2):
    m, sink, outside = relay2
    tok = token()
    msg = make_message(tok, sender=USER, rcpt="bob@outside.test")
    with m.smtp("submission") as s:
        s.ehlo("client.test")
        s.starttls(context=insecure_tls_context())
        s.ehlo("client.test")
        s.login(USER, PASSWORD)                            # smtplib prefers PLAIN
        s.sendmail(USER, ["bob@outside.test"], msg)
    got = outside.wait_token(tok)
    assert got.recipients == ["bob@outside.test"]
    assert got.without_first_received() == msg
    rcv = got.header_fields()[0][1]
    assert "ESMTPSA" in rcv, rcv                            # TLS + AUTH noted (RFC 3848)
    sink.assert_quiet(0.5)


def test_auth_login_on_submissions(relay2):
    m, sink, outside = relay2
    tok = token()
    with m.smtp("submissions") as s:
        s.ehlo("client.test")
        s.user, s.password = USER, PASSWORD
        code, text = s.auth("LOGIN", s.auth_login)
        assert code == 235, text
        s.sendmail(USER, ["carol@outside.test"], make_message(tok, sender=USER, rcpt="carol@outside.test"))
    outside.wait_token(tok)


def test_wrong_password_535(relay2):
    m, _, outside = relay2
    c = RawSmtp(m.port("submissions"), tls=True)
    c.cmd("EHLO client.test")
    code, text = c.auth_plain(USER, "wrong password")
    assert code == 535, text
    assert text.startswith("5.7.8"), text
    code, _ = c.auth_plain("nobody@example.test", "whatever")
    assert code == 535                                     # unknown user: same answer
    c.close()


def test_unauthenticated_outside_still_denied_on_submission_port(relay2):
    m, _, outside = relay2
    with m.smtp("submission") as s:
        s.ehlo("client.test")
        s.starttls(context=insecure_tls_context())
        s.ehlo("client.test")
        code, _ = s.mail(USER)
        assert code == 530
    outside.assert_quiet(0.5)

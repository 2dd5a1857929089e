"""Relay through moat's smtp listener to smtp-sink: the bytes that arrive are
the bytes sent, plus moat's Received header on top."""
import re
import subprocess

import pytest

from moatlib import HOSTNAME, QID_RE, make_message, token


def assert_received_by_moat(m, qid=None):
    first = m.header_fields()[0]
    assert first[0] == "Received", f"first header is {first}"
    v = first[1]
    assert f"by {HOSTNAME} (moat)" in v, v
    mo = re.search(rf"\bid ({QID_RE})", v)
    assert mo, f"no queue id in {v!r}"
    if qid:
        assert mo.group(1) == qid, f"Received names id {mo.group(1)}, the 250 said {qid}"


@pytest.mark.asan
def test_smtplib_relay_exact_bytes(moatd, sink):
    tok = token()
    msg = make_message(tok, body=b"line one\r\n\r\nline three, after an empty line\r\n")
    qid = moatd.send(msg)
    assert re.fullmatch(QID_RE, qid), f"250 reply did not name a queue id: {qid!r}"
    m = sink.wait_token(tok)
    assert m.without_first_received() == msg
    assert_received_by_moat(m, qid)
    assert m.mail_from == "sender@sender.test"
    assert m.recipients == ["user@example.test"]


def test_swaks_relay(moatd, sink, workdir):
    tok = token()
    msg = make_message(tok)
    f = workdir / "msg.eml"
    f.write_bytes(msg)
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{moatd.port()}", "--ehlo", "swaks.test",
                        "--from", "sender@sender.test", "--to", "user@example.test", "--data", f"@{f}",
                        "--timeout", "20"], capture_output=True, timeout=60)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert re.search(r"<[-~]\s+250 2\.0\.0 Ok: queued as", out), out
    m = sink.wait_token(tok)
    # swaks adds an empty line before its "." when the data ends in CRLF
    assert m.without_first_received().rstrip(b"\r\n") == msg.rstrip(b"\r\n")
    assert_received_by_moat(m)
    assert "swaks.test" in m.header_fields()[0][1]


def test_dot_stuffing_round_trip(moatd, sink):
    tok = token()
    body = (b".\r\n..\r\n...\r\n.leading dot\r\n..two leading dots\r\n. space\r\n"
            b"middle . dot\r\n.\r\nlast line\r\n")
    msg = make_message(tok, body=body)
    moatd.send(msg)   # smtplib dot-stuffs; moat must unstuff inbound and stuff outbound
    m = sink.wait_token(tok)
    assert m.body == body
    assert m.without_first_received() == msg


def test_8bitmime_body(moatd, sink):
    tok = token()
    body = "Grüße aus Köln — 東京 — ñandú\r\n".encode() + bytes(range(0x80, 0x100)).replace(b"\r", b"") + b"\r\n"
    msg = make_message(tok, body=body, extra_headers=["Content-Transfer-Encoding: 8bit"])
    moatd.send(msg, mail_options=["BODY=8BITMIME"])
    m = sink.wait_token(tok)
    assert m.body == body
    assert "BODY=8BITMIME" in (m.mail_args or "").upper()


def test_smtputf8_addresses(moatd, sink):
    tok = token()
    sender, rcpt = "josé@sender.test", "élève@example.test"
    msg = make_message(tok, sender=sender, rcpt=rcpt, subject=f"Grüße {tok}")
    with moatd.smtp() as s:
        s.ehlo("client.test")
        assert s.has_extn("smtputf8")
        assert s.mail(sender, ["SMTPUTF8", "BODY=8BITMIME"])[0] == 250
        assert s.rcpt(rcpt)[0] == 250
        code, text = s.data(msg)
        assert code == 250, text
    # smtp-sink does not announce SMTPUTF8, so moat may only deliver if it can
    # downgrade; either way it must not deliver a mangled address.
    for m in sink.messages():
        if m.contains(tok):
            assert m.recipients == [rcpt]


def test_dsn_parameters_accepted_and_relayed(moatd, sink):
    tok = token()
    msg = make_message(tok)
    with moatd.smtp() as s:
        s.ehlo("client.test")
        assert s.has_extn("dsn")
        code, text = s.mail("sender@sender.test", ["RET=HDRS", f"ENVID=env-{tok}"])
        assert code == 250, text
        code, text = s.rcpt("user@example.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;user@example.test"])
        assert code == 250, text
        code, text = s.rcpt("other@example.test", ["NOTIFY=NEVER"])
        assert code == 250, text
        code, text = s.data(msg)
        assert code == 250, text
    m = sink.wait_token(tok)
    assert sorted(m.recipients) == ["other@example.test", "user@example.test"]
    # smtp-sink announces DSN, so the parameters travel on (RFC 3461 §4)
    rargs = " ".join(m.rcpt_args).upper()
    assert "NOTIFY=SUCCESS,FAILURE" in rargs and "NOTIFY=NEVER" in rargs
    assert f"ENVID=ENV-{tok}".upper() in (m.mail_args or "").upper()


def test_multiple_recipients_one_copy_each(moatd, sink):
    tok = token()
    msg = make_message(tok)
    moatd.send(msg, rcpts=["a@example.test", "b@example.test", "c@example.test"])
    ms = sink.wait_for(1, match=lambda m: m.contains(tok))
    sink.assert_quiet(1.0, expect=len(ms))
    got = sorted(r for m in sink.messages() if m.contains(tok) for r in m.recipients)
    assert got == ["a@example.test", "b@example.test", "c@example.test"]

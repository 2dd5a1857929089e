"""The harness itself: smtp-sink capture and the config writer. These run
without moatd, so `pytest tests/integration` proves the peers work today."""
import smtplib
import tomllib

from moatlib import BASE_CONFIG, Moatd, RawSmtp, make_message, relay_domain, to_toml, token


def test_sink_captures_exact_bytes(sink):
    tok = token()
    msg = make_message(tok, body=b".leading dot\r\n..two dots\r\nplain \xc3\xa9\r\n")
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as s:
        s.sendmail("a@sender.test", ["b@example.test"], msg)
    m = sink.wait_token(tok)
    assert m.content == msg
    assert m.mail_from == "a@sender.test"
    assert m.recipients == ["b@example.test"]
    assert m.header("Subject") == f"test {tok}"


def test_sink_rejects_rcpt_and_keeps_nothing(make_sink):
    s = make_sink("rejecting", hard=["RCPT"])
    c = RawSmtp(s.port)
    c.cmd("HELO x")
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd("RCPT TO:<c@example.test>")[0] // 100 == 5
    c.close()
    s.assert_quiet(0.5)


def test_sink_drops_aborted_transaction(sink):
    c = RawSmtp(sink.port)
    c.cmd("HELO x")
    c.cmd("MAIL FROM:<a@b.test>")
    c.cmd("RCPT TO:<c@example.test>")
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: torn\r\n\r\nhalf a message\r\n")
    c.close()
    sink.assert_quiet(1.0)


def test_config_writer_round_trips(tmp_path):
    m = Moatd(tmp_path, relay_domains=[relay_domain("example.test", 2526), relay_domain("b.test", 2527)],
              overrides={"limits": {"line_length": 100}, "queue": {"min_backoff": "1s"}})
    text = m.config_path.read_text()
    cfg = tomllib.loads(text)
    base = tomllib.loads(BASE_CONFIG.read_text())
    assert set(cfg) == set(base)                      # same tables as the schema
    assert cfg["limits"]["line_length"] == 100
    assert [d["name"] for d in cfg["relay"]["domain"]] == ["example.test", "b.test"]
    assert cfg["listener"][0]["address"] == f"127.0.0.1:{m.port('smtp')}"
    assert to_toml(cfg) == text

"""Next hop down: the message waits in the queue and goes once the hop is
back. Next hop refusing with 5xx: exactly one DSN to the sender, never to <>."""
import re
import time

import pytest

from moatlib import entry_id, entry_state, make_message, relay_domain, token, wait_until


def test_next_hop_down_then_flush(make_sink, make_moatd):
    sink = make_sink("sink", start=False)               # port reserved, nobody listening
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   overrides={"queue": {"min_backoff": "300s", "max_backoff": "600s", "scan_interval": "300s"}})
    tok = token()
    qid = m.send(make_message(tok))

    def deferred():
        q = m.queue_list()
        mine = [e for e in q if entry_id(e) == qid]
        return mine if mine and "deferred" in entry_state(mine[0]) else None
    wait_until(deferred, 15, f"{qid} to show as deferred in `moatctl queue list --json`")

    sink.start()
    time.sleep(1.0)
    sink.assert_quiet(0.5)                              # backoff is 300s: nothing moves by itself
    m.ctl("queue", "flush", check=True)
    got = sink.wait_token(tok, timeout=15)
    assert got.recipients == ["user@example.test"]
    wait_until(lambda: not any(entry_id(e) == qid for e in m.queue_list()), 10, "queue to empty")


def test_next_hop_down_retries_by_itself(make_sink, make_moatd):
    sink = make_sink("sink", start=False)
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   overrides={"queue": {"min_backoff": "1s", "max_backoff": "2s", "scan_interval": "1s"}})
    tok = token()
    m.send(make_message(tok))
    time.sleep(2.0)                                     # at least one failed attempt
    sink.start()
    sink.wait_token(tok, timeout=20)


def test_next_hop_4xx_then_accepts(make_sink, make_moatd):
    sink = make_sink("sink", soft=["RCPT"])
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)])
    tok = token()
    qid = m.send(make_message(tok))
    wait_until(lambda: any(entry_id(e) == qid and "deferred" in entry_state(e) for e in m.queue_list()),
               15, "deferral after 450")
    sink.stop()
    sink.soft = []
    sink.start()
    m.ctl("queue", "flush", check=True)
    sink.wait_token(tok, timeout=20)


@pytest.fixture
def bouncing(make_sink, make_moatd, request):
    """example.test's next hop answers 5xx to `request.param`; sender.test
    (the sender's domain) goes to a second sink that collects the DSNs."""
    cmd = request.param
    hop = make_sink("hop", hard=[cmd], hard_reply="550 5.1.1 <user@example.test>: no such user")
    back = make_sink("senders")
    m = make_moatd(relay_domains=[relay_domain("example.test", hop.port),
                                  relay_domain("sender.test", back.port)])
    return m, hop, back


def dsn_parts(dsn):
    msg = dsn.email
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    status = [p for p in parts if p.get_content_type() == "message/delivery-status"]
    assert len(status) == 1, [p.get_content_type() for p in parts]
    # the delivery-status body: per-message fields, then per-recipient groups
    raw = status[0].as_bytes().decode(errors="replace")
    return msg, raw


@pytest.mark.asan
@pytest.mark.parametrize("bouncing", ["RCPT", "DATA", "."], indirect=True)
def test_5xx_gives_exactly_one_dsn(bouncing):
    m, hop, back = bouncing
    tok = token()
    m.send(make_message(tok), sender="sender@sender.test", rcpts=["user@example.test"])
    dsns = back.wait_for(1, timeout=20)
    back.assert_quiet(3.0, expect=1)                    # exactly one
    dsn = dsns[0]
    assert dsn.mail_from == "", f"a DSN is sent from <>, got {dsn.mail_from!r}"
    assert dsn.recipients == ["sender@sender.test"]
    msg, status = dsn_parts(dsn)
    assert re.search(r"^Final-Recipient:\s*rfc822;\s*user@example\.test\s*$", status, re.M | re.I), status
    assert re.search(r"^Action:\s*failed", status, re.M | re.I), status
    st = re.search(r"^Status:\s*(\d\.\d{1,3}\.\d{1,3})", status, re.M)
    assert st and st.group(1).startswith("5."), status
    assert tok in dsn.content.decode(errors="replace"), "the DSN should quote the original headers"
    # and it left the queue
    wait_until(lambda: m.queue_list() == [], 10, "queue to empty after the bounce")


@pytest.mark.parametrize("bouncing", ["RCPT"], indirect=True)
def test_no_dsn_for_null_sender(bouncing):
    m, hop, back = bouncing
    tok = token()
    m.send(make_message(tok, sender=""), sender="", rcpts=["user@example.test"])
    back.assert_quiet(4.0)
    hop.assert_quiet(0.1)
    wait_until(lambda: m.queue_list() == [], 10, "queue to empty (bounce of a bounce is dropped)")


@pytest.mark.parametrize("bouncing", ["RCPT"], indirect=True)
def test_notify_never_suppresses_dsn(bouncing):
    m, hop, back = bouncing
    tok = token()
    m.send(make_message(tok), rcpts=["user@example.test"], rcpt_options=["NOTIFY=NEVER"])
    back.assert_quiet(4.0)

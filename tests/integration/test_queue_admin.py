"""moatctl queue list|show|hold|release|delete|flush with --json."""
import pytest

from moatlib import entry_id, entry_state, make_message, relay_domain, token, wait_until


@pytest.fixture
def stuck(make_sink, make_moatd):
    """The next hop is down and backoff is long: mail stays put until flushed."""
    sink = make_sink("sink", start=False)
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   overrides={"queue": {"min_backoff": "300s", "max_backoff": "600s", "scan_interval": "300s"}})
    return m, sink


def find(m, qid):
    return next((e for e in m.queue_list() if entry_id(e) == qid), None)


def test_list_and_show(stuck):
    m, sink = stuck
    tok = token()
    qid = m.send(make_message(tok), rcpts=["user@example.test", "two@example.test"])
    assert qid
    e = wait_until(lambda: find(m, qid), 10, f"{qid} in queue list")
    text = str(e)
    assert "sender@sender.test" in text
    shown = m.ctl_json("queue", "show", qid)
    s = str(shown)
    assert qid in s and "user@example.test" in s and "two@example.test" in s and "sender@sender.test" in s
    r = m.ctl("queue", "show", "NOSUCHID0000")
    assert r.returncode != 0


def test_hold_release(stuck):
    m, sink = stuck
    tok = token()
    qid = m.send(make_message(tok))
    wait_until(lambda: find(m, qid), 10, f"{qid} in queue list")
    m.ctl("queue", "hold", qid, check=True)
    assert "hold" in entry_state(find(m, qid))
    sink.start()
    m.ctl("queue", "flush", check=True)
    sink.assert_quiet(2.0)                              # held mail is not flushed
    m.ctl("queue", "release", qid, check=True)
    assert "hold" not in entry_state(find(m, qid) or {"queue": "gone"})
    m.ctl("queue", "flush", check=True)
    sink.wait_token(tok, timeout=15)
    wait_until(lambda: find(m, qid) is None, 10, "queue entry to go after delivery")


def test_delete(stuck):
    m, sink = stuck
    keep, drop = token(), token()
    qid_keep = m.send(make_message(keep))
    qid_drop = m.send(make_message(drop))
    wait_until(lambda: find(m, qid_drop) and find(m, qid_keep), 10, "both in queue")
    m.ctl("queue", "delete", qid_drop, check=True)
    assert find(m, qid_drop) is None
    assert m.ctl("queue", "delete", qid_drop).returncode != 0      # already gone
    sink.start()
    m.ctl("queue", "flush", check=True)
    sink.wait_token(keep, timeout=15)
    sink.assert_quiet(1.5, expect=1)
    assert not any(c.contains(drop) for c in sink.messages())


def test_deleted_message_survives_no_restart(stuck):
    m, sink = stuck
    tok = token()
    qid = m.send(make_message(tok))
    wait_until(lambda: find(m, qid), 10, "in queue")
    m.ctl("queue", "delete", qid, check=True)
    m.restart()
    assert find(m, qid) is None
    sink.start()
    m.ctl("queue", "flush", check=True)
    sink.assert_quiet(2.0)

"""The rules filter in moatd: GTUBE is refused with 550 under the default
thresholds, a clean message is relayed with the rules' symbols in view, and a
reload with changed rules swaps the set while mail keeps flowing."""
import smtplib
import time
from pathlib import Path

import pytest

from moatlib import make_message, relay_domain, token, wait_until

REPO = Path(__file__).resolve().parents[2]
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
FILTERS = [{"name": "helo"}, {"name": "hops"}, {"name": "size"}, {"name": "rules"}]


def start(make_moatd, sink, rules_dir=None):
    over = {"filter": FILTERS, "actions": {"spam_headers": "all"}}
    if rules_dir:
        over["rules"] = {"dirs": [str(rules_dir)]}
    return make_moatd(relay_domains=[relay_domain("example.test", sink.port)], overrides=over)


def send(moatd, msg):
    with smtplib.SMTP("127.0.0.1", moatd.port(), timeout=20) as s:
        s.ehlo("client.test")
        try:
            s.sendmail("sender@sender.test", ["user@example.test"], msg)
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode()
    return 250, ""


@pytest.mark.asan
def test_gtube_rejected_clean_relayed(make_moatd, sink):
    moatd = start(make_moatd, sink)
    code, text = send(moatd, make_message(token(), body=b"Hello\r\n" + GTUBE + b"\r\n"))
    assert code == 550, (code, text)
    assert "5.7.1" in text, text
    tok = token()
    assert send(moatd, make_message(tok, body=b"Lunch at noon?\r\n"))[0] == 250
    m = sink.wait_token(tok)
    # The rules ran: the default set names a missing Date/Message-Id, scored
    # far below tagging, and GTUBE is nowhere.
    syms = m.header("X-Spam-Symbols") or ""
    assert "GTUBE" not in syms
    assert m.header("X-Spam-Flag") == "NO"
    assert sink.count() == 1
    # The compiled databases were cached for the next start.
    assert list((moatd.data_dir / "rules-cache").glob("rules-*.hsdb"))


def test_reload_swaps_rules_under_load(make_moatd, sink, workdir):
    rules = workdir / "myrules"
    rules.mkdir()
    (rules / "local.rules").write_text("body LOCAL_WORD /\\bbananarama\\b/i\n")
    (rules / "local.scores").write_text("LOCAL_WORD 20\n")
    moatd = start(make_moatd, sink, rules)
    body = b"we sell bananarama today\r\n"
    assert send(moatd, make_message(token(), body=body))[0] == 550
    # New rules: the word is fine now, GTUBE-like test word rejects instead.
    (rules / "local.rules").write_text("body LOCAL_WORD /\\bkumquat\\b/i\n")
    sent = 0
    deadline = time.time() + 20
    swapped = False
    moatd.ctl("reload", check=True)
    while time.time() < deadline:
        code, _ = send(moatd, make_message(token(), body=body))
        sent += code == 250
        assert code in (250, 550), code
        if code == 250:
            swapped = True
            break
    assert swapped, "the new rule set never took over"
    # After the swap, nothing is refused that should pass and the new rule bites.
    for _ in range(5):
        assert send(moatd, make_message(token(), body=body))[0] == 250
        sent += 1
    assert send(moatd, make_message(token(), body=b"kumquat\r\n"))[0] == 550
    sink.wait_for(sent)
    assert sink.count() == sent


def metric(moatd, name):
    """Sum of every sample of `name` in `moatctl metrics`."""
    total = 0.0
    for line in moatd.ctl("metrics", check=True).stdout_text.splitlines():
        parts = line.split()
        if len(parts) == 2 and (parts[0] == name or parts[0].startswith(name + "{")):
            total += float(parts[1])
    return total


@pytest.mark.asan
def test_full_rule_streams_across_chunks(make_moatd, sink, workdir):
    """A `full` rule whose match spans most of a 600 KB message (so many
    network reads and DATA chunks) is found by the scan that runs while DATA
    streams in, and a message with only half of it passes."""
    rules = workdir / "streamrules"
    rules.mkdir()
    (rules / "local.rules").write_text("full SPAN_MARKS /BEGINMARK.*ENDMARK/s\n"
                                       "full END_MARK /ENDMARK\\r\\n\\z/\n")
    (rules / "local.scores").write_text("SPAN_MARKS 20\nEND_MARK 0.1\n")
    moatd = start(make_moatd, sink, rules)
    filler = b"".join(b"line %06d of filler text for the streaming scan\r\n" % i for i in range(12000))
    assert len(filler) > 600_000
    before = metric(moatd, "moat_rules_full_streamed_total")
    code, text = send(moatd, make_message(token(), body=b"BEGINMARK\r\n" + filler + b"ENDMARK\r\n"))
    assert code == 550, (code, text)
    tok = token()
    assert send(moatd, make_message(tok, body=b"BEGINMARK\r\n" + filler + b"the end\r\n"))[0] == 250
    m = sink.wait_token(tok)
    syms = m.header("X-Spam-Symbols") or ""
    assert "SPAN_MARKS" not in syms and "END_MARK" not in syms, syms
    tok = token()
    assert send(moatd, make_message(tok, body=filler + b"ENDMARK\r\n"))[0] == 250
    assert "END_MARK" in (sink.wait_token(tok).header("X-Spam-Symbols") or "")
    # All three were scanned from the stream, not again at end of data.
    assert metric(moatd, "moat_rules_full_streamed_total") - before == 3

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

"""kill -9 at exact places (MOAT_FAILPOINT, common/failpoint.hpp): every
message that got 250 is delivered after a restart; nothing torn is ever
delivered. Duplicates are allowed, loss is not (SECURITY.md promise 1)."""
import re
import signal

import pytest

from moatlib import QUEUED_RE, make_message, relay_domain, send_parallel, token, wait_until

N = 20
THREADS = 4
KILL_AT = 5

POINTS = [
    "spool.before_fsync",
    "spool.after_fsync",
    "smtp.before_reply",          # between fsync and the 250
    "queue.during_delivery",
    "smtp_client.after_data_sent",
]


def body_for(tok: str) -> bytes:
    # large enough to span several writes, so a torn copy cannot look whole
    line = f"{tok} 0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n".encode()
    return line * 400 + f"END-OF-{tok}\r\n".encode()


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_kill9_loses_no_accepted_message(make_sink, make_moatd, point):
    sink = make_sink("sink")
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   env={"MOAT_FAILPOINT": f"{point}=kill@{KILL_AT}"})
    toks = [token() for _ in range(N)]
    msgs = {t: make_message(t, body=body_for(t)) for t in toks}

    def send_one(i):
        t = toks[i]
        s = m.smtp()
        try:
            s.ehlo("crash.test")
            s.mail("sender@sender.test")
            s.rcpt("user@example.test")
            code, text = s.data(msgs[t])
            return code, text
        finally:
            try:
                s.close()
            except OSError:
                pass

    results = send_parallel(send_one, N, threads=THREADS, timeout=90)
    accepted = {toks[i] for i, r in enumerate(results) if isinstance(r, tuple) and r[0] == 250}
    for i, r in enumerate(results):   # a 250 always names the queue id
        if isinstance(r, tuple) and r[0] == 250:
            assert QUEUED_RE.search(r[1]), r

    rc = m.wait_exit(timeout=60)
    assert rc == -signal.SIGKILL, f"moatd should have died at {point} (exit {rc}); was the failpoint reached?"

    m.start(env={"MOAT_FAILPOINT": ""})                 # same data dir, no failpoint
    m.ctl("queue", "flush")

    def has_all():
        got = {t for c in sink.messages() for t in toks if c.contains(f"<{t}@moat-tests.invalid>")}
        return accepted <= got
    try:
        wait_until(has_all, 45, "every accepted message at the sink", interval=0.2)
    finally:
        delivered = sink.messages()
        # nothing torn: every capture is exactly one whole message we sent
        for c in delivered:
            mid = c.header("Message-ID") or ""
            mo = re.fullmatch(r"<([0-9a-f]{16})@moat-tests\.invalid>", mid)
            assert mo and mo.group(1) in msgs, f"unexpected delivery {c}: Message-ID {mid!r}"
            assert c.without_first_received() == msgs[mo.group(1)], f"torn or altered copy of {mo.group(1)}"
    missing = accepted - {t for c in delivered for t in toks if c.contains(t)}
    assert not missing, f"accepted with 250 but never delivered: {sorted(missing)}"

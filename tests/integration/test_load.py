"""smtp-source as a load source: every message it sends arrives."""
import subprocess

import pytest

from moatlib import SOURCE_BIN, relay_domain


@pytest.mark.slow
def test_smtp_source_200_messages(moatd, sink):
    n = 200
    r = subprocess.run([SOURCE_BIN, "-s", "10", "-m", str(n), "-l", "5000", "-f", "sender@sender.test",
                        "-t", "rcpt@example.test", f"127.0.0.1:{moatd.port()}"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    got = sink.wait_for(n, timeout=60)
    sink.assert_quiet(1.0, expect=n)      # no duplicates without a crash
    assert all(m.recipients == ["rcpt@example.test"] for m in got)
    assert all(len(m.body) >= 4000 for m in got)


def test_smtp_source_pipelined_many_per_session(moatd, sink):
    n = 50
    # -d: several messages per connection (RSET-free MAIL after the 250)
    r = subprocess.run([SOURCE_BIN, "-d", "-s", "2", "-m", str(n), "-l", "1000", "-f", "sender@sender.test",
                        "-t", "rcpt@example.test", f"127.0.0.1:{moatd.port()}"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    sink.wait_for(n, timeout=60)


@pytest.mark.parametrize("threads", [1, 3])
def test_sessions_on_every_event_loop_then_clean_stop(make_moatd, sink, threads):
    # server.threads event loops, connections dealt round robin: 12 sessions
    # at once land on all of them, every message arrives, and SIGTERM stops
    # every loop (exit status 0, within the harness's 15 s).
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)], overrides={"server": {"threads": threads}})
    n = 60
    r = subprocess.run([SOURCE_BIN, "-s", "12", "-m", str(n), "-l", "2000", "-f", "sender@sender.test",
                        "-t", "rcpt@example.test", f"127.0.0.1:{m.port()}"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    sink.wait_for(n, timeout=60)
    sink.assert_quiet(0.5, expect=n)
    assert m.stop() == 0

"""smtp-source as a load source: every message it sends arrives."""
import subprocess

import pytest

from moatlib import SOURCE_BIN


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

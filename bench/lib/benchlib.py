"""Shared pieces of moat's benchmarks (bench/relay, bench/auth): cleanup on
exit, the list of commands to print, smtp-sink with counters, and one timed
smtp-source run measured end to end at the sink.

Everything binds 127.0.0.1; processes are stopped by PID on exit.
"""
import atexit
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from moatlib import is_listening, stop_process  # noqa: E402

SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
RUN_TIMEOUT = 600          # seconds for one run, whatever happens

cleanups = []


def cleanup():
    while cleanups:
        fn = cleanups.pop()
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            print(f"cleanup: {e}", file=sys.stderr)


atexit.register(cleanup)
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, lambda s, f: sys.exit(128 + s))

commands_used: list[str] = []


def note(cmd):
    s = " ".join(shlex.quote(str(c)) for c in cmd)
    if s not in commands_used:
        commands_used.append(s)


def sink_argv(port):
    a = [SINK]
    if os.geteuid() == 0:
        a += ["-u", "nobody"]
    # -c: running counters on stdout ("sess=S quit=Q mesg=M"), updated at each "."
    return a + ["-c", "-m", "1000", f"127.0.0.1:{port}", "1024"]


def sink_count(path: Path) -> int:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 200))
        tail = f.read()
    i = tail.rfind(b"mesg=")
    if i < 0:
        return 0
    digits = tail[i + 5:i + 20].split(b"s")[0].strip()
    return int(digits) if digits.isdigit() else 0


def one_run(target_port, sink_port, size, n, sessions, workdir: Path, drain, message_file=None,
            sender="bench@sender.test", rcpt="rcpt@example.test"):
    """Seconds from the first connection until the sink got n messages.
    message_file: send that message (smtp-source -F) instead of a generated one of `size` bytes."""
    argv = sink_argv(sink_port)
    note(argv)
    out = workdir / "sink.counters"
    with open(out, "wb") as f:
        sink = subprocess.Popen(argv, stdout=f, stderr=subprocess.DEVNULL)
    cleanups.append(lambda: stop_process(sink))
    deadline = time.monotonic() + 5
    while not is_listening(sink_port):
        if time.monotonic() > deadline or sink.poll() is not None:
            raise RuntimeError("smtp-sink did not start")
        time.sleep(0.02)
    body = ["-F", str(message_file)] if message_file else ["-l", str(size)]
    src = [SOURCE, "-s", str(sessions), "-m", str(n), *body, "-f", sender, "-t", rcpt, f"127.0.0.1:{target_port}"]
    note(src)
    try:
        t0 = time.monotonic()
        r = subprocess.run(src, capture_output=True, timeout=RUN_TIMEOUT)
        if r.returncode != 0:
            raise RuntimeError(f"smtp-source failed: {r.stderr.decode(errors='replace')[-500:]}")
        while sink_count(out) < n:
            if time.monotonic() - t0 > RUN_TIMEOUT:
                raise RuntimeError(f"sink got {sink_count(out)} of {n} messages in {RUN_TIMEOUT}s")
            time.sleep(0.005)
        took = time.monotonic() - t0
    finally:
        stop_process(sink)
    drain()                            # the relay's queue is empty before the next run
    return took


def tree_cpu_seconds(pid) -> float:
    """CPU time of process `pid` and of its children: live ones from their own
    /proc stat, exited ones from the cutime/cstime the parent collected when
    it reaped them. Differences taken around a run give what the whole
    process tree spent on it, including short-lived workers (Postfix's
    smtpd, cleanup, smtp)."""
    tick = os.sysconf("SC_CLK_TCK")

    def fields(p):
        return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
    f = fields(pid)
    total = sum(int(x) for x in f[11:15])          # utime stime cutime cstime
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or d.name == str(pid):
            continue
        try:
            c = fields(d.name)
        except OSError:
            continue
        if c[1] == str(pid):                      # ppid
            total += int(c[11]) + int(c[12])
    return total / tick


def wait_port_free(port, timeout=10):
    deadline = time.monotonic() + timeout
    while is_listening(port) and time.monotonic() < deadline:
        time.sleep(0.05)



"""Helpers for moat's integration tests: real peers, real processes.

Everything here binds 127.0.0.1 only, stops what it started by PID, and
bounds every wait by time. The pytest fixtures in conftest.py wrap these
classes; the classes can also be used from a Python shell when debugging:

    >>> from moatlib import *
    >>> sink = SmtpSink(free_port(), Path("/tmp/x")); sink.start()
    >>> m = Moatd(Path("/tmp/x"), relay_domains=[relay_domain("example.test", sink.port)])
    >>> m.start()
"""
from __future__ import annotations

import copy
import email
import email.policy
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import tomllib
import uuid
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).resolve().parents[2]
BASE_CONFIG = REPO / "etc" / "moat.toml"
SINK_BIN = "/usr/sbin/smtp-sink"
SOURCE_BIN = "/usr/sbin/smtp-source"
HOSTNAME = "moat-it.test"          # server.hostname in every test config
LOOPBACK = "127.0.0.1"

# What moat's 250 after DATA says (gateway/smtp_session.cpp) and what its
# Received header looks like: "by HOST (moat) with PROTO id QID".
QUEUED_RE = re.compile(rb"queued as ([0-9A-Za-z._-]+)")
QID_RE = r"[0-9A-Za-z._-]{6,}"

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",                      # UBSan
    "SUMMARY: UndefinedBehaviorSanitizer",
    "WARNING: ThreadSanitizer",
)


def moat_bin_dir() -> Path:
    return Path(os.environ.get("MOAT_BIN", str(REPO / "build" / "bin")))


def asan_bin_dir() -> Path | None:
    v = os.environ.get("MOAT_ASAN_BIN")
    return Path(v) if v else None


# --------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------

_ports_given: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (kernel-chosen),
    never one this run handed out before: the kernel may offer a just-closed
    port again, and two listeners of one moatd on the same port fail its start."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def wait_until(pred: Callable[[], object], timeout: float, what: str = "condition",
               interval: float = 0.05):
    """Polls pred() until it returns something truthy; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen | None, timeout: float = 5.0):
    """SIGTERM, then SIGKILL if it has not exited within timeout; waits for it."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def listening_ports() -> set[int]:
    """Ports in LISTEN state on IPv4 (from /proc, so probing costs no session)."""
    ports = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(f).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[3] == "0A":
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def is_listening(port: int) -> bool:
    return port in listening_ports()


def token() -> str:
    """A unique token to find one message among the captures."""
    return uuid.uuid4().hex[:16]


def make_message(tok: str | None = None, *, sender="sender@sender.test", rcpt="user@example.test",
                 subject: str | None = None, body: str | bytes = "Hello from the moat test suite.\r\n",
                 extra_headers: Iterable[str] = ()) -> bytes:
    """An RFC 5322 message with CRLF line ends; Subject and Message-ID carry tok."""
    tok = tok or token()
    hdrs = [
        f"From: <{sender}>",
        f"To: <{rcpt}>",
        f"Subject: {subject if subject is not None else 'test ' + tok}",
        f"Message-ID: <{tok}@moat-tests.invalid>",
        "Date: Thu, 01 Jan 2026 00:00:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        *extra_headers,
    ]
    if isinstance(body, str):
        body = body.encode()
    return ("\r\n".join(hdrs) + "\r\n\r\n").encode() + body


def relay_domain(name: str, port: int | None, **kw) -> dict:
    d = {"name": name, "tls": "none", "verify": "none"}
    if port is not None:
        d["next_hop"] = f"{LOOPBACK}:{port}"
    d.update(kw)
    return d


# --------------------------------------------------------------------------
# TOML (the config is etc/moat.toml with overrides merged in)
# --------------------------------------------------------------------------

def _toml_scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)   # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_scalar(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v)} to TOML")


def _is_table_array(v) -> bool:
    return isinstance(v, list) and v and all(isinstance(x, dict) for x in v)


def to_toml(data: dict) -> str:
    out: list[str] = []

    def emit(table: dict, prefix: str):
        for k, v in table.items():
            if not isinstance(v, dict) and not _is_table_array(v):
                out.append(f"{k} = {_toml_scalar(v)}")
        for k, v in table.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                out.append(f"\n[{name}]")
                emit(v, name)
            elif _is_table_array(v):
                for item in v:
                    out.append(f"\n[[{name}]]")
                    emit(item, name)

    emit(data, "")
    return "\n".join(out).lstrip("\n") + "\n"


def deep_merge(base: dict, over: dict) -> dict:
    """Tables merge key by key; arrays (including arrays of tables) are replaced.
    A value of None deletes the key."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# --------------------------------------------------------------------------
# smtp-sink: the next hop
# --------------------------------------------------------------------------

class Captured:
    """One message as smtp-sink dumped it (-d): its own X-* envelope lines and
    a three-line Received header, then the message with LF line ends (the sink
    drops CRs and undoes dot-stuffing), then one empty line."""

    def __init__(self, path: Path, data: bytes):
        self.path = path
        self.raw_dump = data
        lines = data.split(b"\n")
        self.helo = None
        self.mail_args = None
        self.rcpt_args: list[str] = []
        i = 0
        while i < len(lines) and not lines[i].startswith(b"Received: "):
            k, _, v = lines[i].decode("utf-8", "replace").partition(": ")
            if k == "X-Helo-Args":
                self.helo = v
            elif k == "X-Mail-Args":
                self.mail_args = v
            elif k == "X-Rcpt-Args":
                self.rcpt_args.append(v)
            i += 1
        i += 1
        while i < len(lines) and lines[i].startswith(b"\t"):   # the sink's Received continuation
            i += 1
        body_lines = lines[i:]
        # data ends "...last\n" + "\n" (the sink's empty line): two empty tails
        if len(body_lines) >= 2 and body_lines[-1] == b"" and body_lines[-2] == b"":
            body_lines = body_lines[:-2]
        self.content = b"".join(l + b"\r\n" for l in body_lines)   # canonical CRLF form

    # --- envelope ---
    @property
    def mail_from(self) -> str:
        m = re.match(r"<([^>]*)>", self.mail_args or "")
        return m.group(1) if m else ""

    @property
    def recipients(self) -> list[str]:
        out = []
        for a in self.rcpt_args:
            m = re.match(r"<([^>]*)>", a)
            out.append(m.group(1) if m else a)
        return out

    # --- content ---
    @property
    def header_bytes(self) -> bytes:
        p = self.content.find(b"\r\n\r\n")
        return self.content if p < 0 else self.content[: p + 2]

    @property
    def body(self) -> bytes:
        p = self.content.find(b"\r\n\r\n")
        return b"" if p < 0 else self.content[p + 4:]

    def header_fields(self) -> list[tuple[str, str]]:
        """(name, unfolded raw value) in order."""
        out: list[tuple[str, str]] = []
        for line in self.header_bytes.decode("utf-8", "replace").split("\r\n"):
            if not line:
                continue
            if line[0] in " \t" and out:
                out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
            elif ":" in line:
                k, _, v = line.partition(":")
                out.append((k, v.strip()))
        return out

    def headers(self, name: str) -> list[str]:
        return [v for k, v in self.header_fields() if k.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        h = self.headers(name)
        return h[0] if h else None

    @property
    def email(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.content, policy=email.policy.default)

    def without_first_received(self) -> bytes:
        """The content minus moat's Received header (the first field, folded)."""
        lines = self.content.split(b"\r\n")
        assert lines[0].startswith(b"Received:"), f"first line is not Received: {lines[0]!r}"
        i = 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
        return b"\r\n".join(lines[i:])

    def contains(self, tok: str | bytes) -> bool:
        if isinstance(tok, str):
            tok = tok.encode()
        return tok in self.content

    def __repr__(self):
        return f"<Captured {self.path.name} from={self.mail_from} to={self.recipients} {len(self.content)}B>"


class SmtpSink:
    """/usr/sbin/smtp-sink on 127.0.0.1:port, dumping every transaction to a file.

    hard / soft / drop / q421: SMTP command names (CONNECT HELO EHLO MAIL RCPT
    DATA . RSET ...) to answer with 5xx (-f), 4xx (-r), a silent disconnect (-q)
    or 421 + disconnect (-Q). -f/-r turn off PIPELINING (smtp-sink's rule).
    """

    def __init__(self, port: int, workdir: Path, *, name: str = "sink", hard: Iterable[str] = (),
                 soft: Iterable[str] = (), drop: Iterable[str] = (), q421: Iterable[str] = (),
                 hard_reply: str | None = None, soft_reply: str | None = None,
                 extra_args: Iterable[str] = ()):
        self.port = port
        self.name = name
        self.hard, self.soft, self.drop, self.q421 = list(hard), list(soft), list(drop), list(q421)
        self.hard_reply, self.soft_reply = hard_reply, soft_reply
        self.extra_args = list(extra_args)
        self.workdir = Path(workdir)
        # smtp-sink drops to nobody when run as root; pytest's tmp_path sits
        # under a 0700 folder, so the dump folder lives in its own /tmp dir.
        self.dump_dir = Path(tempfile.mkdtemp(prefix=f"moat-{name}-"))
        os.chmod(self.dump_dir, 0o777)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / f"{name}.log"

    def argv(self) -> list[str]:
        a = [SINK_BIN]
        if os.geteuid() == 0:
            a += ["-u", "nobody"]
        a += ["-d", str(self.dump_dir) + "/%Y%m%d%H%M%S.", "-h", self.name, "-t", "30", "-m", "2000"]
        if self.hard:
            a += ["-f", ",".join(self.hard)]
        if self.soft:
            a += ["-r", ",".join(self.soft)]
        if self.drop:
            a += ["-q", ",".join(self.drop)]
        if self.q421:
            a += ["-Q", ",".join(self.q421)]
        if self.hard_reply:
            a += ["-B", self.hard_reply]
        if self.soft_reply:
            a += ["-b", self.soft_reply]
        a += self.extra_args
        a += [f"{LOOPBACK}:{self.port}", "1024"]
        return a

    def start(self, timeout: float = 5.0) -> "SmtpSink":
        assert self.proc is None or self.proc.poll() is not None, "sink already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"smtp-sink exited {self.proc.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            return is_listening(self.port)
        wait_until(up, timeout, f"smtp-sink on port {self.port}")
        return self

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dump_dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- captures ---
    def _files(self) -> list[Path]:
        return sorted((p for p in self.dump_dir.iterdir() if p.is_file()),
                      key=lambda p: (p.stat().st_mtime_ns, p.name))

    def messages(self, settle: float = 0.3) -> list[Captured]:
        """Complete captures. smtp-sink opens the dump file at MAIL, writes its
        Received line at DATA and an empty line after ".", and unlinks the
        file when the transaction is aborted; so a file with its Received
        line, ending in an empty line and untouched for `settle` seconds, is
        a whole message."""
        now = time.time()
        out = []
        for p in self._files():
            try:
                st = p.stat()
                if now - st.st_mtime < settle:
                    continue
                data = p.read_bytes()
            except FileNotFoundError:
                continue
            if b"\nReceived: " not in data or not data.endswith(b"\n\n"):
                continue
            out.append(Captured(p, data))
        return out

    def count(self) -> int:
        return len(self.messages(settle=0))

    def wait_for(self, n: int, timeout: float = 15.0, match: Callable[[Captured], bool] | None = None
                 ) -> list[Captured]:
        """Waits until at least n (matching) complete messages arrived."""
        def enough():
            ms = self.messages()
            if match:
                ms = [m for m in ms if match(m)]
            return ms if len(ms) >= n else None
        try:
            return wait_until(enough, timeout, f"{n} message(s) at {self.name}", interval=0.1)
        except TimeoutError as e:
            got = self.messages()
            raise AssertionError(f"{e}; {self.name} has {len(got)}: {got[:10]}") from None

    def wait_token(self, tok: str, timeout: float = 15.0) -> Captured:
        return self.wait_for(1, timeout, lambda m: m.contains(tok))[0]

    def assert_quiet(self, seconds: float = 2.0, expect: int = 0):
        """Nothing (more than `expect`) arrives within `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.count() <= expect, f"{self.name} got unexpected mail: {self.messages(0)}"
            time.sleep(0.1)
        assert self.count() <= expect, f"{self.name} got unexpected mail: {self.messages(0)}"


# --------------------------------------------------------------------------
# a raw SMTP client for protocol games smtplib will not play
# --------------------------------------------------------------------------

class RawSmtp:
    def __init__(self, port: int, timeout: float = 10.0, read_banner: bool = True, tls: bool = False):
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        if tls:   # implicit TLS (the submissions port)
            self.sock = insecure_tls_context().wrap_socket(self.sock, server_hostname=HOSTNAME)
        self.buf = b""
        self.banner = self.reply() if read_banner else None

    def send(self, data: bytes | str):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; pending {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply: (code, joined text)."""
        lines = []
        while True:
            line = self._line()
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        code = int(lines[-1][:3]) if lines[-1][:3].isdigit() else 0
        return code, "\n".join(l[4:] for l in lines)

    def cmd(self, line: str | bytes) -> tuple[int, str]:
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True

    def starttls(self, server_hostname=HOSTNAME):
        """Wraps the socket after the server's 220 to STARTTLS. Anything the
        server sent in plaintext after that 220 is an injection: fail."""
        assert self.buf == b"", f"server sent plaintext after its STARTTLS reply: {self.buf!r}"
        self.sock = insecure_tls_context().wrap_socket(self.sock, server_hostname=server_hostname)
        self.buf = b""

    def auth_plain(self, user: str, password: str) -> tuple[int, str]:
        import base64
        cred = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {cred}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def insecure_tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --------------------------------------------------------------------------
# moatd
# --------------------------------------------------------------------------

class Moatd:
    """One moatd in its own folder: config, data dir, log.

    overrides: merged into etc/moat.toml (tables key by key; arrays replaced;
    None deletes). relay_domains: the [[relay.domain]] list.
    """

    def __init__(self, workdir: Path, *, bin_dir: Path | None = None, relay_domains: list[dict] | None = None,
                 overrides: dict | None = None, env: dict | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bin_dir = Path(bin_dir or moat_bin_dir())
        self.moatd_bin = self.bin_dir / "moatd"
        self.moatctl_bin = self.bin_dir / "moatctl"
        self.ports = {"smtp": free_port(), "submission": free_port(), "submissions": free_port()}
        self.data_dir = self.workdir / "var"
        self.config_path = self.workdir / "moat.toml"
        self.log_path = self.workdir / "moatd.log"
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.relay_domains = relay_domains or []
        self.overrides = overrides or {}
        self.config = self.build_config(self.overrides)
        self.write_config()

    # --- config ---
    def build_config(self, overrides: dict) -> dict:
        with open(BASE_CONFIG, "rb") as f:
            base = tomllib.load(f)
        test = {
            "server": {"hostname": HOSTNAME, "data_dir": str(self.data_dir), "threads": 2},
            "listener": [
                {"name": "smtp", "address": f"{LOOPBACK}:{self.ports['smtp']}", "mode": "smtp"},
                {"name": "submission", "address": f"{LOOPBACK}:{self.ports['submission']}", "mode": "submission"},
                {"name": "submissions", "address": f"{LOOPBACK}:{self.ports['submissions']}", "mode": "submissions"},
            ],
            "tls": {"cert": str(self.data_dir / "tls" / "cert.pem"), "key": str(self.data_dir / "tls" / "key.pem")},
            "limits": {"command_timeout": "20s", "data_timeout": "30s", "connections_per_client": 200},
            "relay": {"networks": [], "outbound_tls": "may", "domain": self.relay_domains},
            "queue": {"min_backoff": "1s", "max_backoff": "2s", "scan_interval": "1s",
                      "connect_timeout": "2s", "command_timeout": "10s", "data_timeout": "20s"},
            "dns": {"timeout": "2s"},
        }
        cfg = deep_merge(base, test)
        if not self.relay_domains:
            cfg["relay"].pop("domain", None)
        return deep_merge(cfg, overrides)

    def write_config(self, config: dict | None = None):
        if config is not None:
            self.config = config
        self.config_path.write_text(to_toml(self.config))

    def reconfigure(self, overrides: dict):
        """Rewrites the config file with more overrides (no reload)."""
        self.write_config(deep_merge(self.config, overrides))

    # --- process ---
    def port(self, name: str = "smtp") -> int:
        return self.ports[name]

    def start(self, env: dict | None = None, wait: bool = True, timeout: float = 20.0) -> "Moatd":
        if not self.moatd_bin.exists():
            raise FileNotFoundError(str(self.moatd_bin))
        assert not self.running, "moatd already running"
        e = dict(os.environ)
        e.pop("MOAT_FAILPOINT", None)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        e.update(self.env)
        e.update(env or {})
        log = open(self.log_path, "ab")
        log.write(f"=== start {time.strftime('%H:%M:%S')} env MOAT_FAILPOINT={e.get('MOAT_FAILPOINT', '')}\n".encode())
        log.flush()
        self.proc = subprocess.Popen([str(self.moatd_bin), "--config", str(self.config_path)],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, env=e)
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0):
        """Until every listener listens and the smtp port answers 220."""
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"moatd exited with {self.proc.returncode} during start:\n{self.log_tail()}")
            lp = listening_ports()
            if not all(p in lp for p in self.ports.values()):
                return False
            try:
                with socket.create_connection((LOOPBACK, self.ports["smtp"]), timeout=3) as s:
                    data = s.recv(512)
                    if data.startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        return True
            except OSError:
                pass
            return False
        wait_until(ready, timeout, "moatd to answer 220", interval=0.1)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"moatd (pid {self.proc.pid}) still running after {timeout}s") from None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then wait; SIGKILL if it does not go in time (and fail)."""
        if not self.running:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"moatd did not stop within {timeout}s of SIGTERM")

    def kill9(self):
        if self.running:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, env: dict | None = None):
        self.stop()
        self.start(env=env)

    def sighup(self):
        assert self.running
        self.proc.send_signal(signal.SIGHUP)

    # --- log ---
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 4000) -> str:
        return self.log_text()[-n:]

    def sanitizer_reports(self) -> list[str]:
        t = self.log_text()
        return [m for m in SANITIZER_MARKERS if m in t]

    # --- moatctl ---
    def ctl(self, *args: str, input: str | bytes | None = None, check: bool = False,
            timeout: float = 30.0) -> subprocess.CompletedProcess:
        if not self.moatctl_bin.exists():
            import pytest
            pytest.skip(f"{self.moatctl_bin} not built yet")
        if isinstance(input, str):
            input = input.encode()
        r = subprocess.run([str(self.moatctl_bin), "--config", str(self.config_path), *args],
                           input=input, capture_output=True, timeout=timeout, cwd=self.workdir)
        r.stdout_text = r.stdout.decode(errors="replace")   # type: ignore[attr-defined]
        r.stderr_text = r.stderr.decode(errors="replace")   # type: ignore[attr-defined]
        if check and r.returncode != 0:
            raise AssertionError(f"moatctl {' '.join(args)} exited {r.returncode}:\n"
                                 f"{r.stdout_text}\n{r.stderr_text}")
        return r

    def ctl_json(self, *args: str):
        r = self.ctl(*args, "--json", check=True)
        try:
            return json.loads(r.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"moatctl {' '.join(args)} --json printed no JSON ({e}):\n{r.stdout_text}")

    def queue_list(self) -> list[dict]:
        v = self.ctl_json("queue", "list")
        if isinstance(v, dict):         # {"messages": [...]} or a bare list
            for k in ("messages", "queue", "items"):
                if k in v:
                    return v[k]
        return v

    def add_user(self, name: str, password: str):
        self.ctl("user", "add", name, input=password + "\n", check=True)

    # --- clients ---
    def smtp(self, listener: str = "smtp", timeout: float = 20.0) -> smtplib.SMTP:
        if listener == "submissions":
            return smtplib.SMTP_SSL(LOOPBACK, self.ports[listener], timeout=timeout,
                                    context=insecure_tls_context())
        return smtplib.SMTP(LOOPBACK, self.ports[listener], timeout=timeout)

    def raw(self, listener: str = "smtp", **kw) -> RawSmtp:
        return RawSmtp(self.ports[listener], **kw)

    def send(self, msg: bytes, sender="sender@sender.test", rcpts=("user@example.test",),
             listener="smtp", mail_options=(), rcpt_options=(), ehlo="client.test") -> str:
        """Sends one message through smtplib; returns moat's queue id."""
        with self.smtp(listener) as s:
            s.ehlo(ehlo)
            code, _ = s.mail(sender, list(mail_options))
            assert code == 250, f"MAIL FROM answered {code}"
            for r in rcpts:
                code, text = s.rcpt(r, list(rcpt_options))
                assert code == 250, f"RCPT TO:<{r}> answered {code} {text!r}"
            code, text = s.data(msg)
            assert code == 250, f"DATA answered {code} {text!r}"
            m = QUEUED_RE.search(text)
            return m.group(1).decode() if m else ""


# `moatctl queue list --json` entries: the keys are read loosely so that the
# suite and moatctl can settle the schema (docs/testing.md lists the one we expect).
def entry_id(e: dict) -> str:
    for k in ("id", "queue_id", "qid"):
        if k in e:
            return str(e[k])
    raise KeyError(f"queue entry without an id: {e}")


def entry_state(e: dict) -> str:
    for k in ("queue", "state", "status"):
        if k in e:
            return str(e[k]).lower()
    return json.dumps(e).lower()


def send_parallel(fn: Callable[[int], object], n: int, threads: int = 5, timeout: float = 60.0) -> list:
    """Runs fn(i) for i in range(n) on `threads` threads; returns results
    (exceptions are returned as values, not raised)."""
    results: list = [None] * n
    lock = threading.Lock()
    next_i = [0]

    def worker():
        while True:
            with lock:
                i = next_i[0]
                if i >= n:
                    return
                next_i[0] += 1
            try:
                results[i] = fn(i)
            except BaseException as e:   # noqa: BLE001 - a crash test expects failures
                results[i] = e

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))
    return results

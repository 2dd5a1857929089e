"""A real DNS server for the sender-check tests: unbound on 127.0.0.1.

unbound answers only from the local zones given here (static local-data),
recursion to anywhere else is refused, so nothing leaves the machine. moatd
is pointed at it with `[dns] upstream = "127.0.0.1:PORT"`.

Note: libunbound (inside moatd) answers the RFC 6761 special names itself
(test., invalid., localhost., onion. and the private reverse zones), so test
domains for DNS checks live under example.com/.net/.org and similar.

    dns = DnsServer(workdir, records=['example.org. TXT "v=spf1 -all"'])
    dns.start(); ...; dns.stop()
"""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Iterable

from moatlib import LOOPBACK, free_port, stop_process, wait_until

UNBOUND = "/usr/sbin/unbound"


def _quote(record: str) -> str:
    # TXT data carries double quotes; unbound then wants the record in single quotes.
    return f"'{record}'" if '"' in record else f'"{record}"'


def zone_of(record: str) -> str:
    """The owner name of a record line, as a zone ("a.example.org.")."""
    owner = record.split()[0]
    return owner if owner.endswith(".") else owner + "."


class DnsServer:
    """unbound serving static test zones on 127.0.0.1:port (UDP and TCP).

    records:  local-data lines ("name. [TTL] TYPE RDATA"); each owner's
              zone is made a static local zone unless `zones` names it.
    zones:    extra static zones (names under them that have no data are
              NXDOMAIN, names with other types are NODATA).
    servfail: names whose lookups fail: unbound REFUSEs them, which a
              resolver forwarding here (moatd's libunbound) reports as
              SERVFAIL, a DNS temperror, without waiting for a timeout.
    timeout:  names whose lookups are never answered (forwarded to a UDP
              socket that reads and drops), so the client's deadline decides.
    """

    def __init__(self, workdir: Path, records: Iterable[str] = (), zones: Iterable[str] = (),
                 servfail: Iterable[str] = (), timeout: Iterable[str] = (), name: str = "dns"):
        self.workdir = Path(workdir) / name
        self.records = list(records)
        self.zones = list(zones)
        self.servfail = list(servfail)
        self.timeout = list(timeout)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._blackhole: socket.socket | None = None
        self.log_path = self.workdir / "unbound.log"

    @property
    def upstream(self) -> str:
        """The value for moat's `[dns] upstream`."""
        return f"{LOOPBACK}:{self.port}"

    def config(self) -> str:
        lines = [
            "server:",
            f"  interface: {LOOPBACK}",
            f"  port: {self.port}",
            "  do-ip6: no",
            "  do-daemonize: no",
            '  chroot: ""',
            '  username: ""',
            f'  directory: "{self.workdir}"',
            f'  pidfile: "{self.workdir / "unbound.pid"}"',
            "  use-syslog: no",
            f'  logfile: "{self.log_path}"',
            "  verbosity: 1",
            "  access-control: 127.0.0.0/8 allow",
            "  num-threads: 1",
            '  auto-trust-anchor-file: ""',
            "  do-not-query-localhost: no",     # the forwards below go to 127.0.0.1
            "  cache-max-ttl: 0",               # tests change answers between runs
            "  cache-max-negative-ttl: 0",
            "  serve-expired: no",
            "  qname-minimisation: no",
        ]
        zones = list(dict.fromkeys(self.zones + [zone_of(r) for r in self.records]))
        for z in zones:
            lines.append(f'  local-zone: "{z}" static')
        for r in self.records:
            lines.append(f"  local-data: {_quote(r)}")
        for n in self.servfail:
            lines.append(f'  local-zone: "{n.rstrip(".")}." always_refuse')
        for n in self.timeout:
            lines.append(f'  local-zone: "{n.rstrip(".")}." transparent')
        lines.append("remote-control:\n  control-enable: no")
        if self.timeout:
            bh = self._blackhole_port()
            for n in self.timeout:
                lines += ["forward-zone:", f'  name: "{n.rstrip(".")}."', f"  forward-addr: {LOOPBACK}@{bh}"]
        return "\n".join(lines) + "\n"

    def _blackhole_port(self) -> int:
        if self._blackhole is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((LOOPBACK, 0))   # queries queue up in the socket buffer, unanswered
            self._blackhole = s
        return self._blackhole.getsockname()[1]

    def start(self, timeout: float = 10.0) -> "DnsServer":
        assert self.proc is None or self.proc.poll() is not None, "unbound already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "unbound.conf"
        conf.write_text(self.config())
        check = subprocess.run(["/usr/sbin/unbound-checkconf", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"unbound config rejected: {check.stdout}{check.stderr}")
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(self.workdir / "stderr.log", "ab"))

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"unbound exited {self.proc.returncode}: {self.log_tail()}")
            # unbound opens TCP with UDP; TCP accepting means it is serving.
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(0.2)
                return s.connect_ex((LOOPBACK, self.port)) == 0
        wait_until(up, timeout, f"unbound on port {self.port}")
        return self

    def restart(self) -> "DnsServer":
        """Applies changed records/zones (unbound reads local-data at start)."""
        self.stop()
        return self.start()

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def cleanup(self):
        self.stop()
        if self._blackhole:
            self._blackhole.close()
            self._blackhole = None

    def log_tail(self, n: int = 2000) -> str:
        out = ""
        for p in (self.log_path, self.workdir / "stderr.log"):
            if p.exists():
                out += p.read_text(errors="replace")[-n:]
        return out

"""Fixtures for moat's integration suite (docs/testing.md).

    port            a free 127.0.0.1 port
    workdir         a per-test folder (config, data dir, logs)
    make_sink       factory: make_sink(name="sink", start=True, hard=[...], ...) -> SmtpSink
    sink            one running smtp-sink (the next hop of example.test)
    make_dns        factory: make_dns(records=[...], servfail=[...], timeout=[...]) -> DnsServer (unbound)
    make_moatd      factory: make_moatd(relay_domains=[...], overrides={...}, env={...}, start=True)
    moatd           moatd relaying example.test to `sink`
    moat_build      "release" or "asan": which build moatd comes from

Tests marked @pytest.mark.asan run once per build when MOAT_ASAN_BIN is set.
Every moatd started is stopped at teardown; a sanitizer report in its output
fails the test. Without $MOAT_BIN/moatd the tests that need it are skipped.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dnsserver import DnsServer  # noqa: E402
from moatlib import (  # noqa: E402
    Moatd, SmtpSink, asan_bin_dir, free_port, moat_bin_dir, relay_domain,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "asan: also run against the sanitizer build ($MOAT_ASAN_BIN)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "needs_moatctl: uses moatctl")


def pytest_generate_tests(metafunc):
    if "moat_build" in metafunc.fixturenames:
        builds = ["release"]
        if metafunc.definition.get_closest_marker("asan") and asan_bin_dir():
            builds.append("asan")
        metafunc.parametrize("moat_build", builds, scope="function")


def _bin_for(build: str) -> Path:
    return asan_bin_dir() if build == "asan" else moat_bin_dir()


@pytest.fixture
def moat_bin(moat_build) -> Path:
    d = _bin_for(moat_build)
    if not (d / "moatd").exists():
        # `make test` names the binaries: then a missing one is a failure.
        if os.environ.get("MOAT_ASAN_BIN" if moat_build == "asan" else "MOAT_BIN"):
            pytest.fail(f"{d}/moatd does not exist")
        pytest.skip(f"{d}/moatd does not exist yet (build moat or set "
                    f"{'MOAT_ASAN_BIN' if moat_build == 'asan' else 'MOAT_BIN'})")
    return d


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path


@pytest.fixture
def make_sink(workdir):
    sinks: list[SmtpSink] = []

    def factory(name: str = "sink", start: bool = True, port: int | None = None, **kw) -> SmtpSink:
        s = SmtpSink(port or free_port(), workdir, name=name, **kw)
        sinks.append(s)
        if start:
            s.start()
        return s

    yield factory
    for s in sinks:
        s.cleanup()


@pytest.fixture
def sink(make_sink) -> SmtpSink:
    return make_sink("sink")


@pytest.fixture
def make_dns(workdir):
    """Starts unbound serving test zones on 127.0.0.1; see dnsserver.py."""
    servers: list[DnsServer] = []

    def factory(records=(), name: str | None = None, start: bool = True, **kw) -> DnsServer:
        d = DnsServer(workdir, records, name=name or f"dns{len(servers)}", **kw)
        servers.append(d)
        if start:
            d.start()
        return d

    yield factory
    for d in servers:
        d.cleanup()


@pytest.fixture
def make_moatd(workdir, moat_bin, request):
    daemons: list[Moatd] = []

    def factory(relay_domains=None, overrides=None, env=None, start=True, name="moat") -> Moatd:
        sub = name if not any(d.workdir.name == name for d in daemons) else f"{name}{len(daemons)}"
        m = Moatd(workdir / sub, bin_dir=moat_bin, relay_domains=relay_domains, overrides=overrides, env=env)
        daemons.append(m)
        if start:
            m.start()
        return m

    yield factory
    problems = []
    for m in daemons:
        try:
            m.stop()
        except AssertionError as e:
            problems.append(str(e))
        reports = m.sanitizer_reports()
        if reports:
            problems.append(f"sanitizer report(s) {reports} in {m.log_path}:\n{m.log_tail(8000)}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def moatd(make_moatd, sink) -> Moatd:
    return make_moatd(relay_domains=[relay_domain("example.test", sink.port)])


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # On failure, attach the tail of every moatd log of the test to the report.
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        wd = item.funcargs.get("workdir")
        if isinstance(wd, Path):
            for log in sorted(wd.rglob("moatd.log")):
                text = log.read_text(errors="replace")[-3000:]
                rep.sections.append((f"moatd log {log.relative_to(wd)}", text))

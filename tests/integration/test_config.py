"""`moatctl config check` and SIGHUP reloads."""
import re
import time

import pytest

from moatlib import Moatd, RawSmtp, make_message, moat_bin_dir, relay_domain, token, wait_until


@pytest.fixture
def ctl_only(workdir):
    if not (moat_bin_dir() / "moatctl").exists():
        pytest.skip(f"{moat_bin_dir()}/moatctl does not exist yet")
    return Moatd(workdir / "moat", relay_domains=[relay_domain("example.test", 2526)])


def test_config_check_good(ctl_only):
    r = ctl_only.ctl("config", "check", str(ctl_only.config_path))
    assert r.returncode == 0, r.stdout_text + r.stderr_text


@pytest.mark.parametrize("mutation, line_of", [
    # (how to break the file, which line the error must name)
    ("syntax", "hostname ="),
    ("bad_duration", "command_timeout ="),
    ("bad_enum", "bare_line ="),
    ("bad_address", "address ="),
    ("unknown_key", "no_such_key ="),
])
def test_config_check_bad_file_names_line(ctl_only, workdir, mutation, line_of):
    lines = ctl_only.config_path.read_text().splitlines()
    if mutation == "syntax":
        lines = [("hostname = " if l.startswith("hostname =") else l) for l in lines]
    elif mutation == "bad_duration":
        lines = [('command_timeout = "soon"' if l.startswith("command_timeout =") else l) for l in lines]
    elif mutation == "bad_enum":
        lines = [('bare_line = "sometimes"' if l.startswith("bare_line =") else l) for l in lines]
    elif mutation == "bad_address":
        done = False
        for i, l in enumerate(lines):
            if l.startswith("address =") and not done:
                lines[i], done = 'address = "127.0.0.1:notaport"', True
    elif mutation == "unknown_key":
        i = lines.index("[limits]")
        lines.insert(i + 1, "no_such_key = 1")
    want = next(i for i, l in enumerate(lines) if l.startswith(line_of)) + 1
    bad = workdir / "bad.toml"
    bad.write_text("\n".join(lines) + "\n")
    r = ctl_only.ctl("config", "check", str(bad))
    out = r.stdout_text + r.stderr_text
    assert r.returncode == 1, f"exit {r.returncode}: {out}"
    assert re.search(rf"{re.escape(str(bad))}:{want}:", out) or re.search(rf"bad\.toml:{want}:", out), \
        f"expected an error naming {bad.name}:{want}: in:\n{out}"


def test_sighup_adds_relay_domain(make_sink, make_moatd):
    sink = make_sink("sink")
    sink2 = make_sink("new")
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)])

    def rcpt(addr):
        c = RawSmtp(m.port())
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<sender@sender.test>")
        code = c.cmd(f"RCPT TO:<{addr}>")[0]
        c.close()
        return code

    assert rcpt("user@new.test") == 554
    m.reconfigure({"relay": {"domain": [relay_domain("example.test", sink.port),
                                        relay_domain("new.test", sink2.port)]}})
    m.sighup()
    wait_until(lambda: rcpt("user@new.test") == 250, 10, "new.test to be accepted after SIGHUP", interval=0.3)
    tok = token()
    m.send(make_message(tok, rcpt="user@new.test"), rcpts=["user@new.test"])
    sink2.wait_token(tok)
    assert m.running


def test_sighup_broken_file_keeps_old_config(make_sink, make_moatd):
    sink = make_sink("sink")
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)])
    good = m.config_path.read_text()
    m.config_path.write_text(good.replace("[limits]", "[limits\nthis is not toml"))
    m.sighup()
    time.sleep(1.5)
    assert m.running, "moatd must survive a reload of a broken file"
    tok = token()
    m.send(make_message(tok))                          # old config still serves
    sink.wait_token(tok)
    c = RawSmtp(m.port())
    assert c.banner[0] == 220
    c.close()
    # a later good reload still works
    m.config_path.write_text(good)
    m.sighup()
    time.sleep(1.0)
    assert m.running


def test_moatctl_reload_and_metrics(make_sink, make_moatd):
    """`moatctl reload` does what SIGHUP does, and `moatctl metrics` shows
    the counters a Prometheus scrape will read."""
    sink = make_sink("sink")
    sink2 = make_sink("new")
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)])
    tok = token()
    m.send(make_message(tok))
    sink.wait_token(tok)

    r = m.ctl("metrics", check=True)
    assert re.search(r'^moat_smtp_messages_total\{outcome="accepted"\} 1$', r.stdout_text, re.M), r.stdout_text
    assert re.search(r"^moat_smtp_connections_total [1-9]", r.stdout_text, re.M), r.stdout_text

    m.reconfigure({"relay": {"domain": [relay_domain("example.test", sink.port),
                                        relay_domain("new.test", sink2.port)]}})
    r = m.ctl("reload", check=True)
    assert r.stdout_text.strip() == "OK", r.stdout_text
    tok2 = token()
    m.send(make_message(tok2, rcpt="user@new.test"), rcpts=["user@new.test"])
    sink2.wait_token(tok2)

    # A broken file: moatctl names the bad line and moatd keeps running.
    m.config_path.write_text(m.config_path.read_text().replace("[limits]", "[limits\nbroken"))
    r = m.ctl("reload")
    assert r.returncode == 1 and re.search(r"moat\.toml:\d+:", r.stderr_text), (r.stdout_text, r.stderr_text)
    assert m.running

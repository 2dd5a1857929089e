"""Attachment policy (issue 4) through the real moatd: a blocked attachment
is held and never delivered, whether it is named plainly, split with RFC 2231
continuations, encoded with RFC 2047, hidden in a zip, renamed (true type by
libmagic), double-extended or in an encrypted zip; a per-domain policy lets
one domain receive what another may not. No moat-scand needed.

"Held" as in test_antivirus.py: a quarantine entry for the queue id of the
250, with the symbol the policy names; the next hop gets nothing."""
from __future__ import annotations

import io
import subprocess
import zipfile
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from moatlib import make_message, relay_domain, token
from test_antivirus import attachment, caught_by, data_reply, held_soon, mime, qid_of

CLAM_EXE = Path("/usr/share/clamav-testfiles/clam.exe")


@pytest.fixture
def att(make_moatd, sink, make_sink):
    lenient_sink = make_sink("lenient")
    m = make_moatd(
        relay_domains=[relay_domain("example.test", sink.port), relay_domain("lenient.test", lenient_sink.port)],
        overrides={
            "filter": [{"name": "helo"}, {"name": "hops"}, {"name": "size"}, {"name": "attachments"}],
            "attachments": {"domain": [{"name": "lenient.test", "blocked_extensions": ["scr"],
                                        "block_double_extension": False}]},
        })
    return m, sink, lenient_sink


def with_attachment(data: bytes, name: str, ctype="application/octet-stream", rcpt="user@example.test") -> bytes:
    m = MIMEMultipart()
    m.attach(MIMEText("see attached"))
    m.attach(attachment(data, name, ctype))
    b = mime(m)
    return b.replace(b"To: user@example.test", f"To: {rcpt}".encode())


def raw_attachment(disposition: str, data_b64: str) -> bytes:
    return ("From: a@sender.test\r\nTo: user@example.test\r\nSubject: t " + token() + "\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
            "--b\r\nContent-Type: application/octet-stream\r\n" + disposition + "\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" + data_b64 + "\r\n--b--\r\n").encode()


def zipped(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, d in entries.items():
            z.writestr(n, d)
    return buf.getvalue()


def assert_held(m, msg: bytes, what: str, symbol: str, rcpt="user@example.test"):
    code, text = data_reply(m, msg, rcpt=rcpt)
    assert code == 250, (what, code, text)
    e = held_soon(m, qid_of(text))
    assert caught_by(e, symbol), f"{what}: not held for {symbol}: {e}"


@pytest.mark.asan
def test_blocked_attachments_are_held_never_delivered(att, moat_build, workdir):
    m, sink, _ = att
    cases = {
        "plain .exe name": (with_attachment(b"MZ fake", "setup.exe"), "ATTACHMENT_BLOCKED_EXT"),
        "RFC 2231 split name": (raw_attachment('Content-Disposition: attachment;\r\n filename*0="inv";\r\n'
                                               ' filename*1="oice.b";\r\n filename*2="at"', "ZWNobyBoaQ=="),
                                "ATTACHMENT_BLOCKED_EXT"),
        "RFC 2231 encoded": (raw_attachment("Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.vbs",
                                            "ZWNobyBoaQ=="), "ATTACHMENT_BLOCKED_EXT"),
        "RFC 2047 name": (raw_attachment('Content-Disposition: attachment; filename="=?utf-8?B?ZXZpbC5qcw==?="',
                                         "ZWNobyBoaQ=="), "ATTACHMENT_BLOCKED_EXT"),
        "double extension": (with_attachment(b"x", "invoice.pdf.scr"), "ATTACHMENT_DOUBLE_EXT"),
        "renamed executable": (with_attachment(CLAM_EXE.read_bytes(), "holiday.jpg", "image/jpeg"),
                               "ATTACHMENT_BLOCKED_TYPE"),
        "exe inside zip": (with_attachment(zipped({"docs/readme.txt": b"hi", "docs/run.cmd": b"x"}), "docs.zip",
                                           "application/zip"), "ATTACHMENT_BLOCKED_IN_ARCHIVE"),
        # Two boundary parameters (ClamAV PR #1720): the part behind the second
        # one is found by the lenient second reading.
        "hidden behind a second boundary": (
            ("From: a@sender.test\r\nTo: user@example.test\r\nSubject: t " + token() + "\r\nMIME-Version: 1.0\r\n"
             "Content-Type: multipart/mixed; boundary=X; boundary=Y\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\n"
             "hi\r\n--X--\r\n--Y\r\nContent-Type: application/octet-stream\r\n"
             "Content-Disposition: attachment; filename=\"run.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
             "ZWNobyBoaQ==\r\n--Y--\r\n").encode(), "ATTACHMENT_BLOCKED_EXT"),
    }
    # An encrypted zip made by Info-ZIP (scripts/install-deps.sh installs zip).
    src = workdir / "secret.txt"
    src.write_text("secret")
    out = workdir / "enc.zip"
    subprocess.run(["zip", "-q", "-j", "-P", "infected", str(out), str(src)], check=True)
    cases["encrypted zip"] = (with_attachment(out.read_bytes(), "enc.zip", "application/zip"), "ATTACHMENT_ENCRYPTED")
    for what, (msg, symbol) in cases.items():
        assert_held(m, msg, what, symbol)
    tok = token()
    m.send(make_message(tok))
    sink.wait_token(tok)
    assert sink.count() == 1, "only the clean message may be delivered"


def test_per_domain_policy(att):
    m, sink, lenient = att
    # lenient.test blocks only .scr and ignores double extensions: a .exe arrives.
    msg = with_attachment(b"MZ fake", "tool.exe", rcpt="user@lenient.test")
    code, text = data_reply(m, msg, rcpt="user@lenient.test")
    assert code == 250, (code, text)
    got = lenient.wait_for(1)
    assert got[0].contains("tool.exe") and got[0].recipients == ["user@lenient.test"]
    # The same attachment for example.test is held.
    assert_held(m, with_attachment(b"MZ fake", "tool.exe"), "exe for example.test", "ATTACHMENT_BLOCKED_EXT")
    # And .scr is held for lenient.test too.
    assert_held(m, with_attachment(b"x", "screen.scr", rcpt="user@lenient.test"), ".scr for lenient.test",
                "ATTACHMENT_BLOCKED_EXT", rcpt="user@lenient.test")
    sink.assert_quiet(0.5)
    assert lenient.count() == 1

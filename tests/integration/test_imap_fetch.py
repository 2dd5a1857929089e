"""IMAP FETCH over many messages and SEARCH from the index (issue 5) against
the real moatd with imaplib: FETCH reads the store a window at a time while
it writes the previous one, and reads neighbouring bodies of a pack in one
go, so a mailbox larger than a window, with bodies of every size (packed and
in files of their own, compressed or not), must come back byte for byte, in
order, with \\Seen set where BODY[] asked for it. SENTBEFORE/SENTON/SENTSINCE
and SUBJECT are answered from the cached ENVELOPE: their hits must be what
the messages' headers say (RFC 9051 §6.4.4)."""
from __future__ import annotations

import base64
import random
import re

from test_imap import ALICE, PASSWORD, imap, imap_moatd, raw_tls, read_until  # noqa: F401  (fixture)

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def corpus(n: int) -> list[tuple[bytes, int, str]]:
    """n messages: (bytes, day of month in Aug 2002, subject as a client reads it)."""
    rnd = random.Random(5)
    out = []
    for i in range(n):
        day = 1 + i % 28
        size = [300, 5000, 70000, 200000][i % 4] if i % 10 else 1500
        if i % 3 == 0:  # text that compresses
            body = (f"line {i} of the body, the same words again and again\r\n" * (size // 50 + 1)).encode()
        else:  # text that does not (base64 of random bytes)
            body = base64.encodebytes(rnd.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
        if i % 7 == 0:
            subject_raw, subject = f"=?utf-8?q?Gr=C3=BC=C3=9Fe_{i}?=", f"Grüße {i}"
        elif i % 11 == 0:
            subject_raw, subject = f"folded\r\n\tsubject {i}", f"folded\tsubject {i}"
        else:
            subject_raw, subject = f"plain subject {i}", f"plain subject {i}"
        head = (f"From: sender{i}@example.test\r\nTo: {ALICE}\r\nSubject: {subject_raw}\r\n"
                f"Date: Mon, {day} Aug 2002 12:00:00 +0000\r\nMessage-ID: <{i}@example.test>\r\n\r\n").encode()
        out.append((head + body, day, subject))
    return out


def literals(data) -> list[bytes]:
    return [d[1] for d in data if isinstance(d, tuple)]


def test_fetch_many_windows_byte_for_byte(imap_moatd):
    m = imap_moatd
    msgs = corpus(150)
    c = imap(m)
    for raw, _, _ in msgs:
        assert c.append("INBOX", None, None, raw)[0] == "OK"
    assert c.select("INBOX")[1][0] == b"150"
    typ, data = c.fetch("1:*", "(BODY.PEEK[])")
    assert typ == "OK"
    got = literals(data)
    assert len(got) == 150
    assert [g == raw for g, (raw, _, _) in zip(got, msgs)] == [True] * 150
    # a UID range in the middle, with sizes
    typ, data = c.uid("SEARCH", None, "ALL")
    uids = [int(x) for x in data[0].split()]
    typ, data = c.uid("FETCH", f"{uids[10]}:{uids[139]}", "(RFC822.SIZE BODY.PEEK[])")
    got = literals(data)
    assert [g == raw for g, (raw, _, _) in zip(got, msgs[10:140])] == [True] * 130
    sizes = [int(x) for x in re.findall(rb"RFC822.SIZE (\d+)", b"".join(d[0] for d in data if isinstance(d, tuple)))]
    assert sizes == [len(raw) for raw, _, _ in msgs[10:140]]
    # BODY[] (not PEEK) sets \Seen on every message, across windows
    assert c.search(None, "UNSEEN")[1][0].split() == [str(i).encode() for i in range(1, 151)]
    typ, data = c.fetch("1:*", "(BODY[])")
    # the FLAGS item follows the literal: "* 1 FETCH (BODY[] {n}\r\n...  FLAGS (\Seen))"
    tails = [d for d in data if isinstance(d, bytes)]
    assert len(tails) == 150 and all(b"FLAGS (\\Seen)" in t for t in tails)
    assert [g == raw for g, (raw, _, _) in zip(literals(data), msgs)] == [True] * 150
    assert c.search(None, "UNSEEN")[1][0] == b""
    c.logout()


def test_pipelined_fetches_answer_in_order_and_see_expunges(imap_moatd):
    """Commands sent in one go are answered in one go (the responses are
    held until the input runs dry or 64 KiB are due), in order, byte for
    byte; FETCH reads most bodies on the session's thread without the
    blocking pool, and must still not serve a message another session has
    expunged."""
    m = imap_moatd
    msgs = [raw for raw, _, _ in corpus(40)]
    c = imap(m)
    for raw in msgs:
        assert c.append("INBOX", None, None, raw)[0] == "OK"
    c.select("INBOX")
    uids = [int(x) for x in c.uid("SEARCH", None, "ALL")[1][0].split()]
    t = raw_tls(m)
    t.sendall(f"l LOGIN {ALICE} {PASSWORD}\r\ns SELECT INBOX\r\n".encode())
    read_until(t, b"s")
    batch = "".join(f"f{i} UID FETCH {u} (BODY.PEEK[])\r\n" for i, u in enumerate(uids))
    t.sendall(batch.encode() + b"n NOOP\r\n")
    data = read_until(t, b"n")
    ends = [data.index(f"\r\nf{i} OK".encode()) for i in range(len(msgs))] + [data.index(b"\r\nn OK")]
    assert ends == sorted(ends)  # every answer, in order, each with its message's bytes
    assert [raw in data[(ends[i - 1] if i else 0):ends[i]] for i, raw in enumerate(msgs)] == [True] * len(msgs)
    # Another session expunges one; a FETCH of it returns no message (the
    # expunge is reported, RFC 9051 §7.5.1), the next one is served.
    c.uid("STORE", str(uids[5]), "+FLAGS", "(\\Deleted)")
    c.expunge()
    t.sendall(f"g UID FETCH {uids[5]} (BODY.PEEK[])\r\nh UID FETCH {uids[6]} (BODY.PEEK[])\r\n".encode())
    data = read_until(t, b"h")
    g_end = data.index(b"g OK")
    assert b"FETCH" not in data[:g_end] and b"* 6 EXPUNGE" in data[:g_end]
    assert msgs[6] in data[g_end:]
    t.close()
    c.logout()


def test_search_dates_and_subject_match_the_headers(imap_moatd):
    m = imap_moatd
    msgs = corpus(60)
    c = imap(m)
    for raw, _, _ in msgs:
        assert c.append("INBOX", None, None, raw)[0] == "OK"
    c.select("INBOX")

    def hits(*keys) -> list[int]:
        typ, data = c.search("UTF-8", *keys)
        assert typ == "OK"
        return [int(x) for x in data[0].split()]

    def expect(pred) -> list[int]:
        return [i + 1 for i, (_, day, subject) in enumerate(msgs) if pred(day, subject)]

    assert hits("SENTBEFORE", "10-Aug-2002") == expect(lambda d, s: d < 10)
    assert hits("SENTON", "14-Aug-2002") == expect(lambda d, s: d == 14)
    assert hits("SENTSINCE", "20-Aug-2002") == expect(lambda d, s: d >= 20)
    assert hits("SUBJECT", "plain") == expect(lambda d, s: "plain" in s)
    assert hits("SUBJECT", '"subject 2"') == expect(lambda d, s: "subject 2" in s)
    # the folded ones (a literal in the ENVELOPE) read the header, whose
    # decoded value keeps the TAB of the fold (the ENVELOPE has a space there)
    assert hits("SUBJECT", '"folded\tsubject"') == expect(lambda d, s: "folded\tsubject" in s) != []
    assert hits("SUBJECT", '"folded subject"') == []
    assert hits("SUBJECT", "folded") == expect(lambda d, s: "folded" in s) != []
    # RFC 2047 decoded, case folded beyond ASCII
    c.literal = "GRÜSSE".encode()
    typ, data = c.search("UTF-8", "SUBJECT")
    assert [int(x) for x in data[0].split()] == []  # no ß -> ss folding (i;unicode-casemap would)
    c.literal = "GRÜßE".encode()
    typ, data = c.search("UTF-8", "SUBJECT")
    assert [int(x) for x in data[0].split()] == expect(lambda d, s: "grüße" in s.lower())
    assert hits("SENTON", "14-Aug-2002", "SUBJECT", "plain") == expect(lambda d, s: d == 14 and "plain" in s)
    assert hits("OR", "SENTON", "1-Aug-2002", "SUBJECT", '"subject 3"') == expect(
        lambda d, s: d == 1 or "subject 3" in s)
    c.logout()

// SEARCH answered from the cached ENVELOPE (RFC 9051 §6.4.4 SENTBEFORE,
// SENTON, SENTSINCE, SUBJECT): without reading the message it must give the
// same answer as the message's header does, and it must not be used for the
// keys it cannot answer (addresses, HEADER, BODY, TEXT).
#include <catch2/catch.hpp>

#include "common/proto/imap/structure.hpp"
#include "common/proto/mime/mime.hpp"
#include "store/imap/search.hpp"
#include "tests/unit/imap/imap_drive.hpp"

using namespace moat;
using namespace moat::store;
using namespace moat::store::imap;
using namespace moat::proto::imap::test;

namespace {

constexpr std::int64_t kInternal = 1770076800;  // 2026-02-03 00:00 UTC

Search parse_search(const std::string& keys) {
  const auto c = parse_one("a SEARCH " + keys + "\r\n");
  auto s = Search::parse(c.args, 0, SearchScope{1, 1, nullptr});
  REQUIRE(s);
  return std::move(*s);
}

MessageInfo info_for(const std::string& message) {
  MessageInfo m;
  m.uid = 1;
  m.internaldate = kInternal;
  m.size = message.size();
  m.envelope = proto::imap::envelope(mime::parse(message));
  return m;
}

// Headers that exercise the ENVELOPE's string forms: quoted with escapes,
// folded (a literal), RFC 2047 words, absent fields (NIL), odd dates.
const std::vector<std::string> kMessages = {
    "From: a@x.test\r\nDate: Tue, 03 Dec 2002 10:00:00 +0000\r\nSubject: money for \"you\" \\ now\r\n\r\nbody\r\n",
    "From: a@x.test\r\nDate: Sat, 31 Aug 2002\r\n 23:59:00 -0700\r\nSubject: a folded\r\n\tsubject line\r\n\r\nb\r\n",
    "From: a@x.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?= und =?iso-8859-1?q?caf=E9?=\r\n\r\nb\r\n",
    "From: a@x.test\r\n\r\nno date, no subject\r\n",
    "From: a@x.test\r\nDate: 2002/09/14 Sat 10:00\r\nSubject:\r\n\r\nb\r\n",
    "From: a@x.test\r\nDate: not a date at all\r\nSubject: MONEY\r\n\r\nb\r\n",
};

const std::vector<std::string> kKeys = {
    "SENTBEFORE 1-Sep-2002", "SENTON 31-Aug-2002", "SENTSINCE 3-Dec-2002", "SENTON 3-Feb-2026",
    "SENTON 14-Sep-2002",    "SUBJECT money",      "SUBJECT \"\"",        "SUBJECT \"folded subject\"",
    "SUBJECT \"grüße\"",         "SUBJECT \"CAFÉ\"",       "SUBJECT \"\\\"you\\\" \\\\\"",
    "NOT SUBJECT money",     "OR SENTON 31-Aug-2002 SUBJECT \"köln\"",        "SEEN SUBJECT money",
};

}  // namespace

TEST_CASE("envelope_fields reads Date and Subject in every string form", "[imap][search]") {
  auto f = envelope_fields("(\"Tue, 3 Dec 2002\" \"say \\\"hi\\\" \\\\o/\" NIL NIL NIL NIL NIL NIL NIL NIL)");
  REQUIRE(f);
  CHECK(f->date.value() == "Tue, 3 Dec 2002");
  CHECK(f->subject.value() == "say \"hi\" \\o/");
  f = envelope_fields("(NIL {5}\r\nab\"cd NIL)");
  REQUIRE(f);
  CHECK(!f->date);
  CHECK(f->subject.value() == "ab\"cd");
  CHECK(f->subject_folded);
  CHECK(!envelope_fields(""));
  CHECK(!envelope_fields("NIL"));
  CHECK(!envelope_fields("(\"unterminated"));
  CHECK(!envelope_fields("({99}\r\nshort"));
  CHECK(!envelope_fields("(NIL{1}\r\nx)"));
}

TEST_CASE("SENT* and SUBJECT from the ENVELOPE agree with the header", "[imap][search]") {
  for (const auto& keys : kKeys) {
    const Search s = parse_search(keys);
    for (std::size_t i = 0; i < kMessages.size(); ++i) {
      INFO(keys << " / message " << i);
      const std::string& msg = kMessages[i];
      const MessageInfo m = info_for(msg);
      // message 1's Subject is folded (a literal in the ENVELOPE): SUBJECT reads the header there
      const bool subject = keys.find("SUBJECT") != std::string::npos;
      REQUIRE(s.from_envelope(m) == !(subject && i == 1));
      if (!s.from_envelope(m)) continue;
      const std::string_view header = header_block(msg);
      const auto parsed = mime::parse(header);
      CHECK(s.matches(m, 1, nullptr, {}) == s.matches(m, 1, &parsed, header));
    }
  }
  // and what those answers are, for a few (so agreeing on "false" everywhere cannot pass)
  const auto hits = [](const std::string& keys) {
    const Search s = parse_search(keys);
    std::string out;
    for (const auto& msg : kMessages) out += s.matches(info_for(msg), 1, nullptr, {}) ? '1' : '0';
    return out;
  };
  CHECK(hits("SENTBEFORE 1-Sep-2002") == "010000");  // 2002/09/14 is read (tolerated form)
  CHECK(hits("SENTON 3-Feb-2026") == "001101");      // no Date or an unreadable one: the INTERNALDATE
  CHECK(hits("SUBJECT money") == "100001");
  CHECK(hits("SUBJECT \"\"") == "111011");           // the field exists (empty counts)
  CHECK(hits("SUBJECT \"grüße\"") == "001000");
}

TEST_CASE("keys the ENVELOPE cannot answer read the message", "[imap][search]") {
  const MessageInfo m = info_for(kMessages[0]);
  for (const char* keys : {"FROM a", "TO a", "CC a", "BCC a", "HEADER Subject money", "BODY money", "TEXT money",
                           "SUBJECT money BODY x", "OR SUBJECT a FROM b", "NOT (FROM boss)",
                           "(SUBJECT a (SENTON 1-Jan-2002 (HEADER X-A b)))"}) {
    INFO(keys);
    CHECK(!parse_search(keys).from_envelope(m));
  }
  CHECK(parse_search("NOT (SUBJECT a (SENTON 1-Jan-2002))").from_envelope(m));
  // nothing cached (a message appended before the cache existed): read it
  MessageInfo bare = m;
  bare.envelope.clear();
  CHECK(!parse_search("SUBJECT money").from_envelope(bare));
  // index-only keys never need the message at all
  CHECK(!parse_search("SEEN LARGER 10").needs_content());
}

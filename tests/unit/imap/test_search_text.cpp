// What IMAP SEARCH's text and sent-date keys see (RFC 9051 §6.4.4): one
// message per cause found comparing moat with Dovecot 2.3 on the bench/imap
// corpus (bench/README.md, bench/imap), each cut down to what shows it.
#include <catch2/catch.hpp>

#include "common/proto/mime/mime.hpp"
#include "store/imap/search.hpp"
#include "tests/unit/imap/imap_drive.hpp"

using namespace moat;
using namespace moat::store;
using namespace moat::store::imap;
using namespace moat::proto::imap::test;

namespace {

constexpr std::int64_t kInternal = 1770076800;  // 2026-02-03 00:00 UTC

// Whether SEARCH `keys` matches `message` (given as the session gives it:
// the header block alone unless BODY or TEXT).
bool matches(const std::string& keys, const std::string& message) {
  const auto c = parse_one("a SEARCH " + keys + "\r\n");
  auto s = Search::parse(c.args, 0, SearchScope{1, 1, nullptr});
  REQUIRE(s);
  const std::string content(s->needs_body() ? std::string_view(message) : header_block(message));
  const auto parsed = mime::parse(content);
  MessageInfo m;
  m.uid = 1;
  m.internaldate = kInternal + 3600;
  m.size = message.size();
  return s->matches(m, 1, &parsed, content);
}

// spam-2/00947: single-part quoted-printable HTML, the word only in a link,
// split by a soft line break.
const std::string kHtmlLink =
    "From: a@x.test\r\nSubject: offer\r\nContent-Type: text/html; charset=\"iso-8859-1\"\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    "<p>To be removed click <a href=3D\"http://x.test/unsub=\r\nscribe.htm\">HERE</a>&nbsp;now</p>\r\n";

// easy-ham-1/01294: a forwarded message (message/rfc822) whose own header
// holds the word.
const std::string kForward =
    "From: a@x.test\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
    "preamble penguin\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
    "--b1\r\nContent-Type: message/rfc822\r\n\r\n"
    "From: list@y.test\r\nList-Id: Red Hat Linux beta <limbo.y.test>\r\nSubject: =?iso-8859-1?q?caf=E9?=\r\n\r\n"
    "inner body\r\n"
    "--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"notes.bin\"\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\nc2VjcmV0IHdvcmQ=\r\n"  // "secret word"
    "--b1\r\nContent-Type: text/plain; name=\"todo.txt\"\r\nContent-Disposition: attachment\r\n\r\nbuy milk\r\n"
    "--b1--\r\nepilogue walrus\r\n";

// Latin-1, quoted-printable: "Grüße aus Köln"
const std::string kLatin1 =
    "From: a@x.test\r\nSubject: hi\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe aus K=F6ln\r\n";

std::string dated(const std::string& date) { return "From: a@x.test\r\nDate: " + date + "\r\nSubject: d\r\n\r\nbody\r\n"; }

}  // namespace

TEST_CASE("SEARCH BODY reads HTML as written, transfer-decoded", "[imap][search]") {
  // a word in an href is in the body (moat used to search the rendered text)
  CHECK(matches("BODY unsubscribe", kHtmlLink));
  CHECK(matches("BODY \"HREF=\\\"http://x.test/UNSUBSCRIBE\"", kHtmlLink));  // markup, decoded QP
  CHECK(matches("BODY &nbsp;now", kHtmlLink));                              // entities as written
  CHECK_FALSE(matches("BODY =3D", kHtmlLink));                              // not the encoded form
  CHECK(matches("TEXT unsubscribe", kHtmlLink));
  CHECK_FALSE(matches("BODY offer", kHtmlLink));                            // the header is not the body
}

TEST_CASE("SEARCH TEXT covers every header, BODY only text and message parts", "[imap][search]") {
  // the forwarded message's header: in TEXT, not in BODY (Dovecot: the same)
  CHECK(matches("TEXT linux", kForward));
  CHECK_FALSE(matches("BODY linux", kForward));
  CHECK(matches("TEXT \"caf\xc3\xa9\"", kForward));               // RFC 2047 inside the attached message
  CHECK(matches("BODY \"inner body\"", kForward));               // its body is text
  CHECK(matches("TEXT todo.txt", kForward));                     // MIME header fields (RFC 9051 §6.4.4)
  CHECK(matches("BODY \"buy milk\"", kForward));                 // a text/plain attachment is text
  CHECK(matches("BODY \"see below\"", kForward));
  // not text: a base64 application part, decoded or not; preamble and epilogue
  CHECK_FALSE(matches("BODY secret", kForward));
  CHECK_FALSE(matches("TEXT c2VjcmV0", kForward));
  CHECK_FALSE(matches("TEXT penguin", kForward));
  CHECK_FALSE(matches("TEXT walrus", kForward));
  // no match across two parts
  CHECK_FALSE(matches("BODY \"below inner\"", kForward));
  // header keys still look at the top-level header only
  CHECK(matches("FROM a@x", kForward));
  CHECK_FALSE(matches("FROM list@y", kForward));
}

TEST_CASE("SEARCH text keys decode charsets and fold case beyond ASCII", "[imap][search]") {
  CHECK(matches("CHARSET UTF-8 BODY \"gr\xc3\xbc\xc3\x9f" "e\"", kLatin1));      // grüße
  CHECK(matches("CHARSET UTF-8 BODY \"GR\xc3\x9c\xc3\x9f" "E AUS\"", kLatin1));  // GRÜßE AUS
  CHECK(matches("CHARSET UTF-8 TEXT \"k\xc3\xb6ln\"", kLatin1));
  CHECK(matches("CHARSET UTF-8 TEXT \"K\xc3\x96LN\"", kLatin1));                 // KÖLN
  CHECK_FALSE(matches("BODY \"gr=FC\"", kLatin1));
  CHECK_FALSE(matches("CHARSET UTF-8 BODY \"koln\"", kLatin1));  // no accent stripping (Dovecot's casemap would)
  CHECK(fold_case("\xc3\x9c" "BER \xce\xa3\xce\x91") == "\xc3\xbc" "ber \xcf\x83\xce\xb1");  // ÜBER ΣΑ
  CHECK(fold_case("A\xff\xc3" "B") == "a\xff\xc3" "b");  // malformed bytes kept
  CHECK(fold_case("\xe0\x80\x80" "X") == "\xe0\x80\x80" "x");  // an overlong NUL is not decoded
}

TEST_CASE("SEARCH SENT* read the Date field like Dovecot, else INTERNALDATE", "[imap][search]") {
  // spam-2/01388: a four-digit year is the year written, 102 here
  CHECK(matches("SENTBEFORE 1-Sep-2002", dated("Tue, 03 Dec 0102 17:08:50 +1100")));
  CHECK(matches("SENTON 3-Dec-0102", dated("Tue, 03 Dec 0102 17:08:50 +1100")));
  CHECK(matches("SENTON 3-Dec-2002", dated("Tue, 03 Dec 102 17:08:50 +1100")));  // three digits: 1900 + n
  CHECK(matches("SENTON 3-Dec-1969", dated("3 Dec 69 17:08 GMT")));               // two: 50-99 19xx
  CHECK(matches("SENTON 3-Dec-2049", dated("3 Dec 49 17:08 GMT")));               //      00-49 20xx
  // time and zone disregarded (the day as the sender wrote it)
  CHECK(matches("SENTON 1-Jan-2024", dated("Mon, 01 Jan 2024 23:59:59 -1200")));
  CHECK(matches("SENTON 1-Jan-2024", dated("Mon, 01 Jan 2024 00:00:01 +1400")));
  // tolerated: no comma, full month names, comments, folding
  CHECK(matches("SENTON 3-Sep-2002", dated("Tue 3 September 2002 10:00:00 +0000")));
  CHECK(matches("SENTON 3-Sep-2002", dated("(sent) Tue, (day) 3 Sep (month)\r\n 2002 10:00 GMT")));
  // no Date, or one that cannot be read: INTERNALDATE's day (RFC 5256 §2.2)
  const std::string none = "From: a@x.test\r\nSubject: d\r\n\r\nbody\r\n";
  CHECK(matches("SENTON 3-Feb-2026", none));
  CHECK(matches("SENTSINCE 3-Feb-2026", dated("yesterday")));
  CHECK(matches("SENTON 3-Feb-2026", dated("31 Foo 2002")));
  CHECK(matches("SENTON 3-Feb-2026", dated("Tue, 3 Dec")));
  CHECK(matches("SENTON 3-Feb-2026", dated("2002/13/01 10:00")));
  // not RFC 5322 but plain (spam-1/00406, 00302): Dovecot reads these as
  // 1-Jan-1970, so its SENTBEFORE 1-Sep-2002 finds them
  CHECK(matches("SENTON 21-Sep-2002", dated("Sat Sep 21 08:18:08 2002")));
  CHECK(matches("SENTON 14-Sep-2002", dated("2002/09/14 Sat 02:29:32 CDT")));
  CHECK(matches("SENTON 27-May-2002", dated("Mon, 27 May 2002 10:28:3 +0200")));  // spam-2/00471
}

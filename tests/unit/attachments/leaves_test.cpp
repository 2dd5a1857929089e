// The parts the scanners see (filters/attachments/leaves): leaves of the
// shared MIME parse, decoded; the second reading that finds what ClamAV PR
// #1720's evasion mails hide from a strict parse; encoded composites; RFC
// 2231 / 2047 names; limits; and the same leaves whether the parse was fed
// whole or one byte at a time.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "filters/attachments/leaves.hpp"

using namespace moat;
using namespace moat::filters::attachments;
namespace fs = std::filesystem;

namespace {

fs::path testdata() { return fs::path(MOAT_SOURCE_DIR) / ".." / "shared" / "testdata" / "clamav"; }

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream o;
  o << in.rdbuf();
  return o.str();
}

std::string crlf(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

Leaves leaves_of(std::string_view msg, const LeafLimits& lim = {}) { return collect_leaves(msg, mime::parse(msg), lim); }

const Leaf* named(const Leaves& ex, std::string_view name) {
  for (const auto& p : ex.parts)
    if (p.filename == name) return &p;
  return nullptr;
}

bool same(const Leaves& a, const Leaves& b) {
  if (a.parts.size() != b.parts.size() || a.limit != b.limit) return false;
  for (std::size_t i = 0; i < a.parts.size(); ++i) {
    const auto &x = a.parts[i], &y = b.parts[i];
    if (x.filename != y.filename || x.content_type != y.content_type || x.body != y.body || x.depth != y.depth ||
        x.decoded != y.decoded || x.hidden != y.hidden)
      return false;
  }
  return true;
}

}  // namespace

TEST_CASE("leaves: every upstream evasion mail yields clam.exe, byte for byte", "[attachments][leaves]") {
  const std::string clam = slurp("/usr/share/clamav-testfiles/clam.exe");
  REQUIRE(clam.size() == 544);
  std::size_t mails = 0, hidden = 0;
  for (const auto& e : fs::directory_iterator(testdata() / "upstream-mail")) {
    auto name = e.path().filename().string();
    if (!name.starts_with("clam.mail")) continue;
    ++mails;
    const std::string msg = slurp(e.path());
    auto ex = leaves_of(msg);
    INFO(name);
    CHECK(ex.limit.empty());
    const Leaf* p = named(ex, "clam.exe");
    REQUIRE(p);
    CHECK(p->body == clam);
    CHECK(p->decoded);
    CHECK(p->content_type.starts_with("application/"));
    hidden += p->hidden;
  }
  CHECK(mails == 8);  // clam.mail and the seven PR #1720 variants
  // The strict parse alone finds four; the second reading the other four
  // (two boundaries, two Content-Type fields, a comment in the header name, nested).
  CHECK(hidden == 4);
}

TEST_CASE("leaves: the same leaves from a parse fed one byte at a time and at odd splits", "[attachments][leaves]") {
  for (const char* f : {"clam.mail-multiple-boundaries.eml", "clam.mail-nested-comment-header-name.eml"}) {
    const std::string msg = slurp(testdata() / "upstream-mail" / f);
    const Leaves whole = leaves_of(msg);
    for (std::size_t step : {std::size_t(1), std::size_t(7), std::size_t(1000)}) {
      INFO(f << " step " << step);
      mime::Parser parser;
      for (std::size_t i = 0; i < msg.size(); i += step) parser.feed(std::string_view(msg).substr(i, step));
      auto tree = parser.finish();
      CHECK(same(collect_leaves(msg, tree), whole));
    }
  }
}

TEST_CASE("leaves: EICAR attachments decode to the 68-byte string", "[attachments][leaves]") {
  const std::string eicar = slurp(testdata() / "eicar" / "eicar.com");
  REQUIRE(eicar.size() == 68);
  auto ex = leaves_of(slurp(testdata() / "eicar" / "eicar-attachment.eml"));
  bool found = false;
  for (const auto& p : ex.parts) found = found || (p.body == eicar && p.decoded && !p.hidden);
  CHECK(found);
}

TEST_CASE("leaves: file names from RFC 2231 continuations and charsets, RFC 2047 words", "[attachments][leaves]") {
  auto name_of = [](std::string disposition) {
    std::string msg = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\n" +
                      disposition + "\r\nContent-Transfer-Encoding: base64\r\n\r\nZWNobyBoaQ==\r\n--b--\r\n";
    auto ex = leaves_of(msg);
    REQUIRE(ex.parts.size() == 1);
    CHECK(ex.parts[0].body == "echo hi");
    return ex.parts[0].filename;
  };
  CHECK(name_of("Content-Disposition: attachment;\r\n filename*0=\"inv\";\r\n filename*1=\"oice.b\";\r\n filename*2=\"at\"") ==
        "invoice.bat");
  CHECK(name_of("Content-Disposition: attachment; filename*1*=%2Eexe; filename*0*=us-ascii'en'evil") == "evil.exe");
  CHECK(name_of("Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20rates.exe") == "\xE2\x82\xAC rates.exe");
  CHECK(name_of("Content-Disposition: attachment; filename=\"=?utf-8?B?ZXZpbC5qcw==?=\"") == "evil.js");
  CHECK(name_of("Content-Disposition: attachment; filename=\"q\\\"uote.exe\"") == "q\"uote.exe");
}

TEST_CASE("leaves: message/rfc822 and multipart/alternative nest; encoded composites are read", "[attachments][leaves]") {
  std::string inner = crlf(
      "From: x@y\nContent-Type: multipart/alternative; boundary=alt\n\n--alt\nContent-Type: text/plain\n\nhi\n"
      "--alt\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\nPGI+aGk8L2I+\n--alt--\n");
  std::string msg = crlf(
      "From: a@b\nContent-Type: multipart/mixed; boundary=out\n\n--out\nContent-Type: text/plain\n\nbody\n"
      "--out\nContent-Type: message/rfc822\n\n") + inner + crlf("--out--\n");
  auto ex = leaves_of(msg);
  CHECK(ex.limit.empty());
  bool html = false;
  for (const auto& p : ex.parts) html = html || (p.content_type == "text/html" && p.body == "<b>hi</b>" && p.depth == 3);
  CHECK(html);
  for (const auto& p : ex.parts) CHECK_FALSE(p.hidden);  // a well-formed message has nothing hidden

  // A message/rfc822 that is itself base64: decoded, then its parts read.
  std::string b64 = "RnJvbTogeEB5DQpDb250ZW50LVR5cGU6IGFwcGxpY2F0aW9uL29jdGV0LXN0cmVhbQ0KQ29udGVu\r\n"
                    "dC1UcmFuc2Zlci1FbmNvZGluZzogYmFzZTY0DQpDb250ZW50LURpc3Bvc2l0aW9uOiBhdHRhY2ht\r\n"
                    "ZW50OyBmaWxlbmFtZT1pbm5lci5iaW4NCg0KYVc1dVpYST0NCg==";
  std::string wrapped = crlf("From: a@b\nContent-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: message/rfc822\n"
                             "Content-Transfer-Encoding: base64\n\n") + b64 + crlf("\n--o--\n");
  auto ex2 = leaves_of(wrapped);
  const Leaf* p = named(ex2, "inner.bin");
  REQUIRE(p);
  CHECK(p->body == "inner");
  CHECK(p->depth == 2);
  // The decoded message itself is a leaf too (ClamAV reads it as mail).
  CHECK(std::any_of(ex2.parts.begin(), ex2.parts.end(),
                    [](const Leaf& l) { return l.content_type == "message/rfc822" && l.body.starts_with("From: x@y"); }));
}

TEST_CASE("leaves: the second reading splits at any delimiter line", "[attachments][leaves]") {
  CHECK(is_any_delimiter("--X"));
  CHECK(is_any_delimiter("--X--"));
  CHECK(is_any_delimiter("--=_Part_1 "));
  CHECK_FALSE(is_any_delimiter("-- "));       // a signature separator
  CHECK_FALSE(is_any_delimiter("--"));
  CHECK_FALSE(is_any_delimiter("-- two words"));
  CHECK_FALSE(is_any_delimiter("x--X"));
  CHECK_FALSE(is_any_delimiter("--" + std::string(300, 'a')));
  // A plain text body that merely quotes dashes yields nothing extra.
  auto ex = leaves_of("From: a@b\r\nSubject: hi\r\n\r\n--\r\nnot: a part? no, no header before\r\n-- \r\nsig\r\n");
  REQUIRE(ex.parts.size() == 1);  // the root text itself
  CHECK_FALSE(ex.parts[0].decoded);
  CHECK(ex.parts[0].depth == 0);
  // A rule of dashes before prose with a colon (mailing-list footers in the
  // SpamAssassin corpus) is no part either.
  ex = leaves_of("Subject: hi\r\n\r\ntext\r\n-------------------------\r\nThis list is sponsored by: x\r\n");
  CHECK(ex.parts.size() == 1);
  // But a field name with a comment or blanks before the colon opens one.
  for (const char* field : {"Content-Type (x): application/x", "Content-Type : application/x", "Content-Type(a b):application/x"}) {
    INFO(field);
    ex = leaves_of(std::string("Subject: hi\r\n\r\n--Z\r\n") + field + "\r\n\r\nbody\r\n--Z--\r\n");
    REQUIRE(ex.parts.size() == 2);
    CHECK(ex.parts[1].hidden);
    CHECK(ex.parts[1].body == "body");
  }
}

TEST_CASE("leaves: limits stop extraction and say which", "[attachments][leaves]") {
  std::string msg = "Content-Type: multipart/mixed; boundary=b\r\n\r\n";
  for (int i = 0; i < 20; ++i) msg += "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nYWJj\r\n";
  msg += "--b--\r\n";
  LeafLimits lim;
  lim.max_parts = 10;
  auto ex = leaves_of(msg, lim);
  CHECK(ex.parts.size() == 10);
  CHECK(ex.limit.find("MIME parts") != std::string::npos);

  lim = {};
  lim.max_bytes = 30;
  ex = leaves_of(msg, lim);
  CHECK(ex.parts.size() == 10);  // 3 bytes each
  CHECK(ex.limit.find("bytes") != std::string::npos);

  // Encoded messages inside encoded messages: read up to max_reparse deep.
  std::string leaf = "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=deep.exe\r\n\r\nx\r\n";
  auto b64 = [](std::string_view in) {
    static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (std::size_t i = 0; i < in.size(); i += 3) {
      unsigned n = unsigned(static_cast<unsigned char>(in[i])) << 16;
      if (i + 1 < in.size()) n |= unsigned(static_cast<unsigned char>(in[i + 1])) << 8;
      if (i + 2 < in.size()) n |= unsigned(static_cast<unsigned char>(in[i + 2]));
      out += a[(n >> 18) & 63];
      out += a[(n >> 12) & 63];
      out += i + 1 < in.size() ? a[(n >> 6) & 63] : '=';
      out += i + 2 < in.size() ? a[n & 63] : '=';
    }
    return out;
  };
  std::string deep = leaf;
  for (int i = 0; i < 6; ++i) deep = "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(deep) + "\r\n";
  lim = {};
  lim.max_reparse = 8;
  ex = leaves_of(deep, lim);
  CHECK(ex.limit.empty());
  CHECK(named(ex, "deep.exe"));
  lim.max_reparse = 3;
  ex = leaves_of(deep, lim);
  CHECK_FALSE(named(ex, "deep.exe"));
  CHECK(ex.limit.find("nested deeper") != std::string::npos);

  // The parser's own limits (here: nesting) are reported, not passed over.
  std::string nested = "Subject: leaf\r\n\r\nx\r\n";
  for (int i = 0; i < 120; ++i) nested = "Content-Type: message/rfc822\r\n\r\n" + nested;
  CHECK_FALSE(leaves_of(nested).limit.empty());
}

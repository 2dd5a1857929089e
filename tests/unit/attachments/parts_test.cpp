// Lenient MIME extraction (filters/attachments/parts): decoded bodies, file
// names (RFC 2231, RFC 2047), nesting, the ClamAV PR #1720 evasions, limits.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "filters/attachments/parts.hpp"

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

const Part* find_named(const Extraction& ex, std::string_view name) {
  for (const auto& p : ex.parts)
    if (p.filename == name) return &p;
  return nullptr;
}

std::string crlf(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

}  // namespace

TEST_CASE("parts: every upstream evasion mail yields clam.exe, byte for byte", "[attachments][mime]") {
  const std::string clam = slurp("/usr/share/clamav-testfiles/clam.exe");
  REQUIRE(clam.size() == 544);
  std::size_t mails = 0;
  for (const auto& e : fs::directory_iterator(testdata() / "upstream-mail")) {
    auto name = e.path().filename().string();
    if (!name.starts_with("clam.mail")) continue;
    ++mails;
    auto ex = extract_parts(slurp(e.path()));
    INFO(name);
    CHECK(ex.limit.empty());
    const Part* p = find_named(ex, "clam.exe");
    REQUIRE(p);
    CHECK(p->body == clam);
    CHECK(p->content_type.starts_with("application/"));
  }
  CHECK(mails == 8);  // clam.mail and the seven PR #1720 variants
}

TEST_CASE("parts: EICAR attachments decode to the 68-byte string", "[attachments][mime]") {
  const std::string eicar = slurp(testdata() / "eicar" / "eicar.com");
  REQUIRE(eicar.size() == 68);
  auto ex = extract_parts(slurp(testdata() / "eicar" / "eicar-attachment.eml"));
  bool found = false;
  for (const auto& p : ex.parts) found = found || p.body == eicar;
  CHECK(found);
}

TEST_CASE("parts: RFC 2231 continuations, charsets and RFC 2047 names", "[attachments][mime]") {
  CHECK(header_param("attachment; filename=\"a b.pdf\"", "filename") == "a b.pdf");
  CHECK(header_param("attachment; FILENAME=plain.txt; size=3", "filename") == "plain.txt");
  CHECK(header_param("attachment; filename*=utf-8''%E2%82%AC%20rates.exe", "filename") == "\xE2\x82\xAC rates.exe");
  CHECK(header_param("attachment; filename*0=\"inv\"; filename*1=\"oice.pdf\"; filename*2=\".exe\"", "filename") ==
        "invoice.pdf.exe");
  CHECK(header_param("attachment; filename*1*=%2Eexe; filename*0*=us-ascii'en'evil", "filename") == "evil.exe");
  CHECK(header_param("application/x; name=\"=?utf-8?B?ZXZpbC5leGU=?=\"", "name") == "evil.exe");
  CHECK(header_param("application/x; name=\"=?iso-8859-1?Q?r=E9sum=E9?= =?us-ascii?Q?.scr?=\"", "name") ==
        "r\xE9sum\xE9.scr");
  CHECK(header_param("attachment; filename=\"q\\\"uote.exe\"", "filename") == "q\"uote.exe");
  CHECK(header_param("attachment", "filename").empty());
  CHECK(decode_encoded_words("a =?x?q?b?= c") == "a b c");
}

TEST_CASE("parts: transfer encodings", "[attachments][mime]") {
  CHECK(decode_base64("SGVs\r\nbG8=\r\n") == "Hello");
  CHECK(decode_base64("S G V s b G 8") == "Hello");
  CHECK(decode_quoted_printable("a=3Db=\r\nc=\nd=zz") == "a=bcd=zz");
}

TEST_CASE("parts: message/rfc822 and multipart/alternative nest", "[attachments][mime]") {
  std::string inner = crlf(
      "From: x@y\nContent-Type: multipart/alternative; boundary=alt\n\n--alt\nContent-Type: text/plain\n\nhi\n"
      "--alt\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\nPGI+aGk8L2I+\n--alt--\n");
  std::string msg = crlf(
      "From: a@b\nContent-Type: multipart/mixed; boundary=out\n\n--out\nContent-Type: text/plain\n\nbody\n"
      "--out\nContent-Type: message/rfc822\n\n") + inner + crlf("--out--\n");
  auto ex = extract_parts(msg);
  CHECK(ex.limit.empty());
  bool html = false;
  for (const auto& p : ex.parts) html = html || (p.content_type == "text/html" && p.body == "<b>hi</b>");
  CHECK(html);

  // The same inner message, base64-encoded as an attachment: decoded, then walked.
  std::string b64 = "RnJvbTogeEB5DQpDb250ZW50LVR5cGU6IGFwcGxpY2F0aW9uL29jdGV0LXN0cmVhbQ0KQ29udGVu\r\n"
                    "dC1UcmFuc2Zlci1FbmNvZGluZzogYmFzZTY0DQpDb250ZW50LURpc3Bvc2l0aW9uOiBhdHRhY2ht\r\n"
                    "ZW50OyBmaWxlbmFtZT1pbm5lci5iaW4NCg0KYVc1dVpYST0NCg==";
  std::string wrapped = crlf("From: a@b\nContent-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: message/rfc822\n"
                             "Content-Transfer-Encoding: base64\n\n") + b64 + crlf("\n--o--\n");
  auto ex2 = extract_parts(wrapped);
  const Part* p = find_named(ex2, "inner.bin");
  REQUIRE(p);
  CHECK(p->body == "inner");
  CHECK(p->depth == 2);
}

TEST_CASE("parts: limits stop extraction and say which", "[attachments][mime]") {
  std::string msg = "Content-Type: multipart/mixed; boundary=b\r\n\r\n";
  for (int i = 0; i < 20; ++i) msg += "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nYWJj\r\n";
  msg += "--b--\r\n";
  ExtractLimits lim;
  lim.max_parts = 10;
  auto ex = extract_parts(msg, lim);
  CHECK(ex.parts.size() == 10);
  CHECK(ex.limit.find("MIME parts") != std::string::npos);

  lim = {};
  lim.max_bytes = 30;
  ex = extract_parts(msg, lim);
  CHECK(ex.parts.size() == 10);  // 3 bytes each
  CHECK(ex.limit.find("bytes") != std::string::npos);

  // Nesting: message/rfc822 inside message/rfc822 ...
  std::string deep = "Subject: leaf\r\n\r\nx\r\n";
  for (int i = 0; i < 30; ++i) deep = "Content-Type: message/rfc822\r\n\r\n" + deep;
  lim = {};
  lim.max_depth = 20;
  ex = extract_parts(deep, lim);
  CHECK(ex.limit.find("nesting") != std::string::npos);
  lim.max_depth = 40;
  CHECK(extract_parts(deep, lim).limit.empty());
}

TEST_CASE("parts: a plain text message has nothing to decode", "[attachments][mime]") {
  auto ex = extract_parts("From: a@b\r\nSubject: hi\r\n\r\n-- \r\nsig\r\n");
  CHECK(ex.parts.empty());
  CHECK(ex.limit.empty());
}

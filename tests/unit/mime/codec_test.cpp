// MIME decoding helpers: base64/QP/uuencode bodies (RFC 2045 §6), charset
// conversion (checked against GMime's charset fixtures), RFC 2047 encoded
// words (the RFC's own §8 table), RFC 2231 parameters (the RFC's examples),
// HTML to text and URL extraction.
#include <catch2/catch.hpp>

#include <chrono>

#include "tests/unit/mime/mime_util.hpp"

using namespace moat::mime;
using namespace moat::mime::test;

namespace {

std::string param(const Part& p, std::string_view name) {
  for (const auto& x : p.type_params)
    if (x.name == name) return x.value;
  return "<none>";
}

std::filesystem::path gmime_data() { return testdata() / "gmime/data"; }

}  // namespace

TEST_CASE("base64 bodies", "[mime]") {
  CHECK(decode_body("SGVsbG8sIHdvcmxkIQ==", Encoding::Base64).data == "Hello, world!");
  Decoded lines = decode_body("SGVs\r\nbG8s\r\n IHdv cmxk\r\nIQ==\r\n", Encoding::Base64);
  CHECK(lines.data == "Hello, world!");
  CHECK(!lines.error);
  Decoded junk = decode_body("SGVs*bG8=", Encoding::Base64);
  CHECK(junk.data == "Hello");
  CHECK(junk.error);
  Decoded unpadded = decode_body("SGVsbG8", Encoding::Base64);
  CHECK(unpadded.data == "Hello");
  CHECK(unpadded.error);
  Decoded capped = decode_body("SGVsbG8sIHdvcmxkIQ==", Encoding::Base64, 5);
  CHECK(capped.data == "Hello");
  CHECK(capped.capped);
}

TEST_CASE("quoted-printable bodies", "[mime]") {
  Decoded d = decode_body("caf=C3=A9 =3D ok  \r\nsoft=\r\nbreak\r\nlow=c3=a9\r\n", Encoding::QuotedPrintable);
  CHECK(d.data == "caf\xC3\xA9 = ok\r\nsoftbreak\r\nlow\xC3\xA9\r\n");
  CHECK(!d.error);
  Decoded bad = decode_body("a=ZZb=4", Encoding::QuotedPrintable);
  CHECK(bad.data == "a=ZZb=4");
  CHECK(bad.error);
}

TEST_CASE("GMime's base64 and uuencode fixtures decode to the PNG", "[mime]") {
  std::string png = slurp(gmime_data() / "mime-part/raptors.png");
  REQUIRE(png.size() == 381972);
  for (const char* f : {"mime-part/raptors.b64.txt", "mime-part/raptors.uu.txt"}) {
    std::string in = slurp(gmime_data() / f);
    INFO(f);
    Message m = parse(in);
    REQUIRE(m.parts.size() == 1);
    CHECK(m.root().filename == "raptors.png");
    CHECK(m.root().location.rfind("http://", 0) == 0);
    Decoded d = decode_part(in, m.root());
    CHECK(!d.error);
    CHECK((d.data == png));
    CHECK(m.attachments() == std::vector<std::size_t>{0});
  }
}

TEST_CASE("charset conversion agrees with GMime's fixtures", "[mime]") {
  struct Case { const char* file; const char* charset; const char* utf8; };
  const Case cases[] = {
      {"filters/cyrillic.koi8-r.txt", "koi8-r", "filters/cyrillic.utf-8.txt"},
      {"filters/cyrillic.cp1251.txt", "windows-1251", "filters/cyrillic.utf-8.txt"},
      {"filters/cyrillic.iso-8859-5.txt", "ISO-8859-5", "filters/cyrillic.utf-8.txt"},
      {"filters/japanese.iso-2022-jp.txt", "iso-2022-jp", "filters/japanese.utf-8.txt"},
      {"filters/japanese.shift-jis.txt", "shift_jis", "filters/japanese.utf-8.txt"},
  };
  for (const auto& c : cases) {
    INFO(c.file);
    Decoded d = to_utf8(slurp(gmime_data() / c.file), c.charset);
    CHECK(!d.error);
    CHECK(!d.unknown_charset);
    CHECK(d.data == slurp(gmime_data() / c.utf8));
  }
  SECTION("the French fable (GMime's UTF-8 copy has ' where cp1252 has a right quote)") {
    Decoded d = to_utf8(slurp(gmime_data() / "filters/french-fable.cp1252.txt"), "windows-1252");
    std::string want = slurp(gmime_data() / "mime-part/french-fable.txt");
    for (std::size_t at; (at = d.data.find("\xE2\x80\x99")) != std::string::npos;) d.data.replace(at, 3, "'");
    CHECK(d.data == want);
  }
  SECTION("Big5: GMime's UTF-8 copy holds a few kanji Big5 lacks, so ours is a subsequence of it") {
    Decoded d = to_utf8(slurp(gmime_data() / "filters/chinese.big5.txt"), "big5");
    std::string want = slurp(gmime_data() / "filters/chinese.utf-8.txt");
    CHECK(!d.error);
    CHECK(d.data.size() > want.size() * 3 / 4);
    std::size_t j = 0;
    for (std::size_t i = 0; i < want.size() && j < d.data.size(); ++i)
      if (want[i] == d.data[j]) ++j;
    CHECK(j == d.data.size());
  }
}

TEST_CASE("charset conversion: labels, invalid input, unknown charsets, caps", "[mime]") {
  CHECK(to_utf8("\x80 \xE9", "iso-8859-1").data == "\xE2\x82\xAC \xC3\xA9");  // WHATWG: latin-1 is windows-1252
  CHECK(to_utf8("\xB0\xA1", "\"GB2312\"").data == "\xE5\x95\x8A");
  Decoded bad = to_utf8("ok\xFF\xC3", "utf-8");
  CHECK(bad.data == "ok\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(bad.error);
  Decoded unknown = to_utf8("caf\xE9", "x-no-such-charset");
  CHECK(unknown.unknown_charset);
  CHECK(unknown.data == "caf\xC3\xA9");
  CHECK(to_utf8("plain ascii", "x-no-such-charset").data == "plain ascii");
  Decoded capped = to_utf8(std::string(100, '\xE9'), "latin1", 11);
  CHECK(capped.capped);
  CHECK(capped.data.size() <= 11);
}

TEST_CASE("RFC 2047 §8 examples and real-world variants", "[mime]") {
  struct Case { const char* in; const char* out; };
  const Case cases[] = {
      {"(=?ISO-8859-1?Q?a?=)", "(a)"},
      {"(=?ISO-8859-1?Q?a?= b)", "(a b)"},
      {"(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"},
      {"(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)"},
      {"(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)"},
      {"(=?ISO-8859-1?Q?a_b?=)", "(a b)"},
      {"(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)"},
      {"=?utf-8?B?w6nDqQ==?=", "\xC3\xA9\xC3\xA9"},
      {"=?UTF-8*en?q?caf=C3=A9?=", "caf\xC3\xA9"},                        // RFC 2231 §5 language
      {"=?utf-8?B?4oI=?= =?utf-8?B?rA==?=", "\xE2\x82\xAC"},              // a character split across two words
      {"Re: =?koi8-r?B?8NLJ18XU?=", "Re: \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82"},
      {"caf\xE9 raw latin-1", "caf\xC3\xA9 raw latin-1"},
      {"=?utf-8?q?no end", "=?utf-8?q?no end"},
  };
  for (const auto& c : cases) {
    INFO(c.in);
    CHECK(decode_header(c.in).data == c.out);
  }
  CHECK(decode_header("=?utf-8?q?no end").error);
  CHECK(!decode_header("=?ISO-8859-1?Q?a?=").error);
}

TEST_CASE("RFC 2231 examples", "[mime]") {
  Message m = parse(
      "Content-Type: message/external-body; access-type=URL;\r\n"
      "   URL*0=\"ftp://\";\r\n"
      "   URL*1=\"cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar\"\r\n\r\n");
  CHECK(param(m.root(), "url") == "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar");
  CHECK(param(m.root(), "access-type") == "URL");
  m = parse("Content-Type: application/x-stuff;\r\n   title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A\r\n\r\n");
  CHECK(param(m.root(), "title") == "This is ***fun***");
  m = parse(
      "Content-Type: application/x-stuff;\r\n"
      "   title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n"  // RFC 2231 erratum 590: the ';' are needed
      "   title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n"
      "   title*2=\"isn't it!\"\r\n\r\n");
  CHECK(param(m.root(), "title") == "This is even more ***fun*** isn't it!");
  CHECK(m.anomalies.empty());
  SECTION("sections out of order are joined in order; a gap is reported") {
    Message o = parse("Content-Type: text/plain; name*1=\"b.txt\"; name*0=\"a\"\r\n\r\n");
    CHECK(o.root().filename == "ab.txt");
    CHECK(!o.has(sym::kBadRfc2231));
    Message g = parse("Content-Type: text/plain; name*0=\"a\"; name*2=\"c\"\r\n\r\n");
    CHECK(g.root().filename == "ac");
    CHECK(g.has(sym::kBadRfc2231));
  }
}

TEST_CASE("HTML to text", "[mime]") {
  CHECK(html_to_text("<html><head><title>T</title><style>p{color:red}</style></head>"
                     "<body><p>Hello&nbsp;<b>world</b> &amp; &#x263A; &#9731;</p><script>alert(1)</script>"
                     "<!-- hidden --><div>next<br>line</div></body></html>") ==
        "T\n\nHello world & \xE2\x98\xBA \xE2\x98\x83\n\nnext\nline");
  CHECK(html_to_text("a < b and c > d") == "a < b and c > d");
  CHECK(html_to_text("<a href='x>y'>link</a> text") == "link text");
  CHECK(html_to_text("abc", 2) == "ab");
  SECTION("hostile nesting stays linear") {
    auto deep = [](std::size_t n) {
      std::string s;
      for (std::size_t i = 0; i < n; ++i) s += "<div><span>";
      return s + "x";
    };
    CHECK(html_to_text(deep(200000)) == "x");
    CHECK(scales_linearly(deep, [](const std::string& in) { (void)html_to_text(in); }, 80000));
  }
}

TEST_CASE("URL extraction and normalisation", "[mime]") {
  CHECK(extract_urls("see http://Example.COM:80/a?b=c, and www.test.org. Mail mailto:x@y.z!", false) ==
        std::vector<std::string>{"http://example.com/a?b=c", "http://www.test.org", "mailto:x@y.z"});
  CHECK(extract_urls("(https://a.example/x) HTTPS://A.EXAMPLE:443/x", false) ==
        std::vector<std::string>{"https://a.example/x"});
  CHECK(extract_urls("user@www.example.com is no URL", false).empty());
  CHECK(extract_urls("<a href=\"http://%77%77%77.evil.example/&amp;x\">http://bank.example</a>"
                     "<img src='//cdn.example/i.png'><a href=\"/relative\">r</a><a href=javascript:x>j</a>",
                     true) == std::vector<std::string>{"http://www.evil.example/&x", "http://cdn.example/i.png",
                                                       "http://bank.example"});
  CHECK(extract_urls("<a href=\"ht\ttp://a.example\">", true) == std::vector<std::string>{"http://a.example"});
  std::string many;
  for (int i = 0; i < 5000; ++i) many += "http://h" + std::to_string(i) + ".example/ ";
  CHECK(extract_urls(many, false, 100).size() == 100);
}

TEST_CASE("part_text: decoded, converted and de-HTMLed", "[mime]") {
  std::string in =
      "Content-Type: multipart/alternative; boundary=b\r\n\r\n"
      "--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
      "caf=E9\r\n"
      "--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      "PHA+Y2Fmw6k8L3A+\r\n"
      "--b--\r\n";
  Message m = parse(in);
  REQUIRE(m.text_parts() == std::vector<std::size_t>{1, 2});
  CHECK(part_text(in, m.parts[1]).data == "caf\xC3\xA9");
  CHECK(part_text(in, m.parts[2]).data == "caf\xC3\xA9");
}

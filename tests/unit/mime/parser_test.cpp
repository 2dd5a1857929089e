// MIME structure parser: exact offsets (RFC 2046 §5.1.1: the CRLF before a
// delimiter belongs to the delimiter), nesting, message/rfc822, limits and
// malformation symbols; every case also fed one byte at a time and at odd
// split points, and through a Sink.
#include <catch2/catch.hpp>

#include <chrono>
#include <map>

#include "tests/unit/mime/mime_util.hpp"

using namespace moat::mime;
using namespace moat::mime::test;

namespace {

std::string crlf(std::string_view lf) {
  std::string out;
  for (char c : lf) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

// Parses one call, byte by byte and in odd pieces; all must agree.
Message parse_all_ways(std::string_view in, const Limits& lim = {}) {
  Message m = parse(in, lim);
  std::string want = describe(m);
  CHECK(describe(parse_split(in, 1, lim)) == want);
  CHECK(describe(parse_split(in, 0, lim)) == want);
  CHECK(describe(parse_split(in, 2, lim)) == want);
  return m;
}

std::string_view body(std::string_view in, const Part& p) { return in.substr(p.body_begin, p.size()); }
std::string_view header(std::string_view in, const Part& p) {
  return in.substr(p.header_begin, p.header_end - p.header_begin);
}

const std::string kMixed =
    "From: a@example.com\n"
    "Subject: test\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"XX\"\n"
    "\n"
    "preamble line\n"
    "--XX\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "\n"
    "hello\n"
    "world\n"
    "--XX  \n"
    "Content-Type: application/pdf; name=\"a.pdf\"\n"
    "Content-Transfer-Encoding: base64\n"
    "Content-Disposition: attachment; filename=\"a.pdf\"\n"
    "\n"
    "JVBERi0=\n"
    "--XX--\n"
    "epilogue\n";

}  // namespace

TEST_CASE("single part: header and body offsets, fields, lines", "[mime]") {
  for (bool use_crlf : {false, true}) {
    std::string in = "From: a@example.com\nSubject: hi\n there\n\nline 1\nline 2\n";
    if (use_crlf) in = crlf(in);
    Message m = parse_all_ways(in);
    REQUIRE(m.parts.size() == 1);
    const Part& p = m.root();
    CHECK(p.type == "text");
    CHECK(p.subtype == "plain");
    CHECK(!p.content_type_given);
    CHECK(header(in, p) == (use_crlf ? crlf("From: a@example.com\nSubject: hi\n there\n") : "From: a@example.com\nSubject: hi\n there\n"));
    CHECK(body(in, p) == (use_crlf ? "line 1\r\nline 2\r\n" : "line 1\nline 2\n"));
    CHECK(p.lines == 2);
    REQUIRE(p.fields.size() == 2);
    CHECK(p.fields[1].name == "Subject");
    CHECK(p.fields[1].raw_value == (use_crlf ? " hi\r\n there" : " hi\n there"));
    CHECK(p.fields[1].value() == "hi there");
    CHECK(in.substr(p.fields[1].begin, p.fields[1].end - p.fields[1].begin) ==
          (use_crlf ? "Subject: hi\r\n there\r\n" : "Subject: hi\n there\n"));
    CHECK(m.subject() == "hi there");
    CHECK(m.anomalies.empty());
  }
}

TEST_CASE("multipart/mixed: children, delimiter CRLF, preamble and epilogue", "[mime]") {
  for (bool use_crlf : {false, true}) {
    std::string in = use_crlf ? crlf(kMixed) : kMixed;
    std::string nl = use_crlf ? "\r\n" : "\n";
    Message m = parse_all_ways(in);
    REQUIRE(m.parts.size() == 3);
    const Part& root = m.root();
    CHECK(root.is_multipart());
    CHECK(root.boundary == "XX");
    CHECK(root.children == std::vector<std::size_t>{1, 2});
    CHECK(in.substr(root.preamble_begin, root.preamble_end - root.preamble_begin) == "preamble line");
    CHECK(in.substr(root.epilogue_begin, root.body_end - root.epilogue_begin) == "epilogue" + nl);
    const Part& t = m.parts[1];
    CHECK(t.parent == 0);
    CHECK(t.depth == 1);
    CHECK(t.mime_type() == "text/plain");
    CHECK(t.charset == "utf-8");
    CHECK(body(in, t) == "hello" + nl + "world");  // the line end before "--XX" is the delimiter's
    CHECK(t.lines == 1);
    const Part& a = m.parts[2];
    CHECK(a.mime_type() == "application/pdf");
    CHECK(a.encoding == Encoding::Base64);
    CHECK(a.filename == "a.pdf");
    CHECK(a.attachment());
    CHECK(body(in, a) == "JVBERi0=");
    CHECK(decode_part(in, a).data == "%PDF-");
    CHECK(m.text_parts() == std::vector<std::size_t>{1});
    CHECK(m.attachments() == std::vector<std::size_t>{2});
    CHECK(m.anomalies.empty());
  }
}

TEST_CASE("message/rfc822 inside multipart: the child is the encapsulated message", "[mime]") {
  std::string in = crlf(
      "Content-Type: multipart/mixed; boundary=outer\n\n"
      "--outer\n"
      "Content-Type: message/rfc822\n\n"
      "Subject: inner\n"
      "Content-Type: multipart/alternative; boundary=inner\n\n"
      "--inner\n\nplain\n"
      "--inner\nContent-Type: text/html\n\n<b>html</b>\n"
      "--inner--\n"
      "--outer--\n");
  Message m = parse_all_ways(in);
  REQUIRE(m.parts.size() == 5);
  CHECK(m.parts[1].is_message());
  CHECK(m.parts[1].children == std::vector<std::size_t>{2});
  CHECK(m.parts[2].depth == 2);
  CHECK(m.parts[2].is_multipart());
  CHECK(m.header("Subject", 2) == "inner");
  CHECK(m.parts[2].header_begin == m.parts[1].body_begin);
  CHECK(m.parts[2].body_end == m.parts[1].body_end);
  CHECK(body(in, m.parts[3]) == "plain");
  CHECK(m.parts[3].mime_type() == "text/plain");
  CHECK(body(in, m.parts[4]) == "<b>html</b>");
  CHECK(m.parts[4].depth == 3);
  CHECK(body(in, m.parts[1]).substr(0, 15) == "Subject: inner\r");
  CHECK(m.text_parts() == std::vector<std::size_t>{3, 4});
  CHECK(m.anomalies.empty());
}

TEST_CASE("multipart/digest children default to message/rfc822", "[mime]") {
  std::string in = "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nbody\n--d--\n";
  Message m = parse_all_ways(in);
  REQUIRE(m.parts.size() == 3);
  CHECK(m.parts[1].mime_type() == "message/rfc822");
  CHECK(m.parts[1].is_message());
  CHECK(m.header("Subject", 2) == "one");
}

TEST_CASE("malformed multiparts are reported and still split sensibly", "[mime]") {
  SECTION("missing close delimiter: the last part runs to the end") {
    std::string in = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n";
    Message m = parse_all_ways(in);
    REQUIRE(m.parts.size() == 3);
    CHECK(body(in, m.parts[2]) == "two\n");
    CHECK(m.has(sym::kMissingClose));
  }
  SECTION("no boundary parameter: an opaque leaf") {
    Message m = parse_all_ways("Content-Type: multipart/mixed\n\n--b\n\none\n");
    REQUIRE(m.parts.size() == 1);
    CHECK(m.root().opaque);
    CHECK(!m.root().is_multipart());
    CHECK(m.has(sym::kMissingBoundary));
  }
  SECTION("an outer delimiter closes an unterminated inner multipart") {
    std::string in =
        "Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/mixed; boundary=i\n\n"
        "--i\n\ninner\n--o\n\nsecond\n--o--\n";
    Message m = parse_all_ways(in);
    REQUIRE(m.parts.size() == 4);
    CHECK(m.parts[2].parent == 1);
    CHECK(body(in, m.parts[2]) == "inner");
    CHECK(m.parts[3].parent == 0);
    CHECK(body(in, m.parts[3]) == "second");
    CHECK(m.has(sym::kMissingClose));
  }
  SECTION("delimiter lines: padding allowed, other trailing text is not a delimiter") {
    std::string in = "Content-Type: multipart/mixed; boundary=b\n\n--b \t\n\n--bx\n--b-\n--b--  \n";
    Message m = parse_all_ways(in);
    REQUIRE(m.parts.size() == 2);
    CHECK(body(in, m.parts[1]) == "--bx\n--b-");
    CHECK(m.anomalies.empty());
  }
  SECTION("after the close delimiter the boundary no longer matches") {
    std::string in = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b--\n--b\n\nhidden\n";
    Message m = parse_all_ways(in);
    REQUIRE(m.parts.size() == 2);
    CHECK(in.substr(m.root().epilogue_begin) == "--b\n\nhidden\n");
  }
  SECTION("an empty multipart") {
    Message m = parse_all_ways("Content-Type: multipart/mixed; boundary=b\n\nnothing here\n");
    CHECK(m.parts.size() == 1);
    CHECK(m.has(sym::kNoParts));
    CHECK(m.has(sym::kMissingClose));
  }
  SECTION("nested boundary that extends the outer one") {
    std::string in =
        "Content-Type: multipart/mixed; boundary=ab\n\n--ab\nContent-Type: multipart/mixed; boundary=abc\n\n"
        "--abc\n\nx\n--abc--\n--ab--\n";
    Message m = parse_all_ways(in);
    CHECK(m.parts.size() == 3);
    CHECK(m.has(sym::kBoundaryConflict));
  }
  SECTION("a header ended by a delimiter, no empty line") {
    std::string in = "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n--b--\n";
    Message m = parse_all_ways(in);
    REQUIRE(m.parts.size() == 2);
    CHECK(m.parts[1].size() == 0);
    CHECK(m.parts[1].fields.size() == 1);
    CHECK(m.has(sym::kHeaderNoBody));
  }
}

TEST_CASE("a line that is not a header field is skipped; the header ends at the empty line", "[mime]") {
  // GMime and Dovecot read it so; the body is what they would show.
  std::string in = "Subject: x\nthis is not a header\nTo: y\n\nbody\n";
  Message m = parse_all_ways(in);
  REQUIRE(m.root().fields.size() == 2);
  CHECK(m.root().fields[1].name == "To");
  CHECK(body(in, m.root()) == "body\n");
  CHECK(m.has(sym::kBadHeaderLine));
  SECTION("no empty line at all: everything is header") {
    Message h = parse_all_ways("Subject: x\nno separator here\n");
    CHECK(h.root().size() == 0);
    CHECK(h.has(sym::kHeaderNoBody));
  }
  SECTION("an mbox From_ line before the fields") {
    std::string mbox = "From someone Mon Jan 1 00:00:00 2001\nSubject: y\n\nbody\n";
    Message mm = parse_all_ways(mbox);
    CHECK(mm.subject() == "y");
    CHECK(body(mbox, mm.root()) == "body\n");
  }
}

TEST_CASE("Content-* fields: types, parameters, filenames", "[mime]") {
  SECTION("RFC 2231 continuations with a charset") {
    Message m = parse_all_ways(
        "Content-Type: application/octet-stream;\n"
        " name*0*=utf-8''%E2%82%AC%20rate;\n"
        " name*1=\" report.xls\"\n"
        "Content-Disposition: attachment\n\nx");
    CHECK(m.root().filename == "\xE2\x82\xAC rate report.xls");
    CHECK(m.anomalies.empty());
  }
  SECTION("RFC 2047 inside a quoted filename, as Outlook writes it") {
    Message m = parse_all_ways(
        "Content-Type: application/pdf\nContent-Disposition: attachment;\n"
        " filename=\"=?iso-8859-1?Q?r=E9sum=E9.pdf?=\"\n\nx");
    CHECK(m.root().filename == "r\xC3\xA9sum\xC3\xA9.pdf");
  }
  SECTION("filename= wins over name=, and a mismatch is reported") {
    Message m = parse_all_ways(
        "Content-Type: application/pdf; name=invoice.pdf\nContent-Disposition: attachment; filename=invoice.exe\n\nx");
    CHECK(m.root().filename == "invoice.exe");
    CHECK(m.has(sym::kFilenameMismatch));
  }
  SECTION("raw 8-bit filename in latin-1") {
    Message m = parse_all_ways("Content-Type: text/plain; name=\"caf\xE9.txt\"\n\nx");
    CHECK(m.root().filename == "caf\xC3\xA9.txt");
    CHECK(m.has(sym::kHeader8bit));
  }
  SECTION("comments, case and odd spacing") {
    Message m = parse_all_ways(
        "Content-Type: (c) Text / HTML ; CharSet = \"ISO-8859-1\" (latin)\nContent-Transfer-Encoding: "
        "Quoted-Printable (qp)\nContent-ID: <id@x>\nContent-Description: =?utf-8?q?caf=C3=A9?=\n\nx");
    CHECK(m.root().mime_type() == "text/html");
    CHECK(m.root().charset == "iso-8859-1");
    CHECK(m.root().encoding == Encoding::QuotedPrintable);
    CHECK(m.root().cte == "quoted-printable");
    CHECK(m.root().content_id == "<id@x>");
    CHECK(m.root().description == "caf\xC3\xA9");
  }
  SECTION("bad Content-Type falls back to text/plain") {
    Message m = parse_all_ways("Content-Type: garbage\n\nx");
    CHECK(m.root().mime_type() == "text/plain");
    CHECK(m.has(sym::kBadContentType));
  }
  SECTION("the first of two Content-Type fields counts") {
    Message m = parse_all_ways("Content-Type: text/html\nContent-Type: application/zip\n\nx");
    CHECK(m.root().mime_type() == "text/html");
    CHECK(m.has(sym::kDuplicateField));
  }
  SECTION("unknown transfer encoding and encoded composite types") {
    Message m = parse_all_ways("Content-Transfer-Encoding: x-foo\n\nx");
    CHECK(m.root().encoding == Encoding::Unknown);
    CHECK(m.has(sym::kUnknownCte));
    Message e = parse_all_ways("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeA==\n");
    CHECK(e.parts.size() == 1);
    CHECK(e.root().opaque);
    CHECK(e.has(sym::kEncodedComposite));
  }
}

TEST_CASE("body malformations are reported", "[mime]") {
  CHECK(parse_all_ways("Content-Transfer-Encoding: base64\n\nQUJD*RA==\n").has(sym::kBadBase64));
  CHECK(!parse_all_ways("Content-Transfer-Encoding: base64\n\nQUJD\nRA==\n").has(sym::kBadBase64));
  CHECK(parse_all_ways("Content-Transfer-Encoding: quoted-printable\n\na=ZZb\n").has(sym::kBadQp));
  CHECK(!parse_all_ways("Content-Transfer-Encoding: quoted-printable\n\na=3Db=\nc\n").has(sym::kBadQp));
  CHECK(parse_all_ways("Subject: x\n\nna\xC3\xAFve\n").has(sym::kBody8bitIn7bit));
  CHECK(!parse_all_ways("Content-Transfer-Encoding: 8bit\n\nna\xC3\xAFve\n").has(sym::kBody8bitIn7bit));
  CHECK(parse_all_ways(std::string("Subject: x\n\na\0b\n", 15)).has(sym::kNul));
  CHECK(parse_all_ways("Subject: x\r\n\r\na\rb\r\n").has(sym::kBareCr));
  CHECK(parse_all_ways("Subject: x\r\n\nbody\n").has(sym::kMixedEol));
  CHECK(parse_all_ways("Subject: =?utf-8?x?bad?=\n\n").has(sym::kBadRfc2047));
}

TEST_CASE("a Sink sees exactly the body bytes and the decoded content", "[mime]") {
  struct Collect : Sink {
    std::map<std::size_t, std::string> raw, decoded;
    std::vector<std::string> events;
    void on_part_begin(const Part& p) override { events.push_back("begin " + std::to_string(p.index)); }
    void on_body(const Part& p, std::string_view b) override { raw[p.index] += b; }
    void on_decoded(const Part& p, std::string_view d) override { decoded[p.index] += d; }
    void on_part_end(const Part& p) override { events.push_back("end " + std::to_string(p.index)); }
  };
  std::string in = crlf(kMixed) + "\r\n";
  for (std::size_t step : {0, 1, 5, 100000}) {
    Collect c;
    Message m = parse_split(in, step, {}, &c);
    CHECK(c.events == std::vector<std::string>{"begin 0", "begin 1", "end 1", "begin 2", "end 2", "end 0"});
    for (std::size_t i : m.leaves()) {
      CHECK(c.raw[i] == body(in, m.parts[i]));
      CHECK(c.decoded[i] == decode_part(in, m.parts[i]).data);
    }
    CHECK(c.decoded[2] == "%PDF-");
  }
}

TEST_CASE("long lines stream through without being buffered", "[mime]") {
  std::string b64line(3 << 20, 'A');  // 3 MiB on one line
  std::string in = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                   b64line + "\r\n--b--\r\n";
  Parser p;
  std::size_t max_buffered = 0;
  for (std::size_t i = 0; i < in.size(); i += 4096) {
    p.feed(std::string_view(in).substr(i, 4096));
    max_buffered = std::max(max_buffered, p.buffered_bytes());
  }
  Message m = p.finish();
  CHECK(max_buffered < 256 * 1024);
  REQUIRE(m.parts.size() == 2);
  CHECK(m.parts[1].size() == b64line.size());
  CHECK(m.has(sym::kLongLine));
  CHECK(decode_part(in, m.parts[1]).data.size() == b64line.size() / 4 * 3);
}

TEST_CASE("limits: depth, parts, header size", "[mime]") {
  SECTION("nesting beyond max_depth becomes an opaque leaf") {
    std::string in;
    for (int i = 0; i < 30; ++i) in += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) + "\n\n--b" + std::to_string(i) + "\n";
    in += "\ndeep\n";
    Limits lim;
    lim.max_depth = 10;
    Message m = parse_all_ways(in, lim);
    CHECK(m.parts.size() == 11);
    CHECK(m.parts.back().depth == 10);
    CHECK(m.parts.back().opaque);
    CHECK(m.has(sym::kTooDeep));
    CHECK(m.limits_hit);
  }
  SECTION("parts beyond max_parts are not created") {
    std::string in = "Content-Type: multipart/mixed; boundary=b\n\n";
    for (int i = 0; i < 50; ++i) in += "--b\n\npart\n";
    in += "--b--\n";
    Limits lim;
    lim.max_parts = 20;
    Message m = parse_all_ways(in, lim);
    CHECK(m.parts.size() == 20);
    CHECK(m.has(sym::kTooManyParts));
  }
  SECTION("header bytes beyond the limit are dropped, the body is still found") {
    std::string in = "Subject: a\n";
    for (int i = 0; i < 200; ++i) in += "X-Pad: " + std::string(100, 'p') + "\n";
    in += "\nbody\n";
    Limits lim;
    lim.max_header_bytes = 4096;
    Message m = parse_all_ways(in, lim);
    CHECK(m.root().fields.size() < 50);
    CHECK(body(in, m.root()) == "body\n");
    CHECK(m.has(sym::kHeaderTooLarge));
  }
}

TEST_CASE("denial of service shapes take linear time with bounded state", "[mime]") {
  auto work = [](const std::string& in) { (void)parse(in); };
  SECTION("20 000 nested multiparts") {
    auto make = [](std::size_t n) {
      std::string in;
      for (std::size_t i = 0; i < n; ++i) in += "Content-Type: multipart/mixed; boundary=" + std::to_string(i) + "\n\n--" + std::to_string(i) + "\n";
      return in;
    };
    Message m = parse(make(20000));
    CHECK(m.parts.size() == 101);  // default max_depth 100
    CHECK(m.has(sym::kTooDeep));
    CHECK(scales_linearly(make, work, 16000));
  }
  SECTION("200 000 empty parts") {
    auto make = [](std::size_t n) {
      std::string in = "Content-Type: multipart/mixed; boundary=b\n\n";
      for (std::size_t i = 0; i < n; ++i) in += "--b\n";
      return in;
    };
    Message m = parse(make(200000));
    CHECK(m.parts.size() == Limits{}.max_parts);
    CHECK(scales_linearly(make, work, 80000));
  }
  SECTION("200 000 header fields") {
    auto make = [](std::size_t n) {
      std::string in;
      for (std::size_t i = 0; i < n; ++i) in += "X: y\n";
      return in + "\nbody";
    };
    Message m = parse(make(200000));
    CHECK(m.root().fields.size() <= Limits{}.max_header_fields);
    CHECK(m.has(sym::kHeaderTooLarge));
    CHECK(scales_linearly(make, work, 200000));
  }
  SECTION("100 active boundaries and many delimiter-like lines") {
    auto make = [](std::size_t n) {
      std::string in;
      for (int i = 0; i < 100; ++i) in += "Content-Type: multipart/mixed; boundary=" + std::string(60, 'a') + std::to_string(i) + "\n\n--" + std::string(60, 'a') + std::to_string(i) + "\n";
      std::string junk = "--" + std::string(60, 'a') + "x\n";
      for (std::size_t i = 0; i < n; ++i) in += junk;
      return in;
    };
    CHECK(scales_linearly(make, work, 60000));
  }
}

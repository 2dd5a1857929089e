// FETCH BINARY sections (RFC 3516, RFC 9051 §6.4.5): part paths, transfer
// decoding of every RFC 2045 encoding, multipart and message/rfc822 parts,
// missing parts, unknown encodings, and literal vs. literal8 output.
#include <catch2/catch.hpp>

#include <string>

#include "common/proto/imap/binary.hpp"

using namespace moat::proto::imap;
using namespace std::string_literals;

namespace {

// Parts: 1 QP text, 2 base64 with NUL, 3 multipart (3.1 7bit, 3.2 binary
// with NUL), 4 message/rfc822 whose body is base64, 5 x-uuencode, 6 x-foo.
const std::string kMsg =
    "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n"
    "preamble\r\n"
    "--o\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\n"
    "caf=C3=A9 =3D soft=\r\nbreak\r\n"
    "--o\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    "AAEC/w==\r\n"
    "--o\r\nContent-Type: multipart/alternative; boundary=\"i\"\r\n\r\n"
    "--i\r\nContent-Type: text/plain\r\n\r\nseven bit\r\n"
    "--i\r\nContent-Type: application/x-raw\r\nContent-Transfer-Encoding: binary\r\n\r\nb\0n\r\n"
    "--i--\r\n"
    "--o\r\nContent-Type: message/rfc822\r\n\r\n"
    "Subject: inner\r\nContent-Transfer-Encoding: base64\r\n\r\naW5uZXI=\r\n"
    "--o\r\nContent-Type: application/x-uu\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 f\r\nend\r\n"
    "--o\r\nContent-Type: application/x-foo\r\nContent-Transfer-Encoding: x-foo\r\n\r\nabc\r\n"
    "--o--\r\n"s;

std::string bin(const std::string& section) {
  const auto b = binary_section(kMsg, section);
  return b.unknown_cte ? "UNKNOWN-CTE" : b.data;
}

}  // namespace

TEST_CASE("section-binary part paths", "[imap][binary]") {
  for (const char* ok : {"", "1", "1.2", "10.2.33"}) {
    INFO(ok);
    CHECK(valid_part_path(ok));
  }
  for (const char* no : {"0", "01", "1.", ".1", "1..2", "1.0", "MIME", "1.MIME", "1.HEADER", "-1", "1 2"}) {
    INFO(no);
    CHECK_FALSE(valid_part_path(no));
  }
}

TEST_CASE("BINARY removes each transfer encoding", "[imap][binary]") {
  CHECK(bin("1") == "caf\xc3\xa9 = softbreak");        // quoted-printable (case-insensitive name)
  CHECK(bin("2") == "\x00\x01\x02\xff"s);              // base64 with NUL and 8-bit bytes
  CHECK(bin("3.1") == "seven bit");                    // 7bit (the default): as is
  CHECK(bin("3.2") == "b\0n"s);                        // binary: as is
  CHECK(bin("4.1") == "inner");                        // the embedded message's body, decoded
  CHECK(bin("5") == "UNKNOWN-CTE");                    // x-uuencode is not an RFC 2045 encoding
  CHECK(bin("6") == "UNKNOWN-CTE");
}

TEST_CASE("BINARY of the whole message, multiparts, messages and missing parts", "[imap][binary]") {
  CHECK(bin("") == kMsg);  // empty section: everything, nothing decoded
  // a multipart: its body as BODY[3] gives it
  const auto inner_begin = kMsg.find("--i\r\n");
  const auto inner_end = kMsg.find("--i--\r\n") + 7;
  CHECK(bin("3") == kMsg.substr(inner_begin, inner_end - inner_begin));  // the close delimiter line whole
  // message/rfc822: the embedded message as written (its own base64 body not decoded)
  CHECK(bin("4") == "Subject: inner\r\nContent-Transfer-Encoding: base64\r\n\r\naW5uZXI=");
  // no such part: empty, not an error
  for (const char* none : {"7", "2.1.1", "3.3", "4.2", "99999999999999999999"}) {
    INFO(none);
    const auto b = binary_section(kMsg, none);
    CHECK(b.data.empty());
    CHECK_FALSE(b.unknown_cte);
  }
  // something after the part numbers is not a binary section
  CHECK(binary_section(kMsg, "1.MIME").data.empty());
}

TEST_CASE("BINARY[1] of a single-part message is its decoded body", "[imap][binary]") {
  const std::string one = "Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\nAGgAaQ==\n";
  CHECK(binary_section(one, "1").data == "\0h\0i"s);
  CHECK(binary_section(one, "2").data.empty());
  const std::string qp_lf = "Subject: x\nContent-Transfer-Encoding: quoted-printable\n\na=3Db=\nc\n";
  CHECK(binary_section(qp_lf, "1").data == "a=bc\n");
}

TEST_CASE("literal or literal8", "[imap][binary]") {
  CHECK(literal_of("abc") == "{3}\r\nabc");
  CHECK(literal_of("") == "{0}\r\n");
  CHECK(literal_of("a\0"s) == "~{2}\r\na\0"s);
  CHECK(literal_of("\xff\r\n") == "{3}\r\n\xff\r\n");  // 8-bit and CRLF are fine in a literal
}

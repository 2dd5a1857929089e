// Authentication-Results writing and the removal of forged fields (RFC 8601).
#include <catch2/catch.hpp>

#include "filters/authres/authres.hpp"

using namespace moat::filters;

TEST_CASE("authres: one header, values quoted where they are not tokens", "[authres]") {
  std::vector<AuthResult> r{
      {"spf", "pass", "", {{"smtp.mailfrom", "bob@example.org"}}},
      {"dkim", "fail", "signature did not verify", {{"header.d", "example.org"}, {"header.s", "sel 1"}}},
  };
  CHECK(authentication_results("mx.moat.test", r) ==
        "Authentication-Results: mx.moat.test;\r\n"
        "\tspf=pass smtp.mailfrom=bob@example.org;\r\n"
        "\tdkim=fail reason=\"signature did not verify\" header.d=example.org header.s=\"sel 1\"\r\n");
  CHECK(authentication_results("mx.moat.test", {}) == "Authentication-Results: mx.moat.test; none\r\n");
}

TEST_CASE("authres: client text cannot break out of the header", "[authres]") {
  std::vector<AuthResult> r{{"spf", "fail", "a\"b\\c\r\nX-Evil: 1", {{"smtp.mailfrom", "x\r\n@y"}}}};
  auto h = authentication_results("mx.moat.test", r);
  CHECK(h == "Authentication-Results: mx.moat.test;\r\n\tspf=fail reason=\"a\\\"b\\\\cX-Evil: 1\" smtp.mailfrom=x@y\r\n");
}

TEST_CASE("authres: fields with our authserv-id are removed, others kept", "[authres]") {
  std::string hdr =
      "Received: from a\r\n"
      "Authentication-Results: MX.Moat.Test; spf=pass\r\n"
      "\tsmtp.mailfrom=forged.example\r\n"
      "Authentication-Results: other.example; dkim=pass\r\n"
      "authentication-results : (comment) mx.moat.test; dmarc=pass\r\n"
      "Subject: hi\r\n";
  auto out = strip_authentication_results(hdr, "mx.moat.test");
  REQUIRE(out);
  CHECK(*out == "Received: from a\r\nAuthentication-Results: other.example; dkim=pass\r\nSubject: hi\r\n");
  CHECK_FALSE(strip_authentication_results("Subject: x\r\nAuthentication-Results: mx.moat.testing; x\r\n",
                                           "mx.moat.test"));
  CHECK_FALSE(strip_authentication_results("", "mx.moat.test"));
}

TEST_CASE("authres: stripping fed byte by byte prefixes never crashes", "[authres]") {
  std::string hdr = "Authentication-Results: mx.moat.test; spf=pass\r\n\tx=y\r\nSubject: a\r\n";
  for (std::size_t n = 0; n <= hdr.size(); ++n) (void)strip_authentication_results(hdr.substr(0, n), "mx.moat.test");
  CHECK(*strip_authentication_results(hdr, "mx.moat.test") == "Subject: a\r\n");
}

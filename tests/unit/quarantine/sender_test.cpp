// The domain sender lists key on: authenticated and aligned, never the
// visible From alone.
#include <catch2/catch.hpp>

#include "quarantine/sender.hpp"

using namespace moat;
using moat::filters::AuthResult;
using moat::quarantine::authenticated_domain;

TEST_CASE("authenticated_domain", "[quarantine][sender]") {
  const std::string header = "From: CEO <ceo@Mail.Example.com>\r\nSubject: x\r\n";
  SECTION("dmarc=pass names it") {
    std::vector<AuthResult> auth{{"dmarc", "pass", "", {{"header.from", "Example.org"}}}};
    CHECK(authenticated_domain(auth, header) == "example.org");
  }
  SECTION("aligned DKIM pass (relaxed: organisational domain)") {
    std::vector<AuthResult> auth{{"dkim", "pass", "", {{"header.d", "example.com"}}}};
    CHECK(authenticated_domain(auth, header) == "mail.example.com");
  }
  SECTION("aligned SPF pass on the MAIL FROM domain") {
    std::vector<AuthResult> auth{{"spf", "pass", "", {{"smtp.mailfrom", "bounce@example.com"}}}};
    CHECK(authenticated_domain(auth, header) == "mail.example.com");
  }
  SECTION("unaligned or failed results do not count") {
    std::vector<AuthResult> auth{{"dkim", "pass", "", {{"header.d", "evil.test"}}},
                                 {"spf", "fail", "", {{"smtp.mailfrom", "ceo@example.com"}}},
                                 {"dmarc", "fail", "", {{"header.from", "example.com"}}}};
    CHECK(authenticated_domain(auth, header).empty());
  }
  SECTION("no results: the visible From is not enough") {
    CHECK(authenticated_domain({}, header).empty());
  }
  SECTION("two From fields: nothing") {
    std::vector<AuthResult> auth{{"dkim", "pass", "", {{"header.d", "example.com"}}}};
    CHECK(authenticated_domain(auth, "From: a@example.com\r\nFrom: b@evil.test\r\n").empty());
  }
}

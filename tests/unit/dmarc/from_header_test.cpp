// The DMARC author-domain parser (filters/dmarc/from_header): RFC 5322 From
// syntax, the "Composition Kills" ambiguities (Chen et al., USENIX Security
// 2020) and every prefix of the inputs.
#include <catch2/catch.hpp>

#include "filters/dmarc/from_header.hpp"

using namespace moat::filters::dmarc;

namespace {

From hdr(const std::string& h) { return parse_from(h); }

}  // namespace

TEST_CASE("dmarc from: plain mailboxes", "[dmarc][from]") {
  struct Case {
    const char* value;
    const char* domain;
  } cases[] = {
      {"user@Example.COM", "example.com"},
      {" <user@example.com>", "example.com"},
      {" Test User <test@example.com>", "example.com"},
      {" \"Test, User\" <test@example.com>", "example.com"},
      {" \"admin@bank.example\" <x@evil.example>", "evil.example"},  // quoted display name stays a name
      {" user@example.com (Test User)", "example.com"},
      {" =?utf-8?B?VGVzdA==?= <user@example.org>", "example.org"},
      {" J. Doe <\"j doe\"@example.net>", "example.net"},
      {" Some\r\n Body <a@sub.example.com>\r\n", "sub.example.com"},
      {" Grüße <a@example.de>", "example.de"},
  };
  for (const auto& c : cases) {
    INFO(c.value);
    From f = parse_from_value(c.value);
    CHECK(f.status == FromStatus::Ok);
    CHECK(f.domain() == c.domain);
  }
}

TEST_CASE("dmarc from: header sections", "[dmarc][from]") {
  CHECK(hdr("Subject: hi\r\nFrom: a@example.com\r\n").domain() == "example.com");
  CHECK(hdr("fROM: a@example.com\r\nTo: b@x.example\r\n\r\n").status == FromStatus::Ok);
  CHECK(hdr("Subject: no from\r\n").status == FromStatus::NoFrom);
  CHECK(hdr("From: \r\n").status == FromStatus::NoFrom);
  CHECK(hdr("From: undisclosed-recipients:;\r\n").status == FromStatus::Malformed);  // a group: no author

  auto two = hdr("From: a@example.com\r\nFrom: b@evil.example\r\n");
  CHECK(two.status == FromStatus::Multiple);
  CHECK(two.domains == std::vector<std::string>{"example.com", "evil.example"});
  auto list = hdr("From: Bad User <spoof@example.org>,Test User <test@example.com>\r\n");
  CHECK(list.status == FromStatus::Multiple);
  CHECK(list.domains.size() == 2);
}

TEST_CASE("dmarc from: Composition Kills ambiguities do not parse as one author", "[dmarc][from]") {
  struct Case {
    const char* header;
    FromStatus want;
  } cases[] = {
      // A2/A3: header name tricks
      {"From : a@evil.example\r\n", FromStatus::Ambiguous},
      {" From: a@bank.example\r\nFrom: b@evil.example\r\n", FromStatus::Malformed},
      {"Subject: x\r\n From: a@bank.example\r\n", FromStatus::NoFrom},  // folded into Subject: not a From at all
      {"From\x01: a@bank.example\r\n", FromStatus::Malformed},
      {"Fromx a@bank.example\r\n", FromStatus::Malformed},
      // A4-A6: address tricks
      {"From: <a@evil.example>, <b@bank.example>\r\n", FromStatus::Multiple},
      {"From: a@bank.example <b@evil.example>\r\n", FromStatus::Malformed},
      {"From: <a@bank.example> <b@evil.example>\r\n", FromStatus::Malformed},
      {"From: <@bank.example,@x.example:a@evil.example>\r\n", FromStatus::Malformed},
      {"From: a@evil.example(@bank.example)\r\n", FromStatus::Ambiguous},
      {"From: a(comment)@evil.example\r\n", FromStatus::Ambiguous},
      {"From: a@(comment)evil.example\r\n", FromStatus::Ambiguous},
      {"From: <a@evil.example (x@bank.example)>\r\n", FromStatus::Ambiguous},
      {"From: =?utf-8?q?a=40bank.example?=@evil.example\r\n", FromStatus::Ambiguous},
      {"From: \"a@bank.example\"@evil.example\r\n", FromStatus::Ambiguous},
      {"From: a@[192.0.2.1]\r\n", FromStatus::Malformed},
      {"From: a@evil.example\r\nX: y\nbroken line\r\n", FromStatus::Malformed},
      {"From: a@bank.example\rb@evil.example\r\n", FromStatus::Malformed},
      {"From: a@b_ad.example\r\n", FromStatus::Malformed},
      {"From: (unterminated a@bank.example\r\n", FromStatus::Malformed},
      {"From: \"unterminated <a@bank.example>\r\n", FromStatus::Malformed},
      {"From: <a@bank.example\r\n", FromStatus::Malformed},
  };
  for (const auto& c : cases) {
    std::string h = c.header;
    INFO(h);
    CHECK(parse_from(h).status == c.want);
  }
  std::string nul = std::string("From: a@bank.example") + '\0' + "b@evil.example\r\n";
  CHECK(parse_from(nul).status == FromStatus::Malformed);
}

TEST_CASE("dmarc from: limits", "[dmarc][from]") {
  std::string many = "From: ";
  for (int i = 0; i < 20; ++i) many += "a@x" + std::to_string(i) + ".example, ";
  CHECK(parse_from(many + "\r\n").status == FromStatus::TooLong);
  CHECK(parse_from("From: " + std::string(5000, 'a') + "@example.com\r\n").status == FromStatus::TooLong);
  std::string deep = "From: a@example.com " + std::string(20, '(') + std::string(20, ')') + "\r\n";
  CHECK(parse_from(deep).status == FromStatus::Malformed);
  std::string fields;
  for (int i = 0; i < 2100; ++i) fields += "X: y\r\n";
  CHECK(parse_from(fields + "From: a@example.com\r\n").status == FromStatus::Malformed);
}

TEST_CASE("dmarc from: every prefix parses without harm and only the whole is Ok", "[dmarc][from]") {
  const std::string inputs[] = {
      "From: \"Test, User\" <test@example.com> (c)\r\n",
      "From: =?utf-8?B?VGVzdA==?= <user@example.org>\r\nTo: x@y.example\r\n\r\n",
      "From: a@evil.example(@bank.example), <b@c.example>\r\n",
  };
  for (const auto& in : inputs) {
    for (std::size_t n = 0; n <= in.size(); ++n) {
      From f = parse_from(std::string_view(in).substr(0, n));
      CHECK(f.domains.size() <= kMaxMailboxes);
      for (const auto& d : f.domains) CHECK(!d.empty());
    }
  }
  // The first: a prefix ending inside the address never yields example.com.
  const auto& first = inputs[0];
  auto addr_end = first.find('>');
  for (std::size_t n = 0; n < addr_end; ++n) {
    From f = parse_from(std::string_view(first).substr(0, n));
    INFO(n);
    CHECK(!(f.status == FromStatus::Ok && f.domain() == "example.com"));
  }
}

// parse_path (RFC 5321 §4.1.2, §4.5.3.1; RFC 6531) and the open-relay guard.
#include <catch2/catch.hpp>

#include "common/proto/address.hpp"

using namespace moat;
using namespace moat::proto::smtp;

TEST_CASE("parse_path accepts RFC 5321 mailboxes") {
  using Row = std::tuple<std::string, std::string, std::string>;  // path, local, domain
  auto [path, local, domain] = GENERATE(
      Row{"user@example.com", "user", "example.com"}, Row{"First.Last@Sub.Example.COM", "First.Last", "Sub.Example.COM"},
      Row{"a+tag@x-y.example", "a+tag", "x-y.example"}, Row{"!#$%&'*+-/=?^_`{|}~@x.example", "!#$%&'*+-/=?^_`{|}~", "x.example"},
      Row{"\"john doe\"@example.com", "john doe", "example.com"}, Row{"\"a\\\"b\\\\c\"@example.com", "a\"b\\c", "example.com"},
      Row{"u@[192.0.2.1]", "u", "[192.0.2.1]"}, Row{"u@[IPv6:2001:db8::1]", "u", "[IPv6:2001:db8::1]"},
      Row{"u@[x-tag:abc]", "u", "[x-tag:abc]"}, Row{"u@localhost", "u", "localhost"}, Row{"1@2.3", "1", "2.3"});
  INFO(path);
  auto r = parse_path(path, false);
  REQUIRE(r.ok());
  CHECK(r->local == local);
  CHECK(r->domain == domain);
  CHECK(r->quoted_local == (path[0] == '"'));
  CHECK(r->domain_literal == (domain[0] == '['));
  CHECK(!r->source_route);
}

TEST_CASE("parse_path rejects malformed addresses") {
  auto path = GENERATE(as<std::string>{}, "", "user", "@example.com", "user@", "user@@example.com", ".user@example.com",
                       "user.@example.com", "us..er@example.com", "user@example..com", "user@example.com.",
                       "user@.example.com", "user@-example.com", "user@example-.com", "user@exa_mple.com",
                       "us er@example.com", "us(er@example.com", "\"unterminated@example.com", "\"a\"b@example.com",
                       "\"a\x01\"@example.com", "u@[300.1.1.1]", "u@[1.2.3]", "u@[IPv6:zz::1]", "u@[IPv6:]", "u@[]",
                       "u@[1.2.3.4", "u@" + std::string(64, 'a') + ".com", "@a.example:", "@a_b:u@example.com",
                       "@a.example,u@example.com", "user@exämple.com", "üser@example.com",
                       std::string(65, 'a') + "@example.com", "a@" + std::string(250, 'b') + ".com");
  INFO(path);
  auto r = parse_path(path, false);
  REQUIRE(!r.ok());
  CHECK(r.error().code == Errc::BadAddress);
}

TEST_CASE("parse_path length limits") {
  CHECK(parse_path(std::string(64, 'a') + "@example.com", false).ok());
  // 256 octets including the angle brackets (RFC 5321 §4.5.3.1.3)
  std::string dom;
  while (dom.size() < 240) dom += "abcdefghi.";
  dom += "example";
  const std::string base = std::string(254 - 1 - dom.size(), 'x');
  CHECK(parse_path(base + "@" + dom, false).ok());
  CHECK(!parse_path("y" + base + "@" + dom, false).ok());
}

TEST_CASE("source routes are parsed and flagged") {
  auto r = parse_path("@a.example,@b.example:user@c.example", false);
  REQUIRE(r.ok());
  CHECK(r->source_route);
  CHECK(r->local == "user");
  CHECK(r->domain == "c.example");
}

TEST_CASE("SMTPUTF8 addresses") {
  CHECK(!parse_path("üser@exämple.com", false).ok());
  auto r = parse_path("üser@exämple.com", true);
  REQUIRE(r.ok());
  CHECK(r->utf8);
  CHECK(!parse_path("\xff@example.com", true).ok());
  CHECK(!parse_path("a@ex\xc3.com", true).ok());
}

TEST_CASE("postmaster without a domain only when asked") {
  CHECK(!parse_path("Postmaster", false).ok());
  auto r = parse_path("PostMaster", false, true);
  REQUIRE(r.ok());
  CHECK(r->domain.empty());
  CHECK(!check_relay_safe(*r).ok());
}

TEST_CASE("check_relay_safe refuses the open-relay tricks") {
  auto path = GENERATE(as<std::string>{}, "user%other.example@relay.example", "other.example!user@relay.example",
                       "\"user@other.example\"@relay.example", "\"user%other\"@relay.example", "\"a!b\"@relay.example",
                       "@relay.example:user@other.example", "user@[192.0.2.1]", "user@[IPv6:2001:db8::1]");
  INFO(path);
  auto m = parse_path(path, false);
  REQUIRE(m.ok());
  auto st = check_relay_safe(*m);
  REQUIRE(!st.ok());
  CHECK(st.error().code == Errc::BadAddress);
  CHECK(!st.error().detail.empty());
}

TEST_CASE("check_relay_safe: domain shape and SMTPUTF8") {
  CHECK(check_relay_safe(*parse_path("user@relay.example", false)).ok());
  CHECK(check_relay_safe(*parse_path("\"john doe\"@relay.example", false)).ok());
  for (const char* d : {"relay.example.", ".relay.example", "relay..example", ""}) {
    Mailbox m;
    m.local = "user";
    m.domain = d;
    INFO(d);
    CHECK(check_relay_safe(m).error().code == Errc::BadAddress);
  }
  auto u = parse_path("üser@example.com", true);
  REQUIRE(u.ok());
  CHECK(!check_relay_safe(*u, false).ok());
  CHECK(check_relay_safe(*u, true).ok());
}

TEST_CASE("lower_domain and Mailbox::str") {
  CHECK(lower_domain("Example.COM") == "example.com");
  CHECK(lower_domain("ÄB.Example") == "Äb.example");
  CHECK(parse_path("a@b.example", false)->str() == "a@b.example");
  CHECK(parse_path("\"a b\"@b.example", false)->str() == "\"a b\"@b.example");
  CHECK(parse_path("\"ab\"@b.example", false)->str() == "ab@b.example");
  CHECK(parse_path("\"a\\\"b\"@b.example", false)->str() == "\"a\\\"b\"@b.example");
}

TEST_CASE("is_valid_utf8") {
  CHECK(is_valid_utf8("plain"));
  CHECK(is_valid_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
  for (const char* bad : {"\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc3", "\x80", "\xfe"}) {
    INFO(bad);
    CHECK(!is_valid_utf8(bad));
  }
}

// HostPort, IpAddr and Cidr parsing and printing (common/net.hpp).
#include <catch2/catch.hpp>

#include "common/net.hpp"

using namespace moat;

TEST_CASE("parse_host_port accepts names, v4 and bracketed v6", "[net]") {
  struct Case { const char* in; const char* host; unsigned port; const char* str; };
  auto c = GENERATE(values<Case>({
      {"mx.example.org:2525", "mx.example.org", 2525, "mx.example.org:2525"},
      {"mx.example.org", "mx.example.org", 25, "mx.example.org:25"},
      {"127.0.0.1:0", "127.0.0.1", 0, "127.0.0.1:0"},
      {"[::1]:587", "::1", 587, "[::1]:587"},
      {"[2001:db8::1]", "2001:db8::1", 25, "[2001:db8::1]:25"},
      {"[192.0.2.1]:25", "192.0.2.1", 25, "192.0.2.1:25"},
      {"2001:db8::2", "2001:db8::2", 25, "[2001:db8::2]:25"},
      {"host:65535", "host", 65535, "host:65535"},
  }));
  CAPTURE(c.in);
  auto hp = parse_host_port(c.in);
  REQUIRE(hp);
  CHECK(hp->host == c.host);
  CHECK(hp->port == c.port);
  CHECK(hp->str() == c.str);
  // Round trip: what str() prints parses back to the same value.
  CHECK(parse_host_port(hp->str()) == hp);
}

TEST_CASE("parse_host_port rejects malformed input", "[net]") {
  auto bad = GENERATE(as<std::string>{}, "", ":25", "host:", "host:65536", "host:-1", "host:+1", "host:25x",
                      "[::1", "[::1]x", "[::1]:", "[mx.example.org]:25", "a b:25", "host/x:25", "[]:25",
                      "user@host:25", "1:2:3");
  CAPTURE(bad);
  CHECK_FALSE(parse_host_port(bad));
}

TEST_CASE("parse_host_port uses the default port", "[net]") {
  CHECK(parse_host_port("ns.example", 53)->port == 53);
  CHECK(parse_host_port("ns.example:5353", 53)->port == 5353);
}

TEST_CASE("parse_ip maps v4 into 16 bytes", "[net]") {
  auto v4 = parse_ip("192.0.2.7");
  REQUIRE(v4);
  CHECK(v4->v4);
  CHECK(v4->b[10] == 0xff);
  CHECK(v4->b[11] == 0xff);
  CHECK(v4->b[15] == 7);
  CHECK(v4->str() == "192.0.2.7");
  auto mapped = parse_ip("::ffff:192.0.2.7");
  REQUIRE(mapped);
  CHECK(*mapped == *v4);  // the same host, one form
  auto v6 = parse_ip("2001:DB8::1");
  REQUIRE(v6);
  CHECK_FALSE(v6->v4);
  CHECK(v6->str() == "2001:db8::1");
  for (const char* bad : {"", "1.2.3", "1.2.3.256", "01.2.3.4x", "::g", "example.org", " 1.2.3.4",
                          "1.2.3.4/8", "[::1]", "0000:0000:0000:0000:0000:0000:0000:0000:0000"})
    CHECK_FALSE(parse_ip(bad));
}

TEST_CASE("Cidr contains and prints", "[net]") {
  auto net = parse_cidr("10.1.2.3/8");
  REQUIRE(net);
  CHECK(net->str() == "10.0.0.0/8");  // host bits cleared
  CHECK(net->contains(*parse_ip("10.255.0.1")));
  CHECK_FALSE(net->contains(*parse_ip("11.0.0.1")));
  CHECK_FALSE(net->contains(*parse_ip("::a00:1")));  // v4-compatible is not v4-mapped

  auto odd = parse_cidr("192.0.2.128/25");
  REQUIRE(odd);
  CHECK(odd->contains(*parse_ip("192.0.2.200")));
  CHECK_FALSE(odd->contains(*parse_ip("192.0.2.127")));

  auto host = parse_cidr("127.0.0.1");
  REQUIRE(host);
  CHECK(host->prefix == 128);
  CHECK(host->str() == "127.0.0.1/32");

  auto v6 = parse_cidr("2001:db8::/32");
  REQUIRE(v6);
  CHECK(v6->contains(*parse_ip("2001:db8:ffff::1")));
  CHECK_FALSE(v6->contains(*parse_ip("2001:db9::1")));
  CHECK_FALSE(v6->contains(*parse_ip("10.0.0.1")));

  auto all4 = parse_cidr("0.0.0.0/0");
  REQUIRE(all4);
  CHECK(all4->contains(*parse_ip("203.0.113.9")));
  CHECK_FALSE(all4->contains(*parse_ip("2001:db8::1")));  // /0 of v4 is still v4 only

  auto mapped = parse_cidr("::ffff:0:0/96");
  REQUIRE(mapped);
  CHECK(mapped->contains(*parse_ip("198.51.100.1")));

  for (const char* bad : {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x", "/8", "10.0.0.0/8/8", "10.0.0.0/-1"})
    CHECK_FALSE(parse_cidr(bad));
}

// DNSBL/RHSBL (RFC 5782): query names for IPv4, IPv6 and domains, answer
// matching, the bounded TTL cache, and the filter against a real unbound
// serving a list zone on 127.0.0.1 (a listing, a clean name, a refusing zone).
#include <catch2/catch.hpp>

#include "common/dns/resolver.hpp"
#include "filters/dnsbl/dnsbl.hpp"
#include "filters/policy.hpp"
#include "filters/registry.hpp"
#include "filters/scores.hpp"
#include "tests/support/peers.hpp"
#include "tests/support/run.hpp"

using namespace moat;
using namespace moat::filters;
using namespace moat::filters::dnsbl;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

IpAddr ip(const char* s) { return *parse_ip(s); }

config::DnsblZone zone(std::string name, bool domain = false, double weight = 10) {
  config::DnsblZone z;
  z.zone = std::move(name);
  z.domain = domain;
  z.weight = weight;
  z.symbol = config::dnsbl_symbol(z.zone, domain);
  return z;
}

// bl.example.com lists 192.0.2.99 (127.0.0.2), 2001:db8::99 (127.0.0.4) and
// 192.0.2.98 with the "query refused" code; dbl.example.com lists
// spam.example.org; broken.example.com refuses every query (SERVFAIL).
test::UnboundServer& lists() {
  static test::UnboundServer srv(
      {"bl.example.com.", "dbl.example.com.", "bl2.example.com."},
      {"99.2.0.192.bl.example.com. 300 IN A 127.0.0.2", "99.2.0.192.bl.example.com. 300 IN TXT \"listed\"",
       "9.9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example.com. 300 IN A 127.0.0.4",
       "98.2.0.192.bl.example.com. 300 IN A 127.255.255.254",
       "99.2.0.192.bl2.example.com. 300 IN A 127.0.0.10",
       "spam.example.org.dbl.example.com. 300 IN A 127.0.1.2"},
      {"local-zone: \"broken.example.com.\" always_refuse"});
  return srv;
}

config::Config cfg_with(std::vector<config::DnsblZone> zones) {
  config::Config c;
  c.dnsbl.zones = std::move(zones);
  return c;
}

}  // namespace

TEST_CASE("dnsbl: IPv4 query names reverse the octets", "[dnsbl]") {
  CHECK(ip_query(ip("192.0.2.99"), "bl.example.com") == "99.2.0.192.bl.example.com");
  CHECK(ip_query(ip("127.0.0.1"), "zen.spamhaus.org") == "1.0.0.127.zen.spamhaus.org");
  CHECK(ip_query(ip("10.20.30.255"), "z.example") == "255.30.20.10.z.example");
}

TEST_CASE("dnsbl: IPv6 query names are 32 reversed nibbles", "[dnsbl]") {
  // RFC 5782 §2.4 example.
  CHECK(ip_query(ip("2001:db8:1:2:3:4:567:89ab"), "ugly.example.com") ==
        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com");
  CHECK(ip_query(ip("::1"), "z.example") ==
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.z.example");
}

TEST_CASE("dnsbl: domain query names", "[dnsbl]") {
  CHECK(domain_query("Spam.Example.ORG.", "dbl.example.com") == "spam.example.org.dbl.example.com");
  CHECK_FALSE(domain_query("", "dbl.example.com"));
  CHECK_FALSE(domain_query("localhost", "dbl.example.com"));     // not a domain with a dot
  CHECK_FALSE(domain_query("[192.0.2.1]", "dbl.example.com"));   // address literal
  CHECK_FALSE(domain_query("a b.example", "dbl.example.com"));
  std::string longname;
  for (int i = 0; i < 4; ++i) longname += std::string(60, 'a') + ".";
  longname += "org";
  CHECK_FALSE(domain_query(longname, "dbl.example.com"));        // over 253 with the zone
}

TEST_CASE("dnsbl: every prefix of client-supplied names builds a bounded query or none", "[dnsbl]") {
  for (std::string in : {"Mail.Example.ORG.", "[IPv6:2001:db8::1]", "a-b.c_d.example", "x..example.org", "-bad.example"}) {
    for (std::size_t n = 0; n <= in.size(); ++n) {
      auto q = domain_query(std::string_view(in).substr(0, n), "dbl.example.com");
      INFO(in.substr(0, n));
      if (!q) continue;
      CHECK(q->size() <= 253);
      CHECK(q->ends_with(".dbl.example.com"));
      CHECK(q->find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ_[]:") == std::string::npos);
    }
  }
}

TEST_CASE("dnsbl: answer matching", "[dnsbl]") {
  auto z = zone("bl.example.com");
  SECTION("default: 127.0.0.2 and up lists, 127.0.0.1 and outside 127/8 do not") {
    CHECK(match({ip("127.0.0.2")}, z).outcome == Outcome::Listed);
    CHECK(match({ip("127.0.1.20")}, z).outcome == Outcome::Listed);
    CHECK(match({ip("127.0.0.1")}, z).outcome == Outcome::Clean);
    CHECK(match({ip("192.0.2.1")}, z).outcome == Outcome::Clean);  // hijacked NXDOMAIN
    CHECK(match({}, z).outcome == Outcome::Clean);
  }
  SECTION("127.255.255.0/24 is an error code, never a listing") {
    CHECK(match({ip("127.255.255.254")}, z).outcome == Outcome::Error);
    auto m = match({ip("127.255.255.252"), ip("127.0.0.3")}, z);
    CHECK(m.outcome == Outcome::Listed);
    CHECK(m.answer == ip("127.0.0.3"));
  }
  SECTION("configured ranges") {
    z.answers = {{ip("127.0.0.2"), ip("127.0.0.3")}, {ip("127.0.0.10"), ip("127.0.0.11")}};
    CHECK(match({ip("127.0.0.2")}, z).outcome == Outcome::Listed);
    CHECK(match({ip("127.0.0.3")}, z).outcome == Outcome::Listed);
    CHECK(match({ip("127.0.0.4")}, z).outcome == Outcome::Clean);
    CHECK(match({ip("127.0.0.9")}, z).outcome == Outcome::Clean);
    CHECK(match({ip("127.0.0.11")}, z).outcome == Outcome::Listed);
    CHECK(match({ip("127.0.0.12")}, z).outcome == Outcome::Clean);
    CHECK(match({ip("127.0.0.4"), ip("127.0.0.10")}, z).answer == ip("127.0.0.10"));
  }
}

TEST_CASE("dnsbl: cache keeps answers for the TTL and stays bounded", "[dnsbl]") {
  Cache c;
  auto t0 = Cache::Clock::now();
  c.put("a", {ip("127.0.0.2")}, t0, 3);
  REQUIRE(c.get("a", 300s, t0 + 299s));
  CHECK((*c.get("a", 300s, t0 + 10s))[0] == ip("127.0.0.2"));
  CHECK_FALSE(c.get("a", 300s, t0 + 300s));
  CHECK_FALSE(c.get("a", 0s, t0));  // ttl 0: no caching
  c.put("b", {}, t0, 3);
  c.put("c", {}, t0, 3);
  c.put("d", {}, t0, 3);  // evicts the oldest, "a"
  CHECK(c.size() == 3);
  CHECK_FALSE(c.get("a", 300s, t0));
  CHECK(c.get("d", 300s, t0));
  c.put("b", {ip("127.0.0.3")}, t0 + 5s, 3);  // refresh replaces, no growth
  CHECK(c.size() == 3);
  CHECK((*c.get("b", 300s, t0 + 6s))[0] == ip("127.0.0.3"));
  c.put("e", {}, t0, 0);  // size 0: nothing stored
  CHECK_FALSE(c.get("e", 300s, t0));
}

TEST_CASE("dnsbl: symbols are named per zone and scored by weight", "[dnsbl]") {
  CHECK(config::dnsbl_symbol("zen.spamhaus.org", false) == "DNSBL_ZEN_SPAMHAUS_ORG");
  CHECK(config::dnsbl_symbol("dbl.spamhaus-x.org", true) == "RHSBL_DBL_SPAMHAUS_X_ORG");
  auto c = cfg_with({zone("bl.example.com", false, 12.5)});
  Scores s(c);
  CHECK(s.score("DNSBL_BL_EXAMPLE_COM") == 12.5);
  CHECK(symbol_reply("DNSBL_BL_EXAMPLE_COM") == Errc::DnsblListed);
  CHECK_FALSE(symbol_reply("RHSBL_DBL_EXAMPLE_COM"));
}

TEST_CASE("dnsbl: filter against unbound", "[dnsbl][unbound]") {
  INFO(lists().log());
  REQUIRE(lists().ready());
  asio::io_context io;
  config::Dns dc;
  dc.upstream = HostPort{"127.0.0.1", lists().port()};
  dc.timeout = config::Seconds(3);
  dns::Resolver resolver(io, dc);
  Cache cache;
  auto c = cfg_with({zone("bl.example.com", false, 20), zone("bl2.example.com", false, 2),
                     zone("broken.example.com", false, 5), zone("dbl.example.com", true, 7)});
  c.dnsbl.zones[1].answers = {{ip("127.0.0.10"), ip("127.0.0.10")}};
  DnsblFilter f(c, &resolver, &cache);
  auto run = [&](Phase phase, ScanContext& ctx) {
    return test::run_on(io, [&](auto&) {
      return [](DnsblFilter& f, Phase p, ScanContext& ctx) -> asio::awaitable<std::optional<Status>> {
        co_return co_await f.run(p, ctx);
      }(f, phase, ctx);
    });
  };

  SECTION("a listed IPv4 client at connect; the refusing zone is skipped, not an error") {
    ScanContext ctx;
    ctx.envelope.client.ip = ip("192.0.2.99");
    auto st = run(Phase::Connect, ctx);
    REQUIRE(st);
    CHECK(*st);
    REQUIRE(ctx.symbols.size() == 2);
    CHECK(ctx.has("DNSBL_BL_EXAMPLE_COM"));
    CHECK(ctx.has("DNSBL_BL2_EXAMPLE_COM"));
    CHECK(ctx.symbols[0].detail == "192.0.2.99 127.0.0.2");
    // Scored and decided like the daemon: 20 + 2 >= reject 15 -> 554 5.7.1 row.
    Scores s(c);
    for (auto& sym : ctx.symbols) sym.score = s.score(sym.name);
    auto v = decide(ctx.symbols, config::Actions{}, Phase::Connect);
    CHECK(v.action == Action::Reject);
    CHECK(v.reply == Errc::DnsblListed);
    // The second run comes from the cache (no new queries).
    auto before = cache.size();
    ScanContext again;
    again.envelope.client.ip = ip("192.0.2.99");
    REQUIRE(run(Phase::Connect, again));
    CHECK(again.symbols.size() == 2);
    CHECK(cache.size() == before);
  }
  SECTION("an IPv6 client") {
    ScanContext ctx;
    ctx.envelope.client.ip = ip("2001:db8::99");
    REQUIRE(run(Phase::Connect, ctx));
    REQUIRE(ctx.symbols.size() == 1);
    CHECK(ctx.symbols[0].name == "DNSBL_BL_EXAMPLE_COM");
  }
  SECTION("a clean client and the error code add nothing") {
    for (const char* a : {"192.0.2.1", "192.0.2.98"}) {
      ScanContext ctx;
      ctx.envelope.client.ip = ip(a);
      auto st = run(Phase::Connect, ctx);
      REQUIRE(st);
      CHECK(*st);
      CHECK(ctx.symbols.empty());
    }
  }
  SECTION("RHSBL on HELO and on the MAIL FROM domain, one symbol per zone") {
    ScanContext ctx;
    ctx.envelope.client.ip = ip("192.0.2.1");
    ctx.envelope.client.helo = "Spam.Example.Org";
    REQUIRE(run(Phase::Helo, ctx));
    REQUIRE(ctx.symbols.size() == 1);
    CHECK(ctx.symbols[0].name == "RHSBL_DBL_EXAMPLE_COM");
    ScanContext mail;
    mail.envelope.client.ip = ip("192.0.2.1");
    mail.envelope.client.helo = "spam.example.org";
    mail.envelope.sender = "bob@spam.example.org";
    REQUIRE(run(Phase::MailFrom, mail));
    REQUIRE(mail.symbols.size() == 1);
    CHECK(mail.symbols[0].detail == "helo spam.example.org 127.0.1.2, from spam.example.org 127.0.1.2");
  }
  SECTION("authenticated users and relay networks are not checked") {
    ScanContext ctx;
    ctx.envelope.client.ip = ip("192.0.2.99");
    ctx.envelope.client.auth_user = "alice";
    REQUIRE(run(Phase::MailFrom, ctx));
    CHECK(ctx.symbols.empty());
    auto c2 = c;
    c2.relay.networks = {*parse_cidr("192.0.2.0/24")};
    DnsblFilter f2(c2, &resolver, &cache);
    ScanContext r;
    r.envelope.client.ip = ip("192.0.2.99");
    auto st = test::run_on(io, [&](auto&) {
      return [](DnsblFilter& f, ScanContext& ctx) -> asio::awaitable<std::optional<Status>> {
        co_return co_await f.run(Phase::Connect, ctx);
      }(f2, r);
    });
    CHECK(r.symbols.empty());
  }
}

TEST_CASE("reputation filters build without daemon services", "[dnsbl][greylist][ratelimit]") {
  config::Config c;
  for (const char* n : {"dnsbl", "greylist", "ratelimit"}) {
    auto f = make_filter(config::Filter{n}, c);
    INFO(n);
    CHECK(f);
  }
  // Zones but no resolver: refused at build time, not at the first message.
  c.dnsbl.zones = {zone("bl.example.com")};
  CHECK_FALSE(make_filter(config::Filter{"dnsbl"}, c));
}

TEST_CASE("dnsbl: phases follow the configured zone types", "[dnsbl]") {
  CHECK(DnsblFilter(cfg_with({}), nullptr, nullptr).phases() == 0);
  CHECK(DnsblFilter(cfg_with({zone("a.example", false)}), nullptr, nullptr).phases() ==
        (mask(Phase::Connect) | mask(Phase::MailFrom)));
  CHECK(DnsblFilter(cfg_with({zone("a.example", true)}), nullptr, nullptr).phases() ==
        (mask(Phase::Helo) | mask(Phase::MailFrom)));
}

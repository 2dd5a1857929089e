// The SPF result cache (filters/spf/checker.hpp): how long evaluate() says
// an outcome holds (the shortest DNS TTL; never after a DNS failure), when
// it depends on the whole sender (macros), ResultCache's keys, expiry and
// refusals, and the filter through unbound: a repeated check is a cache hit
// with the same result, a temperror is asked again every time.
#include <catch2/catch.hpp>
#include <map>

#include "common/dns/resolver.hpp"
#include "common/metrics.hpp"
#include "filters/spf/spf.hpp"
#include "tests/support/peers.hpp"
#include "tests/support/run.hpp"

using namespace moat;
namespace spf = moat::filters::spf;
namespace asio = boost::asio;

namespace {

// name/type -> reply; anything else NXDOMAIN with TTL 60.
struct Zone {
  std::map<std::pair<std::string, int>, spf::DnsReply> answers;
  void txt(const std::string& name, std::string record, std::uint32_t ttl) {
    spf::DnsReply r;
    r.status = spf::DnsReply::Status::Ok;
    r.names = {std::move(record)};
    r.ttl = ttl;
    answers[{name, 16}] = r;
  }
  spf::DnsReply operator()(const std::string& name, int type) const {
    auto it = answers.find({name, type});
    if (it != answers.end()) return it->second;
    spf::DnsReply r;
    r.status = spf::DnsReply::Status::NxDomain;
    r.ttl = 60;
    return r;
  }
};

spf::Outcome check(const Zone& z, const std::string& sender, const std::string& ip = "192.0.2.1") {
  spf::Query q{*parse_ip(ip), sender, "mail.example.org", false, "mx.example.net"};
  spf::Lookup l = [&z](const std::string& n, int t) { return z(n, t); };
  return spf::evaluate(q, l);
}

spf::Query query(const std::string& sender, const std::string& ip = "192.0.2.1", const std::string& helo = "mail.example.org") {
  return spf::Query{*parse_ip(ip), sender, helo, false, "mx.example.net"};
}

}  // namespace

TEST_CASE("spf cache: an outcome holds for the shortest TTL it rests on", "[spf][spfcache]") {
  Zone z;
  z.txt("example.com", "v=spf1 include:inc.example.com -all", 3600);
  z.txt("inc.example.com", "v=spf1 ip4:192.0.2.1 -all", 120);
  auto o = check(z, "a@example.com");
  CHECK(o.result == spf::Result::Pass);
  CHECK(o.ttl == 120);
  CHECK_FALSE(o.has_macros);
  // A void lookup counts too: its negative TTL bounds the outcome.
  z.txt("void.example.com", "v=spf1 a:none.example.com ip4:192.0.2.1 -all", 3600);
  auto v = check(z, "a@void.example.com");
  CHECK(v.result == spf::Result::Pass);
  CHECK(v.ttl == 60);
}

TEST_CASE("spf cache: a DNS failure anywhere makes the outcome unfit to keep", "[spf][spfcache]") {
  Zone z;
  // §5.5: the address lookup of a PTR name failing only skips that name,
  // so the check passes on ip4 — but a retry could differ.
  z.txt("example.com", "v=spf1 ptr ip4:192.0.2.1 -all", 3600);
  spf::DnsReply ptr;
  ptr.status = spf::DnsReply::Status::Ok;
  ptr.names = {"host.example.com"};
  ptr.ttl = 3600;
  z.answers[{dns::reverse_name(*parse_ip("192.0.2.1")), 12}] = ptr;
  z.answers[{"host.example.com", 1}] = spf::DnsReply{};  // TempFail
  auto o = check(z, "a@example.com");
  CHECK(o.result == spf::Result::Pass);
  CHECK(o.ttl == 0);
  z.answers[{"example.com", 16}] = spf::DnsReply{};
  auto t = check(z, "a@example.com");
  CHECK(t.result == spf::Result::TempError);
  CHECK(t.ttl == 0);
}

TEST_CASE("spf cache: records with macros are marked", "[spf][spfcache]") {
  Zone z;
  z.txt("example.com", "v=spf1 exists:%{l}.users.example.com -all", 300);
  spf::DnsReply yes;
  yes.status = spf::DnsReply::Status::Ok;
  yes.addrs = {*parse_ip("127.0.0.2")};
  yes.ttl = 300;
  z.answers[{"alice.users.example.com", 1}] = yes;
  auto alice = check(z, "alice@example.com");
  CHECK(alice.result == spf::Result::Pass);
  CHECK(alice.has_macros);
  auto bob = check(z, "bob@example.com");
  CHECK(bob.result == spf::Result::Fail);
}

TEST_CASE("spf cache: ResultCache keys, expiry and what it refuses", "[spf][spfcache]") {
  using Clock = spf::ResultCache::Clock;
  spf::ResultCache cache;
  const auto t0 = Clock::now();
  spf::Outcome pass;
  pass.result = spf::Result::Pass;
  pass.domain = "example.com";
  pass.sender = "alice@example.com";
  pass.ttl = 100;
  cache.put(query("alice@example.com"), pass, t0);

  SECTION("same domain, another local part: reused, with its own sender") {
    auto hit = cache.get(query("bob@EXAMPLE.com"), t0 + std::chrono::seconds(1));
    REQUIRE(hit);
    CHECK(hit->result == spf::Result::Pass);
    CHECK(hit->sender == "bob@EXAMPLE.com");
  }
  SECTION("another client, HELO, domain or identity: not reused") {
    CHECK_FALSE(cache.get(query("alice@example.com", "192.0.2.2"), t0));
    CHECK_FALSE(cache.get(query("alice@example.com", "192.0.2.1", "other.example.org"), t0));
    CHECK_FALSE(cache.get(query("alice@example.net"), t0));
    auto helo = query("alice@example.com");
    helo.helo_identity = true;
    CHECK_FALSE(cache.get(helo, t0));
  }
  SECTION("gone when the TTL has run out, and never beyond kMaxTtl") {
    CHECK(cache.get(query("alice@example.com"), t0 + std::chrono::seconds(99)));
    CHECK_FALSE(cache.get(query("alice@example.com"), t0 + std::chrono::seconds(100)));
    spf::Outcome longer = pass;
    longer.ttl = 86400;
    cache.put(query("alice@example.com"), longer, t0);
    CHECK(cache.get(query("alice@example.com"), t0 + spf::ResultCache::kMaxTtl - std::chrono::seconds(1)));
    CHECK_FALSE(cache.get(query("alice@example.com"), t0 + spf::ResultCache::kMaxTtl));
  }
  SECTION("an outcome with macros only for the same sender") {
    spf::Outcome m = pass;
    m.has_macros = true;
    cache.put(query("carol@example.org"), m, t0);
    CHECK(cache.get(query("carol@example.org"), t0));
    CHECK_FALSE(cache.get(query("dave@example.org"), t0));
  }
  SECTION("temperror and TTL 0 are not kept") {
    spf::Outcome temp = pass;
    temp.result = spf::Result::TempError;
    cache.put(query("x@temp.example"), temp, t0);
    CHECK_FALSE(cache.get(query("x@temp.example"), t0));
    spf::Outcome zero = pass;
    zero.ttl = 0;
    cache.put(query("x@zero.example"), zero, t0);
    CHECK_FALSE(cache.get(query("x@zero.example"), t0));
  }
}

TEST_CASE("spf cache: the filter through unbound reuses passes, asks again after temperror", "[spf][spfcache][unbound]") {
  test::UnboundServer zone({"spfc.example.net."}, {"pass.spfc.example.net. 300 TXT \"v=spf1 ip4:127.0.0.1 -all\""},
                           {"local-zone: \"down.example.net.\" always_refuse"});
  INFO(zone.log());
  REQUIRE(zone.ready());
  asio::io_context io;
  asio::thread_pool pool(2);
  config::Dns dcfg;
  dcfg.upstream = HostPort{"127.0.0.1", zone.port()};
  dcfg.timeout = config::Seconds(2);
  dns::Resolver resolver(io, dcfg);
  config::Config cfg;
  cfg.server.hostname = "mx.example.net";
  config::Filter settings{"spf"};
  filters::spf::SpfFilter f(cfg, settings, &resolver, &pool);
  auto& hits = metrics::counter("moat_spf_cache_hits_total", {}, "SPF results reused from the cache");
  auto run = [&](const std::string& sender, filters::ScanContext& ctx) {
    ctx.envelope.sender = sender;
    ctx.envelope.client.ip = *parse_ip("127.0.0.1");
    ctx.envelope.client.helo = "client.example.net";
    return test::run_on(io, [&](auto&) { return f.run(filters::Phase::MailFrom, ctx); });
  };
  const auto before = hits.value();
  filters::ScanContext first, second;
  CHECK(run("a@pass.spfc.example.net", first));
  CHECK(hits.value() == before);
  CHECK(run("b@pass.spfc.example.net", second));
  CHECK(hits.value() == before + 1);
  CHECK(second.has("SPF_PASS"));
  REQUIRE_FALSE(second.headers.empty());
  // The reused outcome speaks of this message's sender, not the first one's.
  CHECK(second.headers.at(0).find("domain of b@pass.spfc.example.net designates") != std::string::npos);
  CHECK(second.headers.at(0).find("envelope-from=\"b@pass.spfc.example.net\"") != std::string::npos);
  // Fail closed, twice: each one a DNS temperror (451 4.4.3), none from the cache.
  for (int i = 0; i < 2; ++i) {
    filters::ScanContext down;
    auto st = run("a@down.example.net", down);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == Errc::DnsTempFail);
  }
  CHECK(hits.value() == before + 1);
  pool.join();
}

// Resolver against a real unbound serving a test zone on 127.0.0.1 (no
// outside network): MX, A, AAAA, TXT, PTR, NXDOMAIN vs NODATA, timeout, and
// the answer cache (TTLs, keys, failures never cached).
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>

#include "common/dns/resolver.hpp"
#include "common/metrics.hpp"
#include "tests/support/peers.hpp"
#include "tests/support/run.hpp"

using namespace moat;
namespace asio = boost::asio;

namespace {

// unbound's built-in local zones (test., RFC 1918/5737/3849 reverse zones)
// answer inside libunbound itself, so the test names live under example.net.
test::UnboundServer& zone() {
  static test::UnboundServer srv(
      {"example.net."},
      {"example.net. 300 IN MX 10 mx1.example.net.", "example.net. 300 IN MX 20 MX2.Example.Net.",
       "example.net. 300 IN TXT \"v=spf1 \" \"-all\"", "example.net. 300 IN TXT \"second\"",
       "mx1.example.net. 300 IN A 127.0.0.1", "mx1.example.net. 300 IN A 127.0.0.2",
       "mx2.example.net. 300 IN AAAA ::1", "v6only.example.net. 300 IN AAAA 2001:db8::25",
       "nullmx.example.net. 300 IN MX 0 .", "a-only.example.net. 300 IN A 192.0.2.7"},
      {"local-data-ptr: \"93.184.216.5 Mail.Example.Net\"", "local-data-ptr: \"2a00:1450::1 v6.example.net\""});
  return srv;
}

config::Dns dns_cfg(std::uint16_t port, int timeout_s = 3) {
  config::Dns c;
  c.upstream = HostPort{"127.0.0.1", port};
  c.timeout = config::Seconds(timeout_s);
  return c;
}

}  // namespace

TEST_CASE("dns: reverse names and wire names", "[dns]") {
  CHECK(dns::reverse_name(*parse_ip("93.184.216.5")) == "5.216.184.93.in-addr.arpa");
  CHECK(dns::reverse_name(*parse_ip("2001:db8::1")) ==
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
  CHECK(dns::decode_name(std::string("\x02Mx\x07" "example\x00", 12)) == "mx.example");
  CHECK(dns::decode_name(std::string("\x00", 1)) == "");
  CHECK_FALSE(dns::decode_name(std::string("\xc0\x0c", 2)));  // compression pointer
  CHECK_FALSE(dns::decode_name(std::string("\x05" "ab", 3)));  // truncated
}

TEST_CASE("dns: lookups against unbound", "[dns][unbound]") {
  INFO(zone().log());
  REQUIRE(zone().ready());
  asio::io_context io;
  dns::Resolver r(io, dns_cfg(zone().port()));

  SECTION("MX") {
    auto ans = test::run_on(io, [&](auto&) { return r.mx("example.net"); });
    REQUIRE(ans);
    REQUIRE(ans->records.size() == 2);
    std::sort(ans->records.begin(), ans->records.end(),
              [](auto& a, auto& b) { return a.preference < b.preference; });
    CHECK(ans->records[0] == dns::MxRecord{10, "mx1.example.net"});
    CHECK(ans->records[1] == dns::MxRecord{20, "mx2.example.net"});  // lower-cased
    CHECK_FALSE(ans->nxdomain);
  }
  SECTION("null MX") {
    auto ans = test::run_on(io, [&](auto&) { return r.mx("nullmx.example.net"); });
    REQUIRE(ans);
    REQUIRE(ans->records.size() == 1);
    CHECK(ans->records[0] == dns::MxRecord{0, ""});
  }
  SECTION("A and AAAA") {
    auto v4 = test::run_on(io, [&](auto&) { return r.a("mx1.example.net"); });
    REQUIRE(v4);
    CHECK(v4->records.size() == 2);
    auto v6 = test::run_on(io, [&](auto&) { return r.aaaa("mx2.example.net"); });
    REQUIRE(v6);
    REQUIRE(v6->records.size() == 1);
    CHECK(v6->records[0] == *parse_ip("::1"));
    auto both = test::run_on(io, [&](auto&) { return r.a_aaaa("v6only.example.net"); });
    REQUIRE(both);
    REQUIRE(both->records.size() == 1);
    CHECK(both->records[0].str() == "2001:db8::25");
    auto four = test::run_on(io, [&](auto&) { return r.a_aaaa("a-only.example.net"); });
    REQUIRE(four);
    REQUIRE(four->records.size() == 1);
    CHECK(four->records[0].v4);
    CHECK(four->records[0].str() == "192.0.2.7");
  }
  SECTION("TXT joins character-strings") {
    auto ans = test::run_on(io, [&](auto&) { return r.txt("example.net"); });
    REQUIRE(ans);
    REQUIRE(ans->records.size() == 2);
    std::sort(ans->records.begin(), ans->records.end());
    CHECK(ans->records[0] == "second");
    CHECK(ans->records[1] == "v=spf1 -all");
  }
  SECTION("PTR") {
    auto ans = test::run_on(io, [&](auto&) { return r.ptr(*parse_ip("93.184.216.5")); });
    REQUIRE(ans);
    REQUIRE(ans->records.size() == 1);
    CHECK(ans->records[0] == "mail.example.net");
    auto v6 = test::run_on(io, [&](auto&) { return r.ptr(*parse_ip("2a00:1450::1")); });
    REQUIRE(v6);
    REQUIRE(v6->records.size() == 1);
    CHECK(v6->records[0] == "v6.example.net");
  }
  SECTION("NXDOMAIN and NODATA are distinct") {
    auto nx = test::run_on(io, [&](auto&) { return r.mx("nope.example.net"); });
    REQUIRE(nx);
    CHECK(nx->nxdomain);
    CHECK(nx->records.empty());
    auto nodata = test::run_on(io, [&](auto&) { return r.mx("mx1.example.net"); });
    REQUIRE(nodata);
    CHECK_FALSE(nodata->nxdomain);
    CHECK(nodata->nodata());
    auto nodata_txt = test::run_on(io, [&](auto&) { return r.txt("a-only.example.net"); });
    REQUIRE(nodata_txt);
    CHECK(nodata_txt->nodata());
  }
  SECTION("many parallel queries on several threads") {
    using Opt = std::optional<Result<dns::Answer<IpAddr>>>;
    std::vector<std::future<Opt>> futs;
    for (int i = 0; i < 64; ++i)
      futs.push_back(asio::co_spawn(
          io, [&r, i]() -> asio::awaitable<Opt> { co_return co_await r.a(i % 2 ? "mx1.example.net" : "nope.example.net"); },
          asio::use_future));
    std::vector<std::thread> pool;
    for (int i = 0; i < 4; ++i) pool.emplace_back([&io] { io.run(); });
    int good = 0;
    for (int i = 0; i < 64; ++i) {
      auto res = futs[std::size_t(i)].get();
      if (*res && (i % 2 ? (*res)->records.size() == 2 : (*res)->nxdomain)) ++good;
    }
    io.stop();
    for (auto& t : pool) t.join();
    CHECK(good == 64);
  }
}

TEST_CASE("dns: a server that never answers is DnsTempFail within the timeout", "[dns]") {
  // A bound UDP socket that nobody reads: queries vanish.
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  asio::io_context io;
  dns::Resolver r(io, dns_cfg(ntohs(sa.sin_port), 1));
  auto t0 = std::chrono::steady_clock::now();
  auto ans = test::run_on(io, [&](auto&) { return r.mx("example.net"); });
  auto took = std::chrono::steady_clock::now() - t0;
  ::close(fd);
  REQUIRE_FALSE(ans);
  CHECK(ans.error().code == Errc::DnsTempFail);
  CHECK(took < std::chrono::milliseconds(2500));
  CHECK(took >= std::chrono::milliseconds(900));
}

TEST_CASE("dns: answers are cached for their TTL, failures are not", "[dns][unbound][dnscache]") {
  test::UnboundServer srv({"cache.example.net."},
                          {"kept.cache.example.net. 300 IN TXT \"v=DKIM1; p=abc\"",
                           "zero.cache.example.net. 0 IN TXT \"no caching\""},
                          {"local-zone: \"down.example.net.\" always_refuse"});
  INFO(srv.log());
  REQUIRE(srv.ready());
  asio::io_context io;
  dns::Resolver r(io, dns_cfg(srv.port()));
  auto& hits = metrics::counter("moat_dns_cache_hits_total", {}, "DNS answers from the daemon's cache");
  auto& queries = metrics::counter("moat_dns_queries_total", {}, "DNS queries sent");
  auto txt = [&](const std::string& name) { return test::run_on(io, [&](auto&) { return r.txt(name); }); };

  const auto h0 = hits.value();
  auto first = txt("kept.cache.example.net");
  REQUIRE(first);
  CHECK(first->ttl > 0);
  CHECK(first->ttl <= 300);
  CHECK(hits.value() == h0);
  // Case and a final dot do not make another name (RFC 4343).
  auto again = txt("Kept.Cache.Example.Net.");
  REQUIRE(again);
  CHECK(hits.value() == h0 + 1);
  CHECK(again->records == first->records);
  CHECK(again->ttl > 0);
  CHECK(again->ttl <= first->ttl);
  // The type is part of the key.
  auto a = test::run_on(io, [&](auto&) { return r.a("kept.cache.example.net"); });
  REQUIRE(a);
  CHECK(a->nodata());
  CHECK(hits.value() == h0 + 1);

  auto zero = txt("zero.cache.example.net");
  REQUIRE(zero);
  CHECK(zero->ttl == 0);
  REQUIRE(txt("zero.cache.example.net"));
  CHECK(hits.value() == h0 + 1);

  const auto q0 = queries.value();
  for (int i = 0; i < 2; ++i) {
    auto down = txt("x.down.example.net");
    REQUIRE_FALSE(down);
    CHECK(down.error().code == Errc::DnsTempFail);
  }
  CHECK(queries.value() == q0 + 2);
  CHECK(hits.value() == h0 + 1);
}

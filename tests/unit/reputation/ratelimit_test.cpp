// Token buckets: refill arithmetic, burst, eviction of idle buckets, and the
// filter's limits per client and per authenticated user with their replies.
#include <catch2/catch.hpp>

#include "filters/policy.hpp"
#include "filters/ratelimit/ratelimit.hpp"
#include "filters/scores.hpp"

using namespace moat;
using namespace moat::filters;
using namespace moat::filters::ratelimit;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

IpAddr ip(const char* s) { return *parse_ip(s); }

Clock::time_point fake_now = Clock::time_point{} + 1000h;
Clock::time_point now() { return fake_now; }

Verdict verdict(ScanContext& ctx, Phase phase) {
  Scores s;
  for (auto& sym : ctx.symbols) sym.score = s.score(sym.name);
  return decide(ctx.symbols, config::Actions{}, phase);
}

}  // namespace

TEST_CASE("ratelimit: rates parse and validate", "[ratelimit]") {
  CHECK(config::parse_rate("20/60s") == config::Rate{20, config::Seconds(60)});
  CHECK(config::parse_rate("100/1h") == config::Rate{100, config::Seconds(3600)});
  CHECK(config::parse_rate("5/m") == config::Rate{5, config::Seconds(60)});
  CHECK(config::parse_rate("3/10") == config::Rate{3, config::Seconds(10)});
  for (const char* bad : {"", "20", "/60s", "20/", "x/60s", "20/60x", "20/500ms", "-1/60s", "20 / 60s", "99999999999/1s"})
    CHECK_FALSE(config::parse_rate(bad));
}

TEST_CASE("ratelimit: token bucket arithmetic", "[ratelimit]") {
  const config::Rate r{10, config::Seconds(60)};  // 10 burst, one token per 6 s
  auto t = Clock::time_point{} + 1h;
  Bucket b{10, t};
  for (int i = 0; i < 10; ++i) CHECK(take(b, r, t));
  CHECK_FALSE(take(b, r, t));
  CHECK_FALSE(take(b, r, t + 5s));
  CHECK(take(b, r, t + 6s));          // one token back after 6 s
  CHECK_FALSE(take(b, r, t + 6s));
  CHECK(b.tokens == Approx(0.0).margin(1e-9));
  // A long pause refills to the burst, never beyond.
  for (int i = 0; i < 10; ++i) CHECK(take(b, r, t + 1h));
  CHECK_FALSE(take(b, r, t + 1h));
  // A clock that goes backwards takes nothing extra.
  CHECK_FALSE(take(b, r, t));
  // A smaller rate after a reload caps the stored tokens.
  Bucket big{10, t};
  CHECK(take(big, config::Rate{2, config::Seconds(60)}, t));
  CHECK(take(big, config::Rate{2, config::Seconds(60)}, t));
  CHECK_FALSE(take(big, config::Rate{2, config::Seconds(60)}, t));
}

TEST_CASE("ratelimit: the bucket table is bounded, least recently used first", "[ratelimit]") {
  Buckets bs;
  const config::Rate r{1, config::Seconds(3600)};
  auto t = Clock::time_point{} + 1h;
  CHECK(bs.take("a", r, t, 2));
  CHECK(bs.take("b", r, t, 2));
  CHECK_FALSE(bs.take("a", r, t, 2));  // "a" is now the most recently used
  CHECK(bs.take("c", r, t, 2));        // evicts "b"
  CHECK(bs.size() == 2);
  CHECK_FALSE(bs.take("a", r, t, 2));  // still there, still empty
  CHECK(bs.take("b", r, t, 2));        // forgotten, so full again
}

TEST_CASE("ratelimit: client keys", "[ratelimit]") {
  CHECK(client_key(ip("192.0.2.1")) == "192.0.2.1");
  CHECK(client_key(ip("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64");
  CHECK(client_key(ip("2001:db8:1:2:bbbb::9")) == client_key(ip("2001:db8:1:2::")));
}

TEST_CASE("ratelimit: the filter's limits and replies", "[ratelimit]") {
  config::Config cfg;
  cfg.ratelimit.connections = {2, config::Seconds(60)};
  cfg.ratelimit.messages = {1, config::Seconds(60)};
  cfg.ratelimit.recipients = {3, config::Seconds(60)};
  cfg.ratelimit.user_messages = {2, config::Seconds(60)};
  cfg.ratelimit.whitelist = {*parse_cidr("203.0.113.0/24")};
  Buckets buckets;
  RateLimitFilter f(cfg, &buckets, &now);
  auto at = [&](Phase p, const char* client, const char* user = "") {
    ScanContext ctx;
    ctx.envelope.client.ip = ip(client);
    ctx.envelope.client.auth_user = user;
    f.check(p, ctx);
    return ctx;
  };

  SECTION("connections: 421 4.7.0 once the burst is used") {
    CHECK(at(Phase::Connect, "192.0.2.1").symbols.empty());
    CHECK(at(Phase::Connect, "192.0.2.1").symbols.empty());
    auto third = at(Phase::Connect, "192.0.2.1");
    REQUIRE(third.symbols.size() == 1);
    CHECK(third.symbols[0].name == "RATELIMIT_CONNECTIONS");
    auto v = verdict(third, Phase::Connect);
    CHECK(v.action == Action::TempFail);
    CHECK(v.reply == Errc::RateLimited);
    CHECK(format_reply(v.reply).rfind("421 4.7.0 ", 0) == 0);
    CHECK(at(Phase::Connect, "192.0.2.2").symbols.empty());    // another client has its own bucket
    CHECK(at(Phase::Connect, "203.0.113.5").symbols.empty());  // whitelisted
    fake_now += 30s;                                            // one token back
    CHECK(at(Phase::Connect, "192.0.2.1").symbols.empty());
  }
  SECTION("messages and recipients: 451 4.7.1") {
    CHECK(at(Phase::MailFrom, "192.0.2.50").symbols.empty());
    auto second = at(Phase::MailFrom, "192.0.2.50");
    REQUIRE(second.symbols.size() == 1);
    CHECK(second.symbols[0].name == "RATELIMIT_MESSAGES");
    auto v = verdict(second, Phase::MailFrom);
    CHECK(v.action == Action::TempFail);
    CHECK(v.reply == Errc::MessageRateLimited);
    CHECK(format_reply(v.reply).rfind("451 4.7.1 ", 0) == 0);
    for (int i = 0; i < 3; ++i) CHECK(at(Phase::RcptTo, "192.0.2.50").symbols.empty());
    auto r = at(Phase::RcptTo, "192.0.2.50");
    REQUIRE(r.symbols.size() == 1);
    CHECK(r.symbols[0].name == "RATELIMIT_RECIPIENTS");
  }
  SECTION("authenticated users count per user, not per client") {
    CHECK(at(Phase::MailFrom, "192.0.2.60", "alice").symbols.empty());
    CHECK(at(Phase::MailFrom, "192.0.2.61", "Alice").symbols.empty());
    auto third = at(Phase::MailFrom, "192.0.2.62", "alice");
    REQUIRE(third.symbols.size() == 1);
    CHECK(third.symbols[0].name == "RATELIMIT_USER_MESSAGES");
    CHECK(at(Phase::MailFrom, "192.0.2.62", "bob").symbols.empty());
    CHECK(at(Phase::RcptTo, "192.0.2.62", "alice").symbols.empty());  // user_recipients not set: unlimited
  }
  SECTION("a reject-level score still rejects; deferral does not hide it") {
    ScanContext ctx;
    ctx.add("RATELIMIT_MESSAGES");
    ctx.add("HELO_BAD_SYNTAX");
    auto v = verdict(ctx, Phase::MailFrom);
    CHECK(v.action == Action::Reject);
  }
}

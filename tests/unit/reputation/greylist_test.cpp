// Greylisting state machine (RFC 6647) on a real SQLite file with a fake
// clock: first attempt, early retry, accepted retry, expiry of the retry
// window, kept passes, auto-allow of networks, cleanup, survival across a
// reopen; and the filter's skips and symbol.
#include <catch2/catch.hpp>
#include <sqlite3.h>

#include "filters/greylist/greylist.hpp"
#include "filters/policy.hpp"
#include "filters/scores.hpp"
#include "tests/support/run.hpp"
#include "tests/support/temp_dir.hpp"

using namespace moat;
using namespace moat::filters;
using namespace moat::filters::greylist;
namespace asio = boost::asio;

namespace {

IpAddr ip(const char* s) { return *parse_ip(s); }

config::Greylist policy() {
  config::Greylist p;
  p.delay = config::Seconds(300);
  p.retry_window = config::Seconds(3600);
  p.expiry = config::Seconds(86400);
  p.auto_allow_after = 2;
  return p;
}

Outcome check(Store& s, const Triplet& t, std::int64_t now, const config::Greylist& p = policy()) {
  auto r = s.check(t, p, now);
  INFO((r ? std::string() : r.error().detail));
  REQUIRE(r);
  return *r;
}

}  // namespace

TEST_CASE("greylist: client networks", "[greylist]") {
  CHECK(network_of(ip("192.0.2.77"), 24, 64) == "192.0.2.0/24");
  CHECK(network_of(ip("192.0.2.77"), 32, 64) == "192.0.2.77/32");
  CHECK(network_of(ip("198.51.100.200"), 20, 64) == "198.51.96.0/20");
  CHECK(network_of(ip("2001:db8:1:2:3:4:5:6"), 24, 64) == "2001:db8:1:2::/64");
  CHECK(network_of(ip("2001:db8:1:2:3:4:5:6"), 24, 48) == "2001:db8:1::/48");
}

TEST_CASE("greylist: the triplet state machine", "[greylist]") {
  test::TempDir dir;
  Store s(dir.path / "db" / "greylist.sqlite");
  const Triplet t{"192.0.2.0/24", "bob@example.org", "alice@example.com"};
  const std::int64_t t0 = 1'700'000'000;

  CHECK(check(s, t, t0) == Outcome::New);
  CHECK(check(s, t, t0 + 10) == Outcome::TooEarly);
  CHECK(check(s, t, t0 + 299) == Outcome::TooEarly);   // an early retry does not restart the clock...
  CHECK(check(s, t, t0 + 300) == Outcome::Passed);     // ...so the delay counts from the first attempt
  CHECK(check(s, t, t0 + 301) == Outcome::Known);
  CHECK(check(s, t, t0 + 301 + 86400) == Outcome::Known);  // refreshed on use, so still fresh
  CHECK(check(s, t, t0 + 301 + 3 * 86400) == Outcome::New);  // unused past expiry: start over

  SECTION("a retry after the window starts over") {
    const Triplet u{"192.0.2.0/24", "carol@example.org", "alice@example.com"};
    CHECK(check(s, u, t0) == Outcome::New);
    CHECK(check(s, u, t0 + 3601) == Outcome::New);
    CHECK(check(s, u, t0 + 3601 + 299) == Outcome::TooEarly);
    CHECK(check(s, u, t0 + 3601 + 300) == Outcome::Passed);
  }
  SECTION("each part of the triplet counts") {
    CHECK(check(s, Triplet{"192.0.3.0/24", t.sender, t.recipient}, t0) == Outcome::New);
    CHECK(check(s, Triplet{t.network, "", t.recipient}, t0) == Outcome::New);
    CHECK(check(s, Triplet{t.network, t.sender, "other@example.com"}, t0) == Outcome::New);
  }
}

TEST_CASE("greylist: networks that retried correctly are auto-allowed", "[greylist]") {
  test::TempDir dir;
  Store s(dir.path / "g.sqlite");
  const std::int64_t t0 = 1'700'000'000;
  const std::string net = "198.51.100.0/24";
  auto pass = [&](const std::string& rcpt, std::int64_t at) {
    CHECK(check(s, Triplet{net, "x@example.org", rcpt}, at) == Outcome::New);
    CHECK(check(s, Triplet{net, "x@example.org", rcpt}, at + 300) == Outcome::Passed);
  };
  pass("a@example.com", t0);
  // One correct retry is not enough with auto_allow_after = 2.
  CHECK(check(s, Triplet{net, "y@example.org", "z@example.com"}, t0 + 400) == Outcome::New);
  pass("b@example.com", t0 + 500);
  CHECK(check(s, Triplet{net, "new@example.org", "new@example.com"}, t0 + 900) == Outcome::AutoAllowed);
  CHECK(check(s, Triplet{net, "n2@example.org", "n2@example.com"}, t0 + 900 + 86400) == Outcome::AutoAllowed);
  // Unused for longer than expiry: greylisted again.
  CHECK(check(s, Triplet{net, "n3@example.org", "n3@example.com"}, t0 + 900 + 3 * 86400) == Outcome::New);
  // auto_allow_after = 0 turns it off.
  auto off = policy();
  off.auto_allow_after = 0;
  CHECK(check(s, Triplet{"203.0.113.0/24", "q@example.org", "q@example.com"}, t0, off) == Outcome::New);
}

TEST_CASE("greylist: state survives a reopen and cleanup removes what expired", "[greylist]") {
  test::TempDir dir;
  const auto file = dir.path / "g.sqlite";
  const std::int64_t t0 = 1'700'000'000;
  const Triplet a{"192.0.2.0/24", "a@example.org", "r@example.com"};
  const Triplet b{"192.0.2.0/24", "b@example.org", "r@example.com"};
  {
    Store s(file);
    CHECK(check(s, a, t0) == Outcome::New);
    CHECK(check(s, b, t0) == Outcome::New);
    CHECK(check(s, b, t0 + 300) == Outcome::Passed);
  }
  Store s(file);  // a restart
  CHECK(check(s, a, t0 + 300) == Outcome::Passed);
  REQUIRE(s.count_triplets());
  CHECK(*s.count_triplets() == 2);
  CHECK(*s.cleanup(policy(), t0 + 1000) == 0);
  auto removed = s.cleanup(policy(), t0 + 300 + 86401);  // both passed, unused past expiry; the client row too
  REQUIRE(removed);
  CHECK(*removed == 3);
  CHECK(*s.count_triplets() == 0);
  // An unpassed triplet goes when its retry window is over.
  CHECK(check(s, a, t0 + 200000) == Outcome::New);
  CHECK(*s.cleanup(policy(), t0 + 200000 + 3601) == 1);
}

TEST_CASE("greylist: a file from before schema versions keeps its triplets", "[greylist]") {
  test::TempDir dir;
  const auto file = dir.path / "g.sqlite";
  const std::int64_t t0 = 1'700'000'000;
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &raw) == SQLITE_OK);
  // The schema as the first release created it, at user_version 0.
  REQUIRE(sqlite3_exec(raw,
                       "CREATE TABLE triplet(net TEXT NOT NULL, sender TEXT NOT NULL, rcpt TEXT NOT NULL,"
                       " first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, passed INTEGER NOT NULL,"
                       " PRIMARY KEY(net, sender, rcpt)) WITHOUT ROWID;"
                       "CREATE TABLE client(net TEXT PRIMARY KEY NOT NULL, retries INTEGER NOT NULL,"
                       " last_seen INTEGER NOT NULL) WITHOUT ROWID;"
                       "INSERT INTO triplet VALUES ('192.0.2.0/24', 'a@example.org', 'r@example.com', 1700000000,"
                       " 1700000000, 0);",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(raw);
  Store s(file);
  CHECK(check(s, Triplet{"192.0.2.0/24", "a@example.org", "r@example.com"}, t0 + 300) == Outcome::Passed);
  CHECK(*s.count_triplets() == 1);
}

TEST_CASE("greylist: a database that cannot be opened is an error, not a pass", "[greylist]") {
  Store s("/proc/nonexistent/greylist.sqlite");
  auto r = s.check(Triplet{"192.0.2.0/24", "", "r@example.com"}, policy(), 1);
  REQUIRE_FALSE(r);
  CHECK(is_temporary(r.error().code));
}

TEST_CASE("greylist: the filter defers a new triplet with 451 4.7.1 and skips trusted clients", "[greylist]") {
  test::TempDir dir;
  Store store(dir.path / "g.sqlite");
  config::Config cfg;
  cfg.greylist = policy();
  cfg.greylist.whitelist = {*parse_cidr("203.0.113.0/24")};
  cfg.relay.networks = {*parse_cidr("10.0.0.0/8")};
  std::int64_t now = 1'700'000'000;
  GreylistFilter f(cfg, &store, nullptr, [&now] { return now; });
  asio::io_context io;
  auto rcpt = [&](const char* client, const char* sender, const char* to, const char* user = "") {
    ScanContext ctx;
    ctx.envelope.client.ip = ip(client);
    ctx.envelope.client.auth_user = user;
    ctx.envelope.sender = sender;
    Recipient r;
    r.address = to;
    ctx.envelope.recipients.push_back(r);
    ctx.current_rcpt = &ctx.envelope.recipients.back();
    auto st = test::run_on(io, [&](auto&) {
      return [](GreylistFilter& f, ScanContext& c) -> asio::awaitable<Status> { co_return co_await f.run(Phase::RcptTo, c); }(f, ctx);
    });
    REQUIRE(st);
    ctx.current_rcpt = nullptr;
    return ctx;
  };

  auto first = rcpt("192.0.2.10", "Bob@Example.org", "alice@example.com");
  REQUIRE(first.symbols.size() == 1);
  CHECK(first.symbols[0].name == "GREYLIST");
  CHECK(first.symbols[0].detail == "new");
  // Policy: GREYLIST defers on its own with the Greylisted row, 451 4.7.1.
  Scores scores;
  for (auto& s : first.symbols) s.score = scores.score(s.name);
  auto v = decide(first.symbols, config::Actions{}, Phase::RcptTo);
  CHECK(v.action == Action::TempFail);
  CHECK(v.reply == Errc::Greylisted);
  CHECK(format_reply(v.reply).rfind("451 4.7.1 ", 0) == 0);

  now += 299;
  CHECK(rcpt("192.0.2.11", "bob@example.org", "ALICE@example.com").symbols.size() == 1);  // same /24, case-folded
  now += 1;
  CHECK(rcpt("192.0.2.12", "bob@example.org", "alice@example.com").symbols.empty());

  CHECK(rcpt("192.0.2.10", "eve@example.org", "alice@example.com", "alice").symbols.empty());  // authenticated
  CHECK(rcpt("10.1.2.3", "eve@example.org", "alice@example.com").symbols.empty());             // relay network
  CHECK(rcpt("203.0.113.9", "eve@example.org", "alice@example.com").symbols.empty());          // whitelist
  CHECK(*store.count_triplets() == 1);
}

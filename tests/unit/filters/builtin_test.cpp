// The built-in filters: helo, hops, size.
#include <catch2/catch.hpp>

#include "filters/helo/helo.hpp"
#include "filters/hops/hops.hpp"
#include "filters/pipeline.hpp"
#include "filters/size/size.hpp"
#include "tests/unit/filters/run_sync.hpp"

using namespace moat;
using namespace moat::filters;
using moat::test::run_sync;

namespace {

config::Config helo_config() {
  config::Config c;
  c.server.hostname = "mx.example.org";
  c.listeners.push_back({"smtp", {"192.0.2.25", 25}, config::ListenerMode::Smtp});
  c.listeners.push_back({"lo", {"127.0.0.1", 2525}, config::ListenerMode::Smtp});
  c.relay.networks.push_back(*parse_cidr("10.0.0.0/8"));
  return c;
}

std::vector<std::string> helo_symbols(const std::string& helo, const char* client = "203.0.113.5") {
  helo::HeloFilter f(helo_config());
  ScanContext ctx;
  f.check(helo, *parse_ip(client), ctx);
  std::vector<std::string> names;
  for (auto& s : ctx.symbols) names.push_back(s.name);
  return names;
}

using V = std::vector<std::string>;

}  // namespace

TEST_CASE("helo: syntax, FQDN and our name", "[filters][helo]") {
  struct Case { const char* helo; const char* client; V expect; };
  auto c = GENERATE(values<Case>({
      {"mail.sender.example", "203.0.113.5", {}},
      {"mail.sender.example.", "203.0.113.5", {}},
      {"[203.0.113.5]", "203.0.113.5", {}},
      {"[IPv6:2001:db8::5]", "203.0.113.5", {}},
      {"[ipv6:2001:db8::5]", "203.0.113.5", {}},
      {"win_pc.corp.example", "203.0.113.5", {}},          // underscores tolerated
      {"localhost", "203.0.113.5", {"HELO_NOT_FQDN"}},
      {"mypc", "203.0.113.5", {"HELO_NOT_FQDN"}},
      {"203.0.113.5", "203.0.113.5", {"HELO_BARE_IP"}},
      {"", "203.0.113.5", {"HELO_BAD_SYNTAX"}},
      {"bad..name", "203.0.113.5", {"HELO_BAD_SYNTAX"}},
      {"-x.example", "203.0.113.5", {"HELO_BAD_SYNTAX"}},
      {"[999.1.1.1]", "203.0.113.5", {"HELO_BAD_SYNTAX"}},
      {"[IPv6:1.2.3.4]", "203.0.113.5", {"HELO_BAD_SYNTAX"}},
      {"a b", "203.0.113.5", {"HELO_BAD_SYNTAX"}},
      {"x\r\nMAIL FROM:<a@b>", "203.0.113.5", {"HELO_BAD_SYNTAX"}},
      // our name from a stranger is forged...
      {"MX.Example.ORG", "203.0.113.5", {"HELO_IS_OUR_NAME"}},
      {"[192.0.2.25]", "203.0.113.5", {"HELO_IS_OUR_NAME"}},
      // ...but not from ourselves, loopback or relay.networks
      {"mx.example.org", "127.0.0.1", {}},
      {"mx.example.org", "::1", {}},
      {"mx.example.org", "10.1.2.3", {}},
      {"[192.0.2.25]", "192.0.2.25", {}},
      // a loopback literal is every host's, never "ours"
      {"[127.0.0.1]", "203.0.113.5", {}},
  }));
  CAPTURE(c.helo, c.client);
  CHECK(helo_symbols(c.helo, c.client) == c.expect);
}

TEST_CASE("helo: details are printable and bounded, and it runs at Helo only", "[filters][helo]") {
  helo::HeloFilter f(helo_config());
  CHECK(f.phases() == mask(Phase::Helo));
  ScanContext ctx;
  ctx.envelope.client.helo = std::string("x\r\n") + std::string(200, 'a');
  ctx.envelope.client.ip = *parse_ip("203.0.113.5");
  REQUIRE(run_sync(f.run(Phase::Helo, ctx)));
  REQUIRE(ctx.symbols.size() == 1);
  CHECK(ctx.symbols[0].detail.size() == 64);
  CHECK(ctx.symbols[0].detail.find('\r') == std::string::npos);
}

TEST_CASE("hops: HOPS_LOOP over max_hops rejects with 554 5.4.6", "[filters][hops]") {
  auto cfg = std::make_shared<config::Config>();
  cfg->limits.max_hops = 5;
  cfg->filters = {config::Filter{"hops"}};
  auto p = Pipeline::build(cfg);
  REQUIRE(p);
  ScanContext ctx;
  ctx.received_hops = 5;
  auto v = run_sync((*p)->run(Phase::EndOfData, ctx));
  CHECK(ctx.symbols.empty());
  CHECK(v.action == Action::Accept);
  ctx.received_hops = 6;
  v = run_sync((*p)->run(Phase::EndOfData, ctx));
  REQUIRE(ctx.symbols.size() == 1);
  CHECK(ctx.symbols[0].name == "HOPS_LOOP");
  CHECK(v.action == Action::Reject);
  CHECK(v.reply == Errc::LoopDetected);
  CHECK(format_reply(v.reply).rfind("554 5.4.6", 0) == 0);
}

TEST_CASE("size: MSG_LARGE above half the limit, score 0", "[filters][size]") {
  auto cfg = std::make_shared<config::Config>();
  cfg->limits.message_size = 1000;
  cfg->filters = {config::Filter{"size"}};
  auto p = Pipeline::build(cfg);
  REQUIRE(p);
  ScanContext ctx;
  ctx.message_size = 500;
  run_sync((*p)->run(Phase::EndOfData, ctx));
  CHECK(ctx.symbols.empty());
  ctx.message_size = 501;
  auto v = run_sync((*p)->run(Phase::EndOfData, ctx));
  REQUIRE(ctx.symbols.size() == 1);
  CHECK(ctx.symbols[0].name == "MSG_LARGE");
  CHECK(ctx.symbols[0].score == 0);
  CHECK(v.action == Action::Accept);
}

TEST_CASE("helo through the pipeline rejects bad syntax at HELO with 501 5.5.4", "[filters][helo]") {
  auto cfg = std::make_shared<config::Config>(helo_config());
  cfg->filters = {config::Filter{"helo"}};
  auto p = Pipeline::build(cfg);
  REQUIRE(p);
  ScanContext ctx;
  ctx.envelope.client.ip = *parse_ip("203.0.113.5");
  ctx.envelope.client.helo = "bad..name";
  auto v = run_sync((*p)->run(Phase::Helo, ctx));
  CHECK(v.action == Action::Reject);
  CHECK(v.reply == Errc::BadHelo);
  ctx = {};
  ctx.envelope.client.ip = *parse_ip("203.0.113.5");
  ctx.envelope.client.helo = "localhost";
  v = run_sync((*p)->run(Phase::Helo, ctx));
  CHECK(v.action == Action::Accept);
  CHECK(v.score == 1);
}

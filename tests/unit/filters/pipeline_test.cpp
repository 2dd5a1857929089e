// Pipeline: phases, config order, time budgets, fail open/closed, metrics.
#include <catch2/catch.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/dns/resolver.hpp"
#include "common/metrics.hpp"
#include "filters/pipeline.hpp"
#include "filters/registry.hpp"
#include "filters/known.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/unit/filters/run_sync.hpp"

using namespace moat;
using namespace moat::filters;
using namespace std::chrono_literals;
using moat::test::run_sync;

namespace {

// A test filter: waits `delay`, then adds its symbol or fails.
class TestFilter final : public Filter {
 public:
  TestFilter(std::string name, PhaseMask phases, std::chrono::milliseconds delay, std::string symbol, bool fail = false)
      : name_(std::move(name)), phases_(phases), delay_(delay), symbol_(std::move(symbol)), fail_(fail) {}
  std::string_view name() const override { return name_; }
  PhaseMask phases() const override { return phases_; }
  asio::awaitable<Status> run(Phase, ScanContext& ctx) override {
    ctx.add(symbol_ + "_PARTIAL");  // must vanish if the run fails
    if (delay_.count() > 0) {
      asio::steady_timer t(co_await asio::this_coro::executor, delay_);
      co_await t.async_wait(asio::use_awaitable);
    }
    if (fail_) co_return Status(Errc::DnsTempFail, "resolver down");
    ctx.symbols.pop_back();
    ctx.add(symbol_);
    co_return Status{};
  }

 private:
  std::string name_;
  PhaseMask phases_;
  std::chrono::milliseconds delay_;
  std::string symbol_;
  bool fail_;
};

config::Filter settings(std::string name, config::FailMode fail, std::chrono::milliseconds budget = 50ms) {
  config::Filter f;
  f.name = std::move(name);
  f.fail = fail;
  f.budget = budget;
  return f;
}

config::Snapshot snapshot() {
  auto c = std::make_shared<config::Config>();
  c->scores = {{"SLOW_HIT", 6}, {"FAST_HIT", 1}};
  return c;
}

}  // namespace

TEST_CASE("pipeline runs filters of the phase in order and scores symbols", "[filters][pipeline]") {
  Pipeline p(snapshot());
  p.add(std::make_unique<TestFilter>("t_a", mask(Phase::EndOfData), 0ms, "FAST_HIT"), settings("t_a", config::FailMode::Closed));
  p.add(std::make_unique<TestFilter>("t_b", mask(Phase::Helo), 0ms, "HELO_ONLY"), settings("t_b", config::FailMode::Closed));
  p.add(std::make_unique<TestFilter>("t_c", mask(Phase::EndOfData), 1ms, "SLOW_HIT"), settings("t_c", config::FailMode::Closed));
  ScanContext ctx;
  auto v = run_sync(p.run(Phase::EndOfData, ctx));
  REQUIRE(ctx.symbols.size() == 2);
  CHECK(ctx.symbols[0].name == "FAST_HIT");
  CHECK(ctx.symbols[1].name == "SLOW_HIT");
  CHECK(ctx.symbols[1].score == 6);
  CHECK(v.action == Action::Tag);
  CHECK(v.score == 7);
}

TEST_CASE("a filter over its budget tempfails when closed", "[filters][pipeline]") {
  auto& timeouts = metrics::counter("moat_filter_timeouts_total", "filter=\"slow_closed\"");
  auto before = timeouts.value();
  Pipeline p(snapshot());
  p.add(std::make_unique<TestFilter>("slow_closed", mask(Phase::EndOfData), 10s, "SLOW_HIT"),
        settings("slow_closed", config::FailMode::Closed, 20ms));
  p.add(std::make_unique<TestFilter>("after", mask(Phase::EndOfData), 0ms, "FAST_HIT"), settings("after", config::FailMode::Closed));
  ScanContext ctx;
  auto start = std::chrono::steady_clock::now();
  auto v = run_sync(p.run(Phase::EndOfData, ctx));
  CHECK(std::chrono::steady_clock::now() - start < 5s);  // did not wait for the filter
  CHECK(v.action == Action::TempFail);
  CHECK(v.reply == Errc::ScanTimeout);
  CHECK(v.reason == "filter slow_closed timed out");
  CHECK(ctx.symbols.empty());  // no partial symbols, later filters did not run
  CHECK(timeouts.value() == before + 1);
}

TEST_CASE("a filter over its budget passes with FILTER_FAILED_OPEN when open", "[filters][pipeline]") {
  auto& open = metrics::counter("moat_filter_fail_open_total", "filter=\"slow_open\"");
  auto before = open.value();
  Pipeline p(snapshot());
  p.add(std::make_unique<TestFilter>("slow_open", mask(Phase::EndOfData), 10s, "SLOW_HIT"),
        settings("slow_open", config::FailMode::Open, 20ms));
  p.add(std::make_unique<TestFilter>("after", mask(Phase::EndOfData), 0ms, "FAST_HIT"), settings("after", config::FailMode::Closed));
  ScanContext ctx;
  auto v = run_sync(p.run(Phase::EndOfData, ctx));
  CHECK(v.action == Action::Accept);
  REQUIRE(ctx.symbols.size() == 2);
  CHECK(ctx.symbols[0].name == "FILTER_FAILED_OPEN");
  CHECK(ctx.symbols[0].detail == "slow_open");
  CHECK(ctx.symbols[0].score == 0);
  CHECK(ctx.symbols[1].name == "FAST_HIT");
  CHECK(open.value() == before + 1);
}

TEST_CASE("each filter gets its own budget: two slow open filters time out, the next runs", "[filters][pipeline]") {
  Pipeline p(snapshot());
  p.add(std::make_unique<TestFilter>("slow_a", mask(Phase::EndOfData), 10s, "SLOW_HIT"),
        settings("slow_a", config::FailMode::Open, 20ms));
  // Would be cut short if the first filter's timer were still armed.
  p.add(std::make_unique<TestFilter>("medium", mask(Phase::EndOfData), 30ms, "FAST_HIT"),
        settings("medium", config::FailMode::Closed, 2000ms));
  p.add(std::make_unique<TestFilter>("slow_b", mask(Phase::EndOfData), 10s, "SLOW_HIT"),
        settings("slow_b", config::FailMode::Open, 20ms));
  ScanContext ctx;
  auto start = std::chrono::steady_clock::now();
  auto v = run_sync(p.run(Phase::EndOfData, ctx));
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(v.action == Action::Accept);
  REQUIRE(ctx.symbols.size() == 3);
  CHECK(ctx.symbols[0].detail == "slow_a");
  CHECK(ctx.symbols[1].name == "FAST_HIT");
  CHECK(ctx.symbols[2].detail == "slow_b");
}

TEST_CASE("an erroring filter: closed tempfails with its temporary error's reply, open continues", "[filters][pipeline]") {
  auto mode = GENERATE(config::FailMode::Closed, config::FailMode::Open);
  auto& errors = metrics::counter("moat_filter_errors_total", "filter=\"broken\"");
  auto before = errors.value();
  Pipeline p(snapshot());
  p.add(std::make_unique<TestFilter>("broken", mask(Phase::RcptTo), 0ms, "X", true), settings("broken", mode));
  ScanContext ctx;
  auto v = run_sync(p.run(Phase::RcptTo, ctx));
  CHECK(errors.value() == before + 1);
  if (mode == config::FailMode::Closed) {
    CHECK(v.action == Action::TempFail);
    CHECK(v.reply == Errc::DnsTempFail);  // 451 4.4.3, not a generic scan failure
    CHECK(ctx.symbols.empty());
  } else {
    CHECK(v.action == Action::Accept);
    REQUIRE(ctx.symbols.size() == 1);
    CHECK(ctx.symbols[0].name == "FILTER_FAILED_OPEN");
  }
}

TEST_CASE("build makes every enabled configured filter", "[filters][pipeline]") {
  auto c = std::make_shared<config::Config>();
  for (auto k : kKnownFilters) c->filters.push_back(config::Filter{std::string(k)});
  c->filters[1].enabled = false;
  // The daemon's services: DNS filters refuse to build without a resolver.
  test::TempDir tmp;
  asio::io_context io;
  asio::thread_pool pool(1);
  dns::Resolver resolver(io, c->dns);
  const Services services{&resolver, &pool, tmp.path};
  auto p = Pipeline::build(c, services);
  REQUIRE(p);
  CHECK((*p)->size() == kKnownFilters.size() - 1);
  CHECK(known_filters().size() == kKnownFilters.size());
  for (auto k : known_filters()) CHECK(make_filter(config::Filter{std::string(k)}, *c, services));
  auto bad = make_filter(config::Filter{"nope"}, *c);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == Errc::Invalid);
}

namespace {

// Keeps what it was fed; its filter reports the bytes as a symbol detail.
class RecordingTap final : public DataTap {
 public:
  void feed(std::string_view bytes) override {
    seen += bytes;
    ++chunks;
  }
  std::string seen;
  int chunks = 0;
};

class TappingFilter final : public Filter {
 public:
  explicit TappingFilter(bool wants_tap) : wants_tap_(wants_tap) {}
  std::string_view name() const override { return "tapping"; }
  PhaseMask phases() const override { return mask(Phase::EndOfData); }
  std::unique_ptr<DataTap> open_tap(const ScanContext&) override {
    if (!wants_tap_) return nullptr;
    return std::make_unique<RecordingTap>();
  }
  asio::awaitable<Status> run(Phase, ScanContext& ctx) override {
    auto* tap = static_cast<RecordingTap*>(ctx.tap(this));
    if (tap) ctx.add("TAPPED", std::to_string(tap->chunks) + ":" + tap->seen);
    else ctx.add("UNTAPPED");
    co_return Status{};
  }

 private:
  bool wants_tap_;
};

}  // namespace

TEST_CASE("EndOfData filters get a tap fed with the message as it streams in", "[filters][pipeline]") {
  Pipeline p(snapshot());
  p.add(std::make_unique<TappingFilter>(true), settings("tapping", config::FailMode::Closed));
  p.add(std::make_unique<TappingFilter>(false), settings("tapping", config::FailMode::Closed));
  p.add(std::make_unique<TestFilter>("helo", mask(Phase::Helo), 0ms, "HELO_ONLY"), settings("helo", config::FailMode::Closed));
  ScanContext ctx;
  p.open_taps(ctx);
  for (std::string_view chunk : {"Subject: a\r\n", "\r\n", "body\r\n"}) ctx.feed(chunk);
  run_sync(p.run(Phase::EndOfData, ctx));
  REQUIRE(ctx.symbols.size() == 2);
  CHECK(ctx.symbols[0].name == "TAPPED");
  CHECK(ctx.symbols[0].detail == "3:Subject: a\r\n\r\nbody\r\n");
  CHECK(ctx.symbols[1].name == "UNTAPPED");  // no tap asked for, none given
}

TEST_CASE("ScanContext shares one result per type between filters", "[filters][context]") {
  struct Leaves { int n; };
  struct Other { std::string s; };
  ScanContext ctx;
  CHECK_FALSE(ctx.shared<Leaves>());
  auto first = std::make_shared<const Leaves>(Leaves{1});
  ctx.share(first);
  ctx.share(std::make_shared<const Other>(Other{"x"}));
  REQUIRE(ctx.shared<Leaves>());
  CHECK(ctx.shared<Leaves>().get() == first.get());  // the same object, not a copy
  CHECK(ctx.shared<Other>()->s == "x");
  ctx.share(std::make_shared<const Leaves>(Leaves{2}));  // a later result replaces the earlier one
  CHECK(ctx.shared<Leaves>()->n == 2);
  CHECK(ctx.shared<Other>()->s == "x");
  ctx = ScanContext{};  // the next transaction starts empty
  CHECK_FALSE(ctx.shared<Leaves>());
}

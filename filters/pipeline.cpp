// Filter pipeline (see pipeline.hpp). Each filter is raced against a
// steady_timer with awaitable_operators `||`: whichever finishes first wins
// and the other is cancelled, so a hung scanner costs at most its budget.
// Fail closed answers 4xx (SECURITY.md promise 2); fail open goes on but
// leaves FILTER_FAILED_OPEN in the symbols and counts it (Envoy ext_authz).
#include "filters/pipeline.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>

#include "common/log.hpp"
#include "filters/policy.hpp"
#include "filters/registry.hpp"

namespace moat::filters {

Pipeline::Pipeline(config::Snapshot cfg) : cfg_(std::move(cfg)), scores_(*cfg_) {}

Result<std::unique_ptr<Pipeline>> Pipeline::build(const config::Snapshot& cfg, const Services& services) {
  auto p = std::make_unique<Pipeline>(cfg);
  for (const auto& f : cfg->filters) {
    if (!f.enabled) continue;
    auto filter = make_filter(f, *cfg, services);
    if (!filter) return filter.error();
    p->add(std::move(*filter), f);
  }
  return p;
}

void Pipeline::add(std::unique_ptr<Filter> filter, const config::Filter& settings) {
  std::string label = "filter=\"" + std::string(filter->name()) + "\"";
  stages_.push_back(Stage{
      std::move(filter), settings,
      &metrics::counter("moat_filter_runs_total", label, "Filter runs"),
      &metrics::counter("moat_filter_errors_total", label, "Filter runs that failed or timed out"),
      &metrics::counter("moat_filter_timeouts_total", label, "Filter runs over their time budget"),
      &metrics::counter("moat_filter_fail_open_total", label, "Failed filter runs passed by fail = open"),
      &metrics::histogram("moat_filter_duration_seconds", label, "Filter run time"),
  });
}

asio::awaitable<Status> Pipeline::run_one(Stage& st, Phase phase, ScanContext& ctx) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, st.settings.budget);
  try {
    auto r = co_await (st.filter->run(phase, ctx) || timer.async_wait(asio::use_awaitable));
    if (r.index() == 1) co_return Status(Errc::ScanTimeout, "over its " + std::to_string(st.settings.budget.count()) + "ms budget");
    co_return std::get<0>(std::move(r));
  } catch (const std::exception& e) {
    // Filters must not throw; if one does anyway it is a failed run, not a crash.
    co_return Status(Errc::ScanUnavailable, std::string("exception: ") + e.what());
  }
}

asio::awaitable<Verdict> Pipeline::run(Phase phase, ScanContext& ctx) {
  for (auto& st : stages_) {
    if (!(st.filter->phases() & mask(phase))) continue;
    st.runs->inc();
    const auto before = ctx.symbols.size();
    const auto start = std::chrono::steady_clock::now();
    Status status = co_await run_one(st, phase, ctx);
    st.duration->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (status) continue;

    // Half a check is no check: drop what the failed run added.
    ctx.symbols.resize(before);
    st.errors->inc();
    const bool timeout = status.error().code == Errc::ScanTimeout;
    if (timeout) st.timeouts->inc();
    const std::string name(st.filter->name());
    const bool closed = st.settings.fail == config::FailMode::Closed;
    log::warning("filter " + name + ": " + (timeout ? "timed out" : "failed") + ": " + status.error().detail +
                 (closed ? " (fail closed)" : " (fail open)"));
    if (closed) {
      Verdict v;
      v.action = Action::TempFail;
      // A temporary error names its own reply (DNS temperror: 451 4.4.3).
      const Errc code = status.error().code;
      v.reply = timeout ? Errc::ScanTimeout : is_temporary(code) ? code : Errc::ScanUnavailable;
      v.reason = "filter " + name + (timeout ? " timed out" : " failed");
      co_return v;
    }
    st.fail_open->inc();
    ctx.add(std::string(kFilterFailedOpen), name);
  }
  // Scores come from the table, never from the filter; filling every symbol
  // also covers ones the session added itself.
  for (auto& s : ctx.symbols) s.score = scores_.score(s.name);
  co_return decide(ctx.symbols, actions_for(*cfg_, ctx.envelope), phase);
}

}  // namespace moat::filters

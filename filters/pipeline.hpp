// The filter pipeline: runs the configured filters for one SMTP phase in
// config order, each under its time budget, applies fail-open/closed when a
// filter errs or runs over, scores the symbols and asks the policy for a
// verdict. Built once per config snapshot; run() is safe to call from many
// sessions at once because filters keep no per-message state.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <vector>

#include "common/config.hpp"
#include "common/error.hpp"
#include "common/metrics.hpp"
#include "filters/filter.hpp"
#include "filters/scores.hpp"
#include "filters/services.hpp"

namespace moat::filters {

class Pipeline {
 public:
  // Every enabled [[filter]] of the snapshot, made by the registry.
  static Result<std::unique_ptr<Pipeline>> build(const config::Snapshot& cfg, const Services& services = {});

  // An empty pipeline for cfg; add() appends filters (tests add their own).
  explicit Pipeline(config::Snapshot cfg);
  void add(std::unique_ptr<Filter> filter, const config::Filter& settings);

  // Runs the filters that declare `phase`; adds and scores symbols in ctx.
  // A fail-closed filter that errs or times out ends the run with TempFail.
  asio::awaitable<Verdict> run(Phase phase, ScanContext& ctx);
  // Asks every EndOfData filter for a tap on the message about to stream in.
  void open_taps(ScanContext& ctx) const;

  std::size_t size() const { return stages_.size(); }
  const Scores& scores() const { return scores_; }

 private:
  struct Stage {
    std::unique_ptr<Filter> filter;
    config::Filter settings;
    metrics::Counter* runs;
    metrics::Counter* errors;
    metrics::Counter* timeouts;
    metrics::Counter* fail_open;
    metrics::Histogram* duration;
  };
  struct Watchdog;
  asio::awaitable<Verdict> run_stages(Phase phase, ScanContext& ctx, std::shared_ptr<Watchdog> dog);
  asio::awaitable<Status> run_one(Stage& stage, Phase phase, ScanContext& ctx, std::shared_ptr<Watchdog> dog);
  Verdict finish(Phase phase, ScanContext& ctx) const;

  config::Snapshot cfg_;
  Scores scores_;
  std::vector<Stage> stages_;
};

}  // namespace moat::filters

// The "rules" filter: runs the compiled rule set (rules/) over the message at
// end of DATA and adds one symbol per reported rule that hits. Scores come
// from the rule folders' .scores files through filters/scores.cpp.
//
// Compiled sets live in a process-wide store, keyed by the hash of the rule
// text: a reload with unchanged rules reuses the running set at once; changed
// rules are compiled on the blocking pool while the previous set keeps
// scanning, then swapped in whole (shared_ptr<const RuleSet>). The very first
// set is compiled (or loaded from data_dir/rules-cache) before moatd serves.
//
// While DATA streams in, a DataTap scans the full-class rules chunk by chunk
// (RuleSet::Stream), so end of data does not scan the whole message again
// for them; body, rawbody, header and uri rules need the MIME decode and run
// at the end.
#pragma once

#include <memory>
#include <mutex>

#include "filters/filter.hpp"
#include "filters/rules/message_input.hpp"
#include "filters/services.hpp"
#include "rules/ruleset.hpp"

namespace moat::filters::rules {

// The set a filter generation scans with; swapped when a background compile ends.
class CurrentSet {
 public:
  std::shared_ptr<const moat::rules::RuleSet> get() const {
    std::lock_guard lk(mu_);
    return set_;
  }
  void set(std::shared_ptr<const moat::rules::RuleSet> s) {
    std::lock_guard lk(mu_);
    set_ = std::move(s);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const moat::rules::RuleSet> set_;
};

class RulesFilter final : public Filter {
 public:
  static Result<std::unique_ptr<Filter>> make(const config::Config& cfg, const Services& services);
  std::string_view name() const override { return "rules"; }
  PhaseMask phases() const override { return mask(Phase::EndOfData); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;
  std::unique_ptr<DataTap> open_tap(const ScanContext& ctx) override;

  std::shared_ptr<const moat::rules::RuleSet> current() const { return current_->get(); }

 private:
  RulesFilter(std::shared_ptr<CurrentSet> current, boost::asio::thread_pool* pool)
      : current_(std::move(current)), pool_(pool) {}
  std::shared_ptr<CurrentSet> current_;
  boost::asio::thread_pool* pool_;
};

// Scans one message with a set: the reported rules that hit (tests, bench).
Result<std::vector<const moat::rules::Rule*>> scan_message(const moat::rules::RuleSet& set, std::string_view message);

}  // namespace moat::filters::rules

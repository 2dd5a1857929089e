// Mail loop detection by counting Received: header fields (RFC 5321 §6.3).
#pragma once

#include "common/config.hpp"
#include "filters/filter.hpp"

namespace moat::filters::hops {

// HOPS_LOOP when the message carries more than limits.max_hops Received:
// fields; its default score rejects, with 554 5.4.6 (Errc::LoopDetected).
class HopsFilter final : public Filter {
 public:
  explicit HopsFilter(const config::Config& cfg) : max_hops_(cfg.limits.max_hops) {}
  std::string_view name() const override { return "hops"; }
  PhaseMask phases() const override { return mask(Phase::EndOfData); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

 private:
  unsigned max_hops_;
};

}  // namespace moat::filters::hops

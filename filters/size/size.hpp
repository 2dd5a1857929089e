// Message size information (RFC 1870 sizes): MSG_LARGE, score 0 by default,
// for messages over half of limits.message_size. The hard limit is enforced
// by the SMTP session (SIZE= and the DATA byte cap), not here.
#pragma once

#include <cstdint>

#include "common/config.hpp"
#include "filters/filter.hpp"

namespace moat::filters::size {

class SizeFilter final : public Filter {
 public:
  explicit SizeFilter(const config::Config& cfg) : large_(cfg.limits.message_size / 2) {}
  std::string_view name() const override { return "size"; }
  PhaseMask phases() const override { return mask(Phase::EndOfData); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

 private:
  std::uint64_t large_;
};

}  // namespace moat::filters::size

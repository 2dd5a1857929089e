// SPF (RFC 7208) as a filter: at MAIL FROM, check_host() for the MAIL FROM
// identity (the HELO identity for <>, §2.4), and with [spf] check_helo the
// HELO identity on its own too (§2.3). Each result becomes a symbol, an
// Authentication-Results entry (RFC 8601 §2.7.2) for DMARC and the header,
// and a Received-SPF header field (§9.1).
#pragma once

#include <optional>
#include <string>

#include "filters/filter.hpp"
#include "filters/services.hpp"
#include "filters/spf/checker.hpp"

namespace moat::filters::spf {

// Symbols: SPF_PASS, SPF_FAIL, SPF_SOFTFAIL, SPF_NEUTRAL, SPF_NONE,
// SPF_TEMPERROR, SPF_PERMERROR; SPF_HELO_* for the separate HELO check.
class SpfFilter final : public Filter {
 public:
  // Without a resolver or pool (unit tests that build every filter) each
  // run fails as ScanUnavailable, and the filter's fail mode decides.
  SpfFilter(const config::Config& cfg, const config::Filter& settings, dns::Resolver* resolver,
            asio::thread_pool* pool);
  std::string_view name() const override { return "spf"; }
  PhaseMask phases() const override { return mask(Phase::MailFrom); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

 private:
  std::optional<Checker> checker_;
  std::string receiver_;  // our host name
  bool check_helo_;
  bool fail_closed_;
};

// The symbol of a result: "SPF_PASS", or "SPF_HELO_PASS" for the HELO check.
std::string symbol_for(Result r, bool helo_check);

// "Received-SPF: ..." (RFC 7208 §9.1), folded, ending in CRLF. Every value
// from the client or DNS is quoted or stripped of what could break the field.
std::string received_spf(const Outcome& o, const Query& q);

// Adds what one check found to ctx: symbol, auth result, header field.
void record(const Outcome& o, const Query& q, ScanContext& ctx);

}  // namespace moat::filters::spf

// DMARC (RFC 7489, np= from RFC 9091): the From domain's published policy,
// judged against the SPF and DKIM results already in ScanContext::auth with
// relaxed or strict identifier alignment (§3.1). Runs at end of DATA after
// spf and dkim. p=reject and p=quarantine force their action through the
// DMARC_POLICY_* symbols (filters/scores.hpp symbol_forces), [dmarc] overrides
// may replace a domain's policy, and aggregate report data is recorded.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "filters/dmarc/record.hpp"
#include "filters/dmarc/reports.hpp"
#include "filters/filter.hpp"
#include "filters/services.hpp"

namespace moat::dns {
class Resolver;
}

namespace moat::filters::dmarc {

// What policy discovery (§6.6.3) found for one author domain.
struct Discovery {
  enum class Kind { NoRecord, NoProcessing, Found, TempError } kind = Kind::NoRecord;
  Record record;
  bool org = false;          // taken from the Organizational Domain, not the From domain
  bool nonexistent = false;  // the From domain itself is NXDOMAIN (RFC 9091 np=)
};

struct Outcome {
  std::string result = "none";        // pass | fail | none | temperror | permerror
  std::string domain;                 // header.from
  std::optional<Policy> policy;       // the published p / sp / np that applies
  Policy disposition = Policy::None;  // what we do: after pct= and [dmarc] overrides
  bool overridden = false;
  bool sampled_out = false;           // pct= chose the next weaker policy
  bool dkim_aligned = false, spf_aligned = false;
  std::string dkim_domains;           // d= of all DKIM results, for reports
  std::string spf_domain;
};

// Pure evaluation (§6.6.2, §6.6.4). `roll` is 0..99 for pct=; force_fail
// turns a pass into a fail (ambiguous or several authors).
Outcome evaluate(std::string_view from_domain, const Discovery& d, const std::vector<AuthResult>& auth,
                 unsigned roll, bool force_fail = false);

// True when a (DKIM d= or SPF) domain is aligned with the From domain.
bool aligned(std::string_view domain, std::string_view from_domain, bool strict);

class DmarcFilter final : public Filter {
 public:
  // Needs services.resolver and services.blocking.
  static Result<std::unique_ptr<Filter>> make(const config::Config& cfg, const Services& services);
  ~DmarcFilter() override;
  std::string_view name() const override { return "dmarc"; }
  PhaseMask phases() const override { return mask(Phase::EndOfData); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

  // Policy discovery for one author domain (public for tests).
  asio::awaitable<Discovery> discover(std::string domain);

 private:
  DmarcFilter(const config::Config& cfg, const Services& services, std::unique_ptr<ReportStore> reports);
  struct Fetched {
    Discovery::Kind kind = Discovery::Kind::NoRecord;
    Record record;
  };
  asio::awaitable<Fetched> fetch(std::string name);
  void record_report(const Outcome& o, const ScanContext& ctx);

  dns::Resolver& resolver_;
  asio::thread_pool& blocking_;
  std::map<std::string, Policy, std::less<>> overrides_;
  // Shared with report writes still queued on the pool (record_report).
  std::shared_ptr<ReportStore> reports_;  // null: reports off
  struct InFlight;
  std::shared_ptr<InFlight> in_flight_;
};

}  // namespace moat::filters::dmarc

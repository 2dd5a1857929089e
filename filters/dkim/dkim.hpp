// The "dkim" filter (RFC 6376, RFC 8463, RFC 8301, RFC 8601): at end of DATA
// it verifies every DKIM signature of inbound mail with libopendkim (keys
// fetched first through the daemon's resolver; plain rsa-sha256 passes are
// confirmed first by FastPass, fastpass.hpp) and signs mail from our own
// users and networks with the configured keys. See docs/configuration.md
// [dkim] for the rules; symbols and default scores are in filters/scores.cpp.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/net.hpp"
#include "filters/dkim/fastpass.hpp"
#include "filters/dkim/key.hpp"
#include "filters/dkim/opendkim.hpp"
#include "filters/dkim/signature.hpp"
#include "filters/filter.hpp"
#include "filters/services.hpp"

namespace moat::dns {
class Resolver;
}

namespace moat::filters::dkim {

// Used when [dkim] sign_headers is not set: RFC 6376 §5.4.1's list, minus
// the trace and resent fields a relay may add.
extern const std::vector<std::string> kDefaultSignHeaders;

// Symbols: DKIM_PASS, DKIM_FAIL, DKIM_PERMERROR, DKIM_TEMPERROR (each at
// most once, detail = the d= domains), DKIM_NONE (no signature), DKIM_SIGNED
// (we signed it; detail = domain/selector of each signature).
class DkimFilter final : public Filter {
 public:
  struct SigningKey {
    std::string domain;
    std::string selector;
    PrivateKey key;
  };

  // Loads every [[dkim.sign]] key: a missing or unusable key is an error
  // here, at start or reload, not when the first message arrives.
  static Result<std::unique_ptr<DkimFilter>> create(const config::Config& cfg, const Services& services);

  std::string_view name() const override { return "dkim"; }
  PhaseMask phases() const override { return mask(Phase::EndOfData); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

  // Our own senders: authenticated, or from [relay] networks.
  bool trusted(const ScanContext& ctx) const;

 private:
  DkimFilter(const config::Config& cfg, const Services& services);
  asio::awaitable<KeyAnswer> lookup_key(std::string name);
  asio::awaitable<KeyAnswers> fetch_keys(const std::vector<Signature>& sigs);
  asio::awaitable<Status> verify(ScanContext& ctx);
  asio::awaitable<Status> sign(ScanContext& ctx);

  dns::Resolver& resolver_;
  asio::thread_pool& pool_;
  std::unique_ptr<OpenDkim> lib_;
  std::unique_ptr<FastPass> fast_;
  std::vector<SigningKey> keys_;
  std::vector<Cidr> networks_;
  unsigned max_signatures_;
  bool allow_sha1_;
};

// The decision of RFC-less territory, documented in docs/configuration.md:
// a temperror must be retried (451) unless a passing signature already
// speaks for the From domain as well as the failed one would have.
bool must_retry(const std::vector<Signature>& sigs, const std::vector<Outcome>& outcomes,
                std::string_view from_domain);

}  // namespace moat::filters::dkim

// HELO/EHLO argument checks (RFC 5321 §4.1.1.1, §4.1.3): the argument must be
// a domain name or an address literal, should be fully qualified, and must
// not be ours when it comes from a stranger.
#pragma once

#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/net.hpp"
#include "filters/filter.hpp"

namespace moat::filters::helo {

// Symbols: HELO_BAD_SYNTAX, HELO_NOT_FQDN, HELO_BARE_IP, HELO_IS_OUR_NAME.
class HeloFilter final : public Filter {
 public:
  explicit HeloFilter(const config::Config& cfg);
  std::string_view name() const override { return "helo"; }
  PhaseMask phases() const override { return mask(Phase::Helo); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

  // The check itself, synchronous: adds symbols for `helo` from `client`.
  void check(const std::string& helo, const IpAddr& client, ScanContext& ctx) const;

 private:
  bool trusted(const IpAddr& client) const;

  std::string hostname_;        // ours, lower case
  std::vector<IpAddr> our_ips_; // listener addresses that name this host
  std::vector<Cidr> trusted_;   // loopback and relay.networks
};

}  // namespace moat::filters::helo

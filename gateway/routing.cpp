// See routing.hpp. Domains compare case-insensitively (RFC 5321 §2.4).
#include "common/text.hpp"
#include "gateway/routing.hpp"

#include <algorithm>

namespace moat::gateway {
namespace {

const config::RelayDomain* find_relay_domain(const config::Config& cfg, std::string_view domain) {
  for (const auto& d : cfg.relay.domains)
    if (lower(d.name) == domain) return &d;
  return nullptr;
}

}  // namespace

std::string recipient_domain(std::string_view recipient) {
  auto at = recipient.rfind('@');
  if (at == std::string_view::npos) return {};
  std::string d = lower(recipient.substr(at + 1));
  if (!d.empty() && d.back() == '.') d.pop_back();
  return d;
}

Destination destination_for(const config::Config& cfg, std::string_view recipient) {
  Destination d;
  d.domain = recipient_domain(recipient);
  if (const auto* rd = find_relay_domain(cfg, d.domain)) {
    d.next_hop = rd->next_hop;
    d.tls = rd->tls;
    return d;
  }
  d.next_hop = cfg.relay.smarthost;
  d.tls = cfg.relay.outbound_tls;
  return d;
}

std::string transport_for(const config::Config&, std::string_view) { return "smtp"; }

}  // namespace moat::gateway

// See routing.hpp. Domains compare case-insensitively (RFC 5321 §2.4).
#include "common/text.hpp"
#include "gateway/routing.hpp"

#include <algorithm>
#include <mutex>
#include <set>

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

namespace {
std::mutex g_local_mu;
std::set<std::string> g_local_domains;  // lower case
}  // namespace

void set_runtime_local_domains(std::vector<std::string> domains) {
  std::set<std::string> fresh(domains.begin(), domains.end());
  std::lock_guard lk(g_local_mu);
  g_local_domains = std::move(fresh);
}

bool is_local_domain(const config::Config& cfg, std::string_view domain) {
  if (cfg.local_domain(domain)) return true;
  std::string d = lower(domain);
  if (!d.empty() && d.back() == '.') d.pop_back();
  std::lock_guard lk(g_local_mu);
  return g_local_domains.count(d) != 0;
}

std::string transport_for(const config::Config& cfg, std::string_view recipient) {
  return is_local_domain(cfg, recipient_domain(recipient)) ? "local" : "smtp";
}

}  // namespace moat::gateway

// HELO checks (see helo.hpp). What an admin expects:
//  - syntax errors reject (score 20), sloppiness only adds a point or two;
//  - underscores are tolerated, as Postfix does, since Windows hosts send them;
//  - "our name" is forged only when a stranger says it: loopback clients and
//    relay.networks (our own software, monitoring) may use our hostname, and a
//    loopback or wildcard listener address is never "ours" as a literal, since
//    every host has a 127.0.0.1.
#include "common/text.hpp"
#include "filters/helo/helo.hpp"

#include <algorithm>
#include <cctype>

namespace moat::filters::helo {
namespace {

std::string canonical(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return lower(s);
}

// Client text in a symbol detail goes to logs: printable ASCII only, bounded.
std::string safe_detail(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) out += (c > 0x20 && c < 0x7f) ? c : '?';
  return out;
}

// "[192.0.2.1]", "[IPv6:2001:db8::1]" (RFC 5321 §4.1.3); "[::1]" is accepted too.
std::optional<IpAddr> address_literal(std::string_view s) {
  if (s.size() < 3 || s.front() != '[' || s.back() != ']') return std::nullopt;
  s = s.substr(1, s.size() - 2);
  if (s.size() > 5 && lower(s.substr(0, 5)) == "ipv6:") {
    s.remove_prefix(5);
    if (s.find(':') == std::string_view::npos) return std::nullopt;
  }
  return parse_ip(s);
}

bool is_unspecified_or_loopback(const IpAddr& ip) {
  static const Cidr kSkip[] = {*parse_cidr("127.0.0.0/8"), *parse_cidr("0.0.0.0/32"), *parse_cidr("::1/128"),
                               *parse_cidr("::/128")};
  return std::any_of(std::begin(kSkip), std::end(kSkip), [&](const Cidr& c) { return c.contains(ip); });
}

}  // namespace

HeloFilter::HeloFilter(const config::Config& cfg) : hostname_(canonical(cfg.server.hostname)) {
  for (const auto& l : cfg.listeners)
    if (auto ip = parse_ip(l.address.host); ip && !is_unspecified_or_loopback(*ip)) our_ips_.push_back(*ip);
  trusted_ = {*parse_cidr("127.0.0.0/8"), *parse_cidr("::1/128")};
  trusted_.insert(trusted_.end(), cfg.relay.networks.begin(), cfg.relay.networks.end());
}

asio::awaitable<Status> HeloFilter::run(Phase, ScanContext& ctx) {
  check(ctx.envelope.client.helo, ctx.envelope.client.ip, ctx);
  co_return Status{};
}

bool HeloFilter::trusted(const IpAddr& client) const {
  return std::any_of(trusted_.begin(), trusted_.end(), [&](const Cidr& c) { return c.contains(client); });
}

void HeloFilter::check(const std::string& helo, const IpAddr& client, ScanContext& ctx) const {
  const std::string detail = safe_detail(helo);
  if (auto lit = address_literal(helo)) {
    bool ours = std::find(our_ips_.begin(), our_ips_.end(), *lit) != our_ips_.end();
    if (ours && !(*lit == client) && !trusted(client)) ctx.add("HELO_IS_OUR_NAME", detail);
    return;
  }
  if (parse_ip(helo)) return ctx.add("HELO_BARE_IP", detail);
  std::string name = helo;
  std::replace(name.begin(), name.end(), '_', '-');
  if (!config::is_domain_name(name)) return ctx.add("HELO_BAD_SYNTAX", detail);
  if (canonical(helo).find('.') == std::string::npos) ctx.add("HELO_NOT_FQDN", detail);
  if (canonical(helo) == hostname_ && !trusted(client)) ctx.add("HELO_IS_OUR_NAME", detail);
}

}  // namespace moat::filters::helo

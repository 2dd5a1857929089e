// Address value types (see net.hpp): host:port with RFC 3986 style "[v6]:port"
// brackets, IP literals via inet_pton/inet_ntop, and CIDR ranges matched in
// one 128-bit space with IPv4 mapped as ::ffff:a.b.c.d (RFC 4291 §2.5.5.2).
#include "common/net.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace moat {
namespace {

constexpr std::array<std::uint8_t, 12> kV4MappedPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

std::optional<unsigned> parse_number(std::string_view s, unsigned max) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v > max) return std::nullopt;
  return v;
}

}  // namespace

std::string HostPort::str() const {
  // A colon in host means an IPv6 literal; brackets keep the port apart.
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::optional<HostPort> parse_host_port(std::string_view s, std::uint16_t default_port) {
  HostPort hp;
  hp.port = default_port;
  std::string_view host, port;
  bool has_port = false;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = s.substr(1, close - 1);
    auto rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
      has_port = true;
    }
    // Brackets hold an address literal, never a name ("[192.0.2.1]:25" is
    // the Postfix way to say "no MX lookup").
    if (!parse_ip(host)) return std::nullopt;
  } else {
    auto colon = s.rfind(':');
    if (colon != std::string_view::npos) {
      // More than one colon without brackets is an ambiguous bare IPv6 address.
      if (s.find(':') != colon) {
        if (!parse_ip(s)) return std::nullopt;
        host = s;
      } else {
        host = s.substr(0, colon);
        port = s.substr(colon + 1);
        has_port = true;
      }
    } else {
      host = s;
    }
  }
  if (host.empty()) return std::nullopt;
  for (char c : host) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '/' || c == '[' || c == ']' || c == '@') return std::nullopt;
  }
  if (has_port) {
    auto p = parse_number(port, 65535);
    if (!p) return std::nullopt;
    hp.port = static_cast<std::uint16_t>(*p);
  }
  hp.host = std::string(host);
  return hp;
}

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (v4) {
    inet_ntop(AF_INET, b.data() + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, b.data(), buf, sizeof buf);
  }
  return buf;
}

std::optional<IpAddr> parse_ip(std::string_view s) {
  // inet_pton needs a NUL-terminated string; longer input cannot be an address.
  char buf[INET6_ADDRSTRLEN + 1] = {};
  if (s.empty() || s.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, s.data(), s.size());
  IpAddr ip;
  if (inet_pton(AF_INET, buf, ip.b.data() + 12) == 1) {
    std::memcpy(ip.b.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size());
    ip.v4 = true;
    return ip;
  }
  if (inet_pton(AF_INET6, buf, ip.b.data()) == 1) {
    // A v4-mapped v6 literal names the same host as the v4 literal; treat it so
    // matching and logging see one form.
    ip.v4 = std::memcmp(ip.b.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) == 0;
    return ip;
  }
  return std::nullopt;
}

bool Cidr::contains(const IpAddr& ip) const {
  unsigned full = prefix / 8, rest = prefix % 8;
  if (std::memcmp(base.b.data(), ip.b.data(), full) != 0) return false;
  if (rest == 0) return true;
  auto m = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (base.b[full] & m) == (ip.b[full] & m);
}

std::string Cidr::str() const {
  return base.str() + "/" + std::to_string(base.v4 ? prefix - 96 : prefix);
}

std::optional<Cidr> parse_cidr(std::string_view s) {
  auto slash = s.find('/');
  auto ip = parse_ip(s.substr(0, slash));
  if (!ip) return std::nullopt;
  Cidr c;
  c.base = *ip;
  // The text's family decides the prefix scale: "::ffff:0:0/96" is a v6 range.
  bool v4_text = s.substr(0, slash).find(':') == std::string_view::npos;
  unsigned max = v4_text ? 32 : 128;
  unsigned len = max;
  if (slash != std::string_view::npos) {
    auto p = parse_number(s.substr(slash + 1), max);
    if (!p) return std::nullopt;
    len = *p;
  }
  c.prefix = v4_text ? 96 + len : len;
  if (c.prefix < 96) c.base.v4 = false;  // wider than the mapped block: print as v6
  // Clear host bits so str() shows the network and equal ranges compare equal.
  for (unsigned i = 0; i < 16; ++i) {
    unsigned bit = i * 8;
    if (bit >= c.prefix) c.base.b[i] = 0;
    else if (bit + 8 > c.prefix) c.base.b[i] &= static_cast<std::uint8_t>(0xff << (8 - (c.prefix - bit)));
  }
  return c;
}

}  // namespace moat

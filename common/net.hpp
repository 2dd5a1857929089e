// Small value types for addresses on the wire: host:port and CIDR ranges.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace moat {

struct HostPort {
  std::string host;      // name or literal IP (IPv6 without brackets)
  std::uint16_t port = 25;
  std::string str() const;  // "host:port" or "[v6]:port"
  bool operator==(const HostPort&) const = default;
};
// "host:port", "[::1]:25", "host" (port = default_port)
std::optional<HostPort> parse_host_port(std::string_view s, std::uint16_t default_port = 25);

// IP address as 16 bytes (IPv4 mapped as ::ffff:a.b.c.d) for uniform matching.
struct IpAddr {
  std::array<std::uint8_t, 16> b{};
  bool v4 = false;
  std::string str() const;
  bool operator==(const IpAddr&) const = default;
};
std::optional<IpAddr> parse_ip(std::string_view s);

struct Cidr {
  IpAddr base;
  unsigned prefix = 128;   // in the 128-bit space (v4 /24 is stored as 96+24)
  bool contains(const IpAddr& ip) const;
  std::string str() const;
};
std::optional<Cidr> parse_cidr(std::string_view s);  // "10.0.0.0/8", "::1/128", "127.0.0.1"

}  // namespace moat

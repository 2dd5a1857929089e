// The SMTP envelope as it travels from the session through filters, spool and
// queue: sender, recipients with their DSN parameters (RFC 3461), and facts
// about the client. Plain data; no I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/net.hpp"

namespace moat {

enum class DsnNotify : std::uint8_t { Default = 0, Never = 1, Success = 2, Failure = 4, Delay = 8 };
constexpr DsnNotify operator|(DsnNotify a, DsnNotify b) {
  return DsnNotify(std::uint8_t(a) | std::uint8_t(b));
}
constexpr bool has(DsnNotify set, DsnNotify bit) { return (std::uint8_t(set) & std::uint8_t(bit)) != 0; }

enum class DsnRet : std::uint8_t { Default, Full, Hdrs };
enum class BodyType : std::uint8_t { SevenBit, EightBitMime, BinaryMime };

struct Recipient {
  std::string address;     // as given, without <>; compared case-insensitively in the domain
  DsnNotify notify = DsnNotify::Default;
  std::string orcpt;       // RFC 3461 ORCPT value as received ("rfc822;addr" xtext), may be empty
};

struct ClientInfo {
  IpAddr ip;
  std::uint16_t port = 0;
  std::string reverse_name;  // PTR name if looked up, else empty
  std::string helo;
  std::string protocol;      // "SMTP", "ESMTP", "ESMTPS", "ESMTPSA" (RFC 3848)
  std::string auth_user;     // empty unless authenticated
  std::string tls_version;   // "TLSv1.3" or empty
  std::string tls_cipher;
};

struct Envelope {
  std::string sender;      // "" is the null sender <>
  std::vector<Recipient> recipients;
  std::string envid;       // RFC 3461 ENVID (xtext as received)
  DsnRet ret = DsnRet::Default;
  BodyType body = BodyType::SevenBit;
  bool smtputf8 = false;
  std::uint64_t declared_size = 0;  // SIZE= from MAIL FROM, 0 if none
  ClientInfo client;
  std::chrono::system_clock::time_point arrival{};
};

}  // namespace moat

// The daemon's one asynchronous DNS resolver (RFC 1035 queries through
// libunbound): MX (RFC 5321 §5.1, RFC 7505 null MX), A/AAAA, TXT, PTR.
// NXDOMAIN and NODATA stay apart because SPF void-lookup limits count them
// (RFC 7208 §4.6.4); SERVFAIL and timeouts are Errc::DnsTempFail. Answers
// are kept in a small cache of the daemon's own for their TTL (RFC 1035
// §3.2.1, RFC 2308 for negative answers), capped at kMaxCacheTtl, so a
// repeated question costs no hop to libunbound's thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/error.hpp"
#include "common/net.hpp"

namespace moat::dns {

namespace asio = boost::asio;

struct MxRecord {
  unsigned preference = 0;
  std::string host;          // lower case, no trailing dot; "" is the null MX "."
  bool operator==(const MxRecord&) const = default;
};

// records empty + nxdomain false is NODATA (the name exists, no such type).
template <class T>
struct Answer {
  std::vector<T> records;
  bool nxdomain = false;
  std::uint32_t ttl = 0;     // seconds the answer may be reused (0: not at all)
  bool nodata() const { return records.empty() && !nxdomain; }
};

// What libunbound gave back, before it is decoded per type.
struct RawAnswer {
  std::vector<std::string> rdata;   // wire-format RDATA, one per record
  bool nxdomain = false;
  std::uint32_t ttl = 0;            // libunbound's TTL of the answer (what is left of it when cached)
};

// The answer cache: entries live for min(TTL, kMaxCacheTtl); at most
// kMaxCacheEntries. Temporary failures are never cached.
inline constexpr std::chrono::seconds kMaxCacheTtl{600};
inline constexpr std::size_t kMaxCacheEntries = 10000;

class Resolver {
 public:
  // Forwards to cfg.upstream when set, else the servers in /etc/resolv.conf.
  // A libunbound set-up failure is logged; every query then fails with
  // DnsTempFail (fail closed, never "no such domain").
  Resolver(asio::io_context& io, const config::Dns& cfg);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Safe to call from any thread and coroutine; each query has the
  // configured deadline. A cached answer returns without leaving the
  // caller's thread.
  asio::awaitable<Result<Answer<MxRecord>>> mx(std::string name);
  asio::awaitable<Result<Answer<IpAddr>>> a(std::string name);
  asio::awaitable<Result<Answer<IpAddr>>> aaaa(std::string name);
  // Both families, asked in parallel; IPv4 first. A temporary failure of one
  // family is ignored when the other has addresses.
  asio::awaitable<Result<Answer<IpAddr>>> a_aaaa(std::string name);
  // Each TXT record's character-strings concatenated (RFC 7208 §3.3).
  asio::awaitable<Result<Answer<std::string>>> txt(std::string name);
  // Reverse lookup (in-addr.arpa / ip6.arpa); names lower case, no trailing dot.
  asio::awaitable<Result<Answer<std::string>>> ptr(IpAddr ip);

  // Any type (rrtype number); rdata left in wire format.
  asio::awaitable<Result<RawAnswer>> query(std::string name, int rrtype);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Helpers, public for tests.
std::string reverse_name(const IpAddr& ip);                 // "4.3.2.1.in-addr.arpa"
std::optional<std::string> decode_name(std::string_view wire);  // uncompressed wire name → "a.b"

}  // namespace moat::dns

// A transport moves one queued message to some recipients at one destination
// and reports a result per recipient. SMTP relay is the first; the mailbox
// store's local transport plugs in beside it (ARCHITECTURE.md, queue/).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/envelope.hpp"

namespace moat::gateway {

namespace asio = boost::asio;

// Where the message bytes are: a queue file region, read with pread so
// several deliveries can share one file. `prepend` goes out first (headers
// added after the body was spooled, e.g. X-Spam-*), then the region.
struct MessageSource {
  std::filesystem::path file;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::string prepend;      // complete header lines, CRLF-terminated
  // Content records may be split into chunks in the file; `chunks` lists
  // (offset, length) pairs in order when there is more than one region.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> chunks;
  // When not empty: the content already in memory, in order (valid for the
  // delivery call); the file is then not read again.
  std::vector<std::string_view> memory;
};

struct Destination {
  std::string domain;                      // recipient domain (lower case)
  std::optional<HostPort> next_hop;        // fixed host:port; empty: MX of domain
  config::TlsPolicy tls = config::TlsPolicy::May;
  std::string key() const;                 // concurrency/cache key, e.g. "[127.0.0.1]:2526" or "mx:example.org"
};

struct DeliveryRequest {
  std::string queue_id;
  const Envelope* envelope = nullptr;      // valid for the call
  std::vector<std::size_t> recipients;     // indexes into envelope->recipients
  MessageSource source;
  Destination destination;
};

enum class RcptStatus : std::uint8_t { Sent, Deferred, Bounced };

struct RcptResult {
  std::size_t index = 0;                   // into envelope->recipients
  RcptStatus status = RcptStatus::Deferred;
  std::string dsn;                         // RFC 3463 "2.0.0", "4.4.1", "5.1.1"
  std::string relay;                       // "mx.example.org[192.0.2.1]:25" or "none"
  std::string diagnostic;                  // remote reply ("550 5.1.1 ...") or local reason
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual asio::awaitable<std::vector<RcptResult>> deliver(const DeliveryRequest& req) = 0;
};

}  // namespace moat::gateway

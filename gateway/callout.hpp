// Recipient verification by callout for relay domains with verify = "callout"
// (like Postfix reject_unverified_recipient / Exim callout): ask the domain's
// next hop with MAIL FROM:<> and RCPT TO:<addr>, and cache the answer.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/config.hpp"
#include "common/dns/resolver.hpp"
#include "common/error.hpp"
#include "gateway/smtp_client.hpp"

namespace moat::gateway {

// Bounded LRU of answers. Positive answers live for the domain's
// callout_cache_ttl; negative ones shorter, so a mailbox created a minute
// ago is not refused for an hour.
class CalloutCache {
 public:
  using Clock = std::chrono::steady_clock;
  explicit CalloutCache(std::size_t capacity = 100000) : capacity_(capacity) {}
  std::optional<bool> get(const std::string& key, Clock::time_point now = Clock::now());
  void put(const std::string& key, bool exists, Clock::duration ttl, Clock::time_point now = Clock::now());
  std::size_t size() const;

 private:
  struct Entry {
    bool exists;
    Clock::time_point expires;
    std::list<std::string>::iterator lru;
  };
  std::size_t capacity_;
  mutable std::mutex mu_;
  std::list<std::string> lru_;  // front: most recently used
  std::unordered_map<std::string, Entry> map_;
};

class CalloutVerifier {
 public:
  using ConfigFn = std::function<config::Snapshot()>;
  struct Options {
    std::chrono::seconds negative_ttl{600};
    std::size_t cache_size = 100000;
    SmtpTransport::Options transport{};
  };

  CalloutVerifier(asio::any_io_executor ex, dns::Resolver& resolver, ConfigFn config, asio::ssl::context& tls);
  CalloutVerifier(asio::any_io_executor ex, dns::Resolver& resolver, ConfigFn config, asio::ssl::context& tls,
                  Options opts);

  // true: the next hop accepts the address (2xx); false: it refused it (5xx,
  // the session answers 550); Errc::NextHopUnavailable for 4xx, MAIL FROM:<>
  // refused, DNS or connection failure (the session answers 451).
  asio::awaitable<Result<bool>> verify(const config::RelayDomain& dom, const std::string& address);

  const CalloutCache& cache() const { return cache_; }

 private:
  Options opts_;
  SmtpTransport transport_;   // the client session code; its own connection cache stays unused
  CalloutCache cache_;
};

}  // namespace moat::gateway

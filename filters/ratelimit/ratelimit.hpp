// Rate limits as token buckets: connections, messages and recipients per
// client (IPv4 address or IPv6 /64) and messages and recipients per
// authenticated user. An empty bucket defers: 421 at connect (the session
// closes), 451 4.7.1 at MAIL and RCPT (RFC 5321 §4.2.5 transient failure).
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/config.hpp"
#include "common/net.hpp"
#include "filters/filter.hpp"

namespace moat::filters::ratelimit {

// A bucket holds up to `count` tokens and refills at count/period per second;
// each event takes one. Pure arithmetic, for tests.
struct Bucket {
  double tokens = 0;
  std::chrono::steady_clock::time_point last{};
};
// Refills `b` up to `now`, then takes a token if one is there.
bool take(Bucket& b, const config::Rate& rate, std::chrono::steady_clock::time_point now);

// All buckets of the daemon, by key ("msg 192.0.2.1"); kept across reloads.
// Bounded: past max_entries the least recently used bucket goes (an idle
// bucket is full again, so forgetting it changes nothing). Thread-safe.
class Buckets {
 public:
  using Clock = std::chrono::steady_clock;
  bool take(const std::string& key, const config::Rate& rate, Clock::time_point now, std::size_t max_entries);
  std::size_t size() const;

 private:
  struct Entry {
    Bucket bucket;
    std::list<std::string>::iterator use;
  };
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> lru_;  // front: least recently used
};

// The client key: the IPv4 address, or the /64 of an IPv6 address (one
// customer's allocation; per-address limits would be trivial to dodge).
std::string client_key(const IpAddr& ip);

// Symbols (all defer): RATELIMIT_CONNECTIONS (421 4.7.0, Errc::RateLimited),
// RATELIMIT_MESSAGES, RATELIMIT_RECIPIENTS, RATELIMIT_USER_MESSAGES,
// RATELIMIT_USER_RECIPIENTS (451 4.7.1, Errc::MessageRateLimited).
// Authenticated sessions count messages and recipients per user instead of
// per client. Clients in ratelimit.whitelist are never limited.
class RateLimitFilter final : public Filter {
 public:
  using Now = Buckets::Clock::time_point (*)();
  RateLimitFilter(const config::Config& cfg, Buckets* buckets, Now now = nullptr);
  std::string_view name() const override { return "ratelimit"; }
  PhaseMask phases() const override { return mask(Phase::Connect) | mask(Phase::MailFrom) | mask(Phase::RcptTo); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

  // The check itself, synchronous.
  void check(Phase phase, ScanContext& ctx);

 private:
  void limit(ScanContext& ctx, const char* symbol, const config::Rate& rate, const std::string& key);

  config::RateLimit cfg_;
  std::unique_ptr<Buckets> own_;
  Buckets* buckets_;
  Now now_;
};

}  // namespace moat::filters::ratelimit

// Runs SPF's check_host() (evaluate.hpp, libspf2) on the blocking pool, its
// DNS questions answered by the daemon's dns::Resolver: each one is spawned
// onto the I/O executor and the pool thread waits for it, so caching,
// timeouts and the upstream are the daemon's and no I/O thread ever blocks.
//
// Outcomes are cached (ResultCache) for as long as the DNS answers they rest
// on live: the same client, HELO and sender domain ask the same questions
// and get the same answers until a TTL runs out, so the result is the same
// (RFC 7208 §4.6.4's limits included). A hit costs no hop to the pool. In
// bench/auth the SPF check had cost 13.5% of throughput, mostly thread hops
// (pool, resolver strand, libunbound's thread, back) for one TXT record.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "filters/spf/evaluate.hpp"

namespace moat::dns {
class Resolver;
}

namespace moat::filters::spf {

namespace asio = boost::asio;

// Outcomes by (client IP, identity, HELO, sender domain); an outcome whose
// records had macros is only reused for the same whole sender. Entries live
// min(Outcome::ttl, kMaxTtl); temperrors are never kept. Thread-safe.
class ResultCache {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kMaxTtl{300};
  static constexpr std::size_t kMaxEntries = 20000;

  std::optional<Outcome> get(const Query& q, Clock::time_point now);
  void put(const Query& q, const Outcome& o, Clock::time_point now);

 private:
  struct Entry {
    Outcome outcome;
    std::string sender;   // of the query that made it (for outcomes with macros)
    Clock::time_point expires;
  };
  static std::string key(const Query& q);
  std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
};

class Checker {
 public:
  // `budget` bounds one check: past it every further DNS question is a
  // temporary failure, so libspf2 ends with temperror instead of waiting on.
  Checker(dns::Resolver& resolver, asio::thread_pool& pool, std::chrono::milliseconds budget);
  asio::awaitable<Outcome> check(Query q);

 private:
  dns::Resolver& resolver_;
  asio::thread_pool& pool_;
  std::chrono::milliseconds budget_;
  ResultCache cache_;
};

// Blocking: asks `resolver` on `io` and waits, at most until `deadline`.
// rrtype: 1 A, 28 AAAA, 15 MX, 16 TXT, 12 PTR (name is the reverse name).
DnsReply ask_resolver(dns::Resolver& resolver, const asio::any_io_executor& io, const std::string& name, int rrtype,
                      std::chrono::steady_clock::time_point deadline);

}  // namespace moat::filters::spf

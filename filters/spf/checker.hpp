// Runs SPF's check_host() (evaluate.hpp, libspf2) on the blocking pool, its
// DNS questions answered by the daemon's dns::Resolver: each one is spawned
// onto the I/O executor and the pool thread waits for it, so caching,
// timeouts and the upstream are the daemon's and no I/O thread ever blocks.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <string>

#include "filters/spf/evaluate.hpp"

namespace moat::dns {
class Resolver;
}

namespace moat::filters::spf {

namespace asio = boost::asio;

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
};

// Blocking: asks `resolver` on `io` and waits, at most until `deadline`.
// rrtype: 1 A, 28 AAAA, 15 MX, 16 TXT, 12 PTR (name is the reverse name).
DnsReply ask_resolver(dns::Resolver& resolver, const asio::any_io_executor& io, const std::string& name, int rrtype,
                      std::chrono::steady_clock::time_point deadline);

}  // namespace moat::filters::spf

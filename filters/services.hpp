// What the daemon lends its filters: the one DNS resolver, the pool for
// blocking C libraries, and objects whose state must outlive a config reload
// (a reload rebuilds every filter; greylist and rate-limit state must not
// reset). Made once in gateway/server.cpp; tests fill in what they use.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <filesystem>

namespace moat::dns {
class Resolver;
}

namespace moat::filters {
namespace dnsbl {
class Cache;
}
namespace greylist {
class Store;
}
namespace ratelimit {
class Buckets;
}

struct Services {
  dns::Resolver* resolver = nullptr;              // null: filters that need DNS refuse to build
  boost::asio::thread_pool* blocking = nullptr;   // null: filters that need it refuse to build
  std::filesystem::path data_dir;                 // for filter databases (greylist, reports)
  // Reputation state that outlives a reload; null: the filter keeps its own.
  dnsbl::Cache* dnsbl_cache = nullptr;
  greylist::Store* greylist = nullptr;
  ratelimit::Buckets* ratelimits = nullptr;
};

}  // namespace moat::filters

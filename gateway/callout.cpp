// See callout.hpp. The probe itself is SmtpTransport::probe_recipient, so
// routing, TLS policy and deadlines are those of real deliveries.
#include "common/text.hpp"
#include "gateway/callout.hpp"

#include <cctype>

#include "common/log.hpp"
#include "common/metrics.hpp"

namespace moat::gateway {

namespace {

struct Counters {
  metrics::Counter& probes = metrics::counter("moat_callout_probes_total", {}, "recipient callouts made");
  metrics::Counter& hits = metrics::counter("moat_callout_cache_hits_total", {}, "callout answers from cache");
  metrics::Counter& tempfail = metrics::counter("moat_callout_tempfail_total", {}, "callouts without an answer");
};
Counters& counters() {
  static Counters c;
  return c;
}

}  // namespace

std::optional<bool> CalloutCache::get(const std::string& key, Clock::time_point now) {
  std::lock_guard lk(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  if (now >= it->second.expires) {
    lru_.erase(it->second.lru);
    map_.erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.exists;
}

void CalloutCache::put(const std::string& key, bool exists, Clock::duration ttl, Clock::time_point now) {
  std::lock_guard lk(mu_);
  if (capacity_ == 0) return;
  if (auto it = map_.find(key); it != map_.end()) {
    lru_.erase(it->second.lru);
    map_.erase(it);
  }
  while (map_.size() >= capacity_) {
    map_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  map_.emplace(key, Entry{exists, now + ttl, lru_.begin()});
}

std::size_t CalloutCache::size() const {
  std::lock_guard lk(mu_);
  return map_.size();
}

CalloutVerifier::CalloutVerifier(asio::any_io_executor ex, dns::Resolver& resolver, ConfigFn config,
                                 asio::ssl::context& tls)
    : CalloutVerifier(std::move(ex), resolver, std::move(config), tls, Options{}) {}

CalloutVerifier::CalloutVerifier(asio::any_io_executor ex, dns::Resolver& resolver, ConfigFn config,
                                 asio::ssl::context& tls, Options opts)
    : opts_(opts), transport_(std::move(ex), resolver, std::move(config), tls, opts.transport),
      cache_(opts.cache_size) {}

asio::awaitable<Result<bool>> CalloutVerifier::verify(const config::RelayDomain& dom, const std::string& address) {
  const std::string key = lower(address);
  if (auto hit = cache_.get(key)) {
    counters().hits.inc();
    co_return *hit;
  }
  counters().probes.inc();
  Destination dest;
  dest.domain = dom.name;
  dest.next_hop = dom.next_hop;
  dest.tls = dom.tls;
  auto reply = co_await transport_.probe_recipient(std::move(dest), address);
  if (!reply) {
    counters().tempfail.inc();
    log::warning("callout for <" + address + ">: " + reply.error().detail);
    co_return Error{Errc::NextHopUnavailable, reply.error().detail};
  }
  if (reply->klass() == 2) {
    cache_.put(key, true, dom.callout_cache_ttl);
    co_return true;
  }
  if (reply->klass() == 5) {
    // Never cache longer than a positive answer would be.
    cache_.put(key, false, std::min<CalloutCache::Clock::duration>(opts_.negative_ttl, dom.callout_cache_ttl));
    co_return false;
  }
  counters().tempfail.inc();
  co_return Error{Errc::NextHopUnavailable, "callout: " + reply->str()};
}

}  // namespace moat::gateway

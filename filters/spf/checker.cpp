// See checker.hpp.
#include "common/text.hpp"
#include "filters/spf/checker.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>
#include <algorithm>
#include <cctype>
#include <future>

#include "common/blocking.hpp"
#include "common/dns/resolver.hpp"
#include "common/metrics.hpp"

namespace moat::filters::spf {
namespace {

metrics::Counter& cache_hits() {
  static metrics::Counter& c = metrics::counter("moat_spf_cache_hits_total", {}, "SPF results reused from the cache");
  return c;
}


template <class T>
DnsReply status_of(const moat::Result<dns::Answer<T>>& r) {
  DnsReply out;
  if (!r) return out;  // TempFail
  out.status = r->nxdomain ? DnsReply::Status::NxDomain : DnsReply::Status::Ok;
  out.ttl = r->ttl;
  return out;
}

// A coroutine of its own (not a capturing lambda: g++ 12 rule); it owns
// copies of what it uses, so a wait that gives up early leaves nothing dangling.
asio::awaitable<DnsReply> ask(dns::Resolver* resolver, std::string name, int rrtype) {
  switch (rrtype) {
    case 1: {
      auto r = co_await resolver->a(name);
      DnsReply out = status_of(r);
      if (r) out.addrs = r->records;
      co_return out;
    }
    case 28: {
      auto r = co_await resolver->aaaa(name);
      DnsReply out = status_of(r);
      if (r) out.addrs = r->records;
      co_return out;
    }
    case 15: {
      auto r = co_await resolver->mx(name);
      DnsReply out = status_of(r);
      if (r)
        for (auto& m : r->records) out.names.push_back(m.host);
      co_return out;
    }
    case 16: {
      auto r = co_await resolver->txt(name);
      DnsReply out = status_of(r);
      if (r) out.names = r->records;
      co_return out;
    }
    case 12: {
      auto r = co_await resolver->query(name, 12);
      DnsReply out;
      if (!r) co_return out;
      out.status = r->nxdomain ? DnsReply::Status::NxDomain : DnsReply::Status::Ok;
      out.ttl = r->ttl;
      for (const auto& rd : r->rdata)
        if (auto n = dns::decode_name(rd)) out.names.push_back(std::move(*n));
      co_return out;
    }
    default: {
      DnsReply out;
      out.status = DnsReply::Status::Ok;  // a type we never use: no data
      out.ttl = kNoDnsTtl;
      co_return out;
    }
  }
}

}  // namespace

DnsReply ask_resolver(dns::Resolver& resolver, const asio::any_io_executor& io, const std::string& name, int rrtype,
                      std::chrono::steady_clock::time_point deadline) {
  try {
    auto fut = asio::co_spawn(io, ask(&resolver, name, rrtype), asio::use_future);
    if (fut.wait_until(deadline) != std::future_status::ready) return DnsReply{};  // TempFail
    return fut.get();
  } catch (const std::exception&) {
    return DnsReply{};  // the I/O context went away (shutdown): TempFail
  }
}

std::string ResultCache::key(const Query& q) {
  const auto at = q.sender.rfind('@');
  const std::string domain = at == std::string::npos ? q.sender : q.sender.substr(at + 1);
  std::string k = q.client.str() + '|' + (q.helo_identity ? "h|" : "m|") + domain_key(q.helo) + '|' + domain_key(domain);
  return k;
}

std::optional<Outcome> ResultCache::get(const Query& q, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = map_.find(key(q));
  if (it == map_.end()) return std::nullopt;
  const Entry& e = it->second;
  if (e.expires <= now) {
    map_.erase(it);
    return std::nullopt;
  }
  // With macros the outcome may rest on the local part (%{l}, %{s}); the
  // entry only stands for the very same sender then.
  if (e.outcome.has_macros && e.sender != q.sender) return std::nullopt;
  Outcome out = e.outcome;
  // The <sender> of check_host() is this query's (the same domain, perhaps
  // another local part); it only shows in the Received-SPF comment.
  if (!q.sender.empty() && !q.helo_identity) {
    const auto at = q.sender.rfind('@');
    out.sender = at == 0 || at == std::string::npos ? "postmaster@" + out.domain : q.sender;  // as evaluate() does
  }
  return out;
}

void ResultCache::put(const Query& q, const Outcome& o, Clock::time_point now) {
  // A temperror is never reused: the next message asks again (and DNS
  // failures inside a check already made o.ttl 0).
  if (o.result == Result::TempError || o.ttl == 0) return;
  const auto ttl = std::min<std::chrono::seconds>(std::chrono::seconds(o.ttl == kNoDnsTtl ? kMaxTtl.count() : o.ttl), kMaxTtl);
  std::lock_guard lock(mu_);
  if (map_.size() >= kMaxEntries) {
    std::erase_if(map_, [now](const auto& kv) { return kv.second.expires <= now; });
    if (map_.size() >= kMaxEntries) map_.clear();  // bounded; a miss only re-evaluates
  }
  map_[key(q)] = Entry{o, q.sender, now + ttl};
}

Checker::Checker(dns::Resolver& resolver, asio::thread_pool& pool, std::chrono::milliseconds budget)
    : resolver_(resolver), pool_(pool), budget_(budget) {}

asio::awaitable<Outcome> Checker::check(Query q) {
  if (auto hit = cache_.get(q, ResultCache::Clock::now())) {
    cache_hits().inc();
    co_return std::move(*hit);
  }
  const asio::any_io_executor io = co_await asio::this_coro::executor;
  const auto deadline = std::chrono::steady_clock::now() + budget_;
  dns::Resolver& resolver = resolver_;
  Lookup lookup = [&resolver, &io, deadline](const std::string& name, int rrtype) {
    return ask_resolver(resolver, io, name, rrtype, deadline);
  };
  Outcome out = co_await run_blocking(pool_, [&] { return evaluate(q, lookup); });
  cache_.put(q, out, ResultCache::Clock::now());
  co_return out;
}

}  // namespace moat::filters::spf

// See checker.hpp.
#include "filters/spf/checker.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>
#include <future>

#include "common/blocking.hpp"
#include "common/dns/resolver.hpp"

namespace moat::filters::spf {
namespace {

template <class T>
DnsReply status_of(const moat::Result<dns::Answer<T>>& r) {
  DnsReply out;
  if (!r) return out;  // TempFail
  out.status = r->nxdomain ? DnsReply::Status::NxDomain : DnsReply::Status::Ok;
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
      for (const auto& rd : r->rdata)
        if (auto n = dns::decode_name(rd)) out.names.push_back(std::move(*n));
      co_return out;
    }
    default: {
      DnsReply out;
      out.status = DnsReply::Status::Ok;  // a type we never use: no data
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

Checker::Checker(dns::Resolver& resolver, asio::thread_pool& pool, std::chrono::milliseconds budget)
    : resolver_(resolver), pool_(pool), budget_(budget) {}

asio::awaitable<Outcome> Checker::check(Query q) {
  const asio::any_io_executor io = co_await asio::this_coro::executor;
  const auto deadline = std::chrono::steady_clock::now() + budget_;
  dns::Resolver& resolver = resolver_;
  Lookup lookup = [&resolver, &io, deadline](const std::string& name, int rrtype) {
    return ask_resolver(resolver, io, name, rrtype, deadline);
  };
  Outcome out = co_await run_blocking(pool_, [&] { return evaluate(q, lookup); });
  co_return out;
}

}  // namespace moat::filters::spf

// See resolver.hpp. libunbound runs its own worker thread (ub_ctx_async(ctx,
// 1): no fork inside a threaded daemon) and signals finished queries on
// ub_fd(); a reader coroutine on a strand waits on that fd and calls
// ub_process(), which runs our callbacks on the same strand. Every query is
// a coroutine on that strand too, so the ub_ctx, the per-query timers and
// the callbacks never run concurrently although io_context has many threads.
//
// Answers are cached in front of all that (Impl::Cache): a profile of the
// sender checks (bench/auth) showed each question answered from libunbound's
// own cache still costing a strand hop, a round trip through libunbound's
// worker thread and its pipe, and a wake-up of the reader — several context
// switches per question, four questions per message. A hit in our cache is a
// map lookup under a mutex on the caller's thread.
#include "common/dns/resolver.hpp"

#include <unbound.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/text.hpp"

namespace moat::dns {

namespace {

constexpr int kTypeA = 1, kTypePtr = 12, kTypeMx = 15, kTypeTxt = 16, kTypeAaaa = 28;
constexpr int kRcodeNxdomain = 3;

struct Counters {
  metrics::Counter& queries = metrics::counter("moat_dns_queries_total", {}, "DNS queries sent");
  metrics::Counter& tempfail = metrics::counter("moat_dns_tempfail_total", {}, "DNS queries that failed temporarily");
  metrics::Counter& timeouts = metrics::counter("moat_dns_timeouts_total", {}, "DNS queries over their deadline");
  metrics::Counter& cache_hits = metrics::counter("moat_dns_cache_hits_total", {}, "DNS answers from the daemon's cache");
};
Counters& counters() {
  static Counters c;
  return c;
}

// One outstanding query; lives in the awaiting coroutine's frame.
struct Pending {
  explicit Pending(asio::any_io_executor ex) : timer(std::move(ex)) {}
  asio::steady_timer timer;
  bool done = false;
  Result<RawAnswer> result{Errc::DnsTempFail, "no answer"};
};

// Answers by (name, type), each until its TTL runs out. Names compare
// without case and without a final dot (RFC 4343), as DNS does.
class Cache {
 public:
  using Clock = std::chrono::steady_clock;

  std::optional<RawAnswer> get(const std::string& name, int type) {
    const auto now = Clock::now();
    std::lock_guard lock(mu_);
    auto it = map_.find(key(name, type));
    if (it == map_.end()) return std::nullopt;
    if (it->second.expires <= now) {
      map_.erase(it);
      return std::nullopt;
    }
    RawAnswer out = it->second.answer;
    // What is left of the TTL, so whoever caches this in turn (SPF) stays
    // within the record's lifetime; at least 1 while the entry is live.
    out.ttl = static_cast<std::uint32_t>(
        std::max<long long>(1, std::chrono::duration_cast<std::chrono::seconds>(it->second.expires - now).count()));
    return out;
  }

  void put(const std::string& name, int type, const RawAnswer& answer) {
    const auto ttl = std::min<std::chrono::seconds>(std::chrono::seconds(answer.ttl), kMaxCacheTtl);
    if (ttl.count() <= 0) return;
    const auto now = Clock::now();
    std::lock_guard lock(mu_);
    if (map_.size() >= kMaxCacheEntries) {
      std::erase_if(map_, [now](const auto& kv) { return kv.second.expires <= now; });
      // Still full of live entries: start over rather than track ages; a
      // miss only costs a question to libunbound, whose cache still has it.
      if (map_.size() >= kMaxCacheEntries) map_.clear();
    }
    map_[key(name, type)] = Entry{answer, now + ttl};
  }

 private:
  struct Entry {
    RawAnswer answer;
    Clock::time_point expires;
  };
  static std::string key(const std::string& name, int type) {
    std::string k = domain_key(name);
    return k + "/" + std::to_string(type);
  }
  std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
};

}  // namespace

std::optional<std::string> decode_name(std::string_view wire) {
  std::string out;
  std::size_t i = 0;
  while (true) {
    if (i >= wire.size()) return std::nullopt;
    auto len = static_cast<unsigned char>(wire[i++]);
    if (len == 0) break;
    if (len > 63 || i + len > wire.size()) return std::nullopt;  // also refuses compression pointers
    if (!out.empty()) out += '.';
    out.append(wire.substr(i, len));
    i += len;
    if (out.size() > 255) return std::nullopt;
  }
  return lower(out);
}

std::string reverse_name(const IpAddr& ip) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  if (ip.v4) {
    for (int i = 15; i >= 12; --i) out += std::to_string(ip.b[std::size_t(i)]) + ".";
    return out + "in-addr.arpa";
  }
  for (int i = 15; i >= 0; --i) {
    auto byte = ip.b[std::size_t(i)];
    out += kHex[byte & 0xf];
    out += '.';
    out += kHex[byte >> 4];
    out += '.';
  }
  return out + "ip6.arpa";
}

struct Resolver::Impl : std::enable_shared_from_this<Resolver::Impl> {
  Impl(asio::io_context& io, const config::Dns& cfg)
      : strand(asio::make_strand(io)), fd(strand), timeout(cfg.timeout) {
    ctx = ub_ctx_create();
    if (!ctx) {
      log::error("dns: ub_ctx_create failed");
      return;
    }
    // Forwarding to a resolver on loopback (tests, a local unbound) is
    // refused by default.
    ub_ctx_set_option(ctx, "do-not-query-localhost:", "no");
    // We only forward, so the upstream decides about private and
    // documentation reverse zones (RFC 1918, 2001:db8::/32); libunbound
    // would otherwise answer NXDOMAIN for them itself, and SPF's ptr and %{p}
    // for clients in private networks could never match (RFC 7208 §5.5).
    ub_ctx_set_option(ctx, "unblock-lan-zones:", "yes");
    ub_ctx_set_option(ctx, "insecure-lan-zones:", "yes");
    ub_ctx_set_option(ctx, "local-zone:", "8.b.d.0.1.0.0.2.ip6.arpa. nodefault");
    int rc = 0;
    if (cfg.upstream) rc = ub_ctx_set_fwd(ctx, (cfg.upstream->host + "@" + std::to_string(cfg.upstream->port)).c_str());
    else rc = ub_ctx_resolvconf(ctx, nullptr);
    if (rc == 0) rc = ub_ctx_async(ctx, 1);
    if (rc != 0) {
      log::error(std::string("dns: resolver set-up failed: ") + ub_strerror(rc));
      return;
    }
    int ufd = ub_fd(ctx);
    if (ufd < 0) {
      log::error("dns: ub_fd failed");
      return;
    }
    fd.assign(ufd);
    ok = true;
  }

  ~Impl() {
    if (fd.is_open()) (void)fd.release();  // libunbound owns the descriptor
    if (ctx) ub_ctx_delete(ctx);
  }

  void start() {
    if (ok) asio::co_spawn(strand, reader(shared_from_this()), asio::detached);
  }

  void stop() {
    asio::post(strand, [self = shared_from_this()] {
      boost::system::error_code ec;
      self->fd.cancel(ec);
    });
  }

  static asio::awaitable<void> reader(std::shared_ptr<Impl> self) {
    while (true) {
      auto [ec] = co_await self->fd.async_wait(asio::posix::stream_descriptor::wait_read,
                                                asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      if (int rc = ub_process(self->ctx); rc != 0) log::warning(std::string("dns: ub_process: ") + ub_strerror(rc));
    }
  }

  static void on_result(void* data, int err, ub_result* r) {
    auto* p = static_cast<Pending*>(data);
    p->done = true;
    if (err != 0) {
      p->result = Error{Errc::DnsTempFail, ub_strerror(err)};
    } else if (r->rcode != 0 && r->rcode != kRcodeNxdomain) {
      p->result = Error{Errc::DnsTempFail, "rcode " + std::to_string(r->rcode) + " for " + r->qname};
    } else {
      RawAnswer ans;
      ans.nxdomain = r->nxdomain != 0 || r->rcode == kRcodeNxdomain;
      ans.ttl = r->ttl > 0 ? static_cast<std::uint32_t>(r->ttl) : 0;
      if (r->havedata)
        for (int i = 0; r->data[i]; ++i) ans.rdata.emplace_back(r->data[i], std::size_t(r->len[i]));
      p->result = std::move(ans);
    }
    if (r) ub_resolve_free(r);
    p->timer.cancel();
  }

  // Runs on the strand.
  asio::awaitable<Result<RawAnswer>> run(std::string name, int type) {
    if (!ok) co_return Error{Errc::DnsTempFail, "resolver not available"};
    counters().queries.inc();
    Pending p(strand);
    p.timer.expires_after(timeout);
    int id = 0;
    int rc = ub_resolve_async(ctx, name.c_str(), type, 1, &p, &Impl::on_result, &id);
    if (rc != 0) {
      counters().tempfail.inc();
      co_return Error{Errc::DnsTempFail, ub_strerror(rc)};
    }
    if (!p.done) (void)co_await p.timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!p.done) {
      ub_cancel(ctx, id);  // after this the callback never runs, so p may go
      counters().timeouts.inc();
      counters().tempfail.inc();
      co_return Error{Errc::DnsTempFail, "timeout resolving " + name};
    }
    if (!p.result) counters().tempfail.inc();
    else cache.put(name, type, *p.result);
    co_return std::move(p.result);
  }

  asio::strand<asio::io_context::executor_type> strand;
  asio::posix::stream_descriptor fd;
  config::Seconds timeout;
  ub_ctx* ctx = nullptr;
  bool ok = false;
  Cache cache;
};

Resolver::Resolver(asio::io_context& io, const config::Dns& cfg) : impl_(std::make_shared<Impl>(io, cfg)) {
  impl_->start();
}

Resolver::~Resolver() { impl_->stop(); }

namespace {
// co_spawn needs a default-constructible result; Result<T> is not.
asio::awaitable<std::optional<Result<RawAnswer>>> run_opt(std::shared_ptr<Resolver::Impl> impl, std::string name,
                                                          int rrtype);
}  // namespace

asio::awaitable<Result<RawAnswer>> Resolver::query(std::string name, int rrtype) {
  if (auto hit = impl_->cache.get(name, rrtype)) {
    counters().cache_hits.inc();
    co_return std::move(*hit);
  }
  auto r = co_await asio::co_spawn(impl_->strand, run_opt(impl_, std::move(name), rrtype), asio::use_awaitable);
  co_return std::move(*r);
}

namespace {
asio::awaitable<std::optional<Result<RawAnswer>>> run_opt(std::shared_ptr<Resolver::Impl> impl, std::string name,
                                                          int rrtype) {
  co_return co_await impl->run(std::move(name), rrtype);
}
}  // namespace

asio::awaitable<Result<Answer<MxRecord>>> Resolver::mx(std::string name) {
  auto raw = co_await query(std::move(name), kTypeMx);
  if (!raw) co_return raw.error();
  Answer<MxRecord> out;
  out.nxdomain = raw->nxdomain;
  out.ttl = raw->ttl;
  for (const auto& rd : raw->rdata) {
    if (rd.size() < 3) continue;
    auto host = decode_name(std::string_view(rd).substr(2));
    if (!host) continue;
    unsigned pref = unsigned(static_cast<unsigned char>(rd[0])) << 8 | static_cast<unsigned char>(rd[1]);
    out.records.push_back({pref, std::move(*host)});
  }
  co_return out;
}

namespace {
Answer<IpAddr> decode_addrs(const RawAnswer& raw, bool v4) {
  Answer<IpAddr> out;
  out.nxdomain = raw.nxdomain;
  out.ttl = raw.ttl;
  for (const auto& rd : raw.rdata) {
    IpAddr ip;
    ip.v4 = v4;
    if (v4 && rd.size() == 4) {
      ip.b[10] = ip.b[11] = 0xff;
      for (std::size_t i = 0; i < 4; ++i) ip.b[12 + i] = static_cast<std::uint8_t>(rd[i]);
    } else if (!v4 && rd.size() == 16) {
      for (std::size_t i = 0; i < 16; ++i) ip.b[i] = static_cast<std::uint8_t>(rd[i]);
    } else {
      continue;
    }
    out.records.push_back(ip);
  }
  return out;
}
}  // namespace

asio::awaitable<Result<Answer<IpAddr>>> Resolver::a(std::string name) {
  auto raw = co_await query(std::move(name), kTypeA);
  if (!raw) co_return raw.error();
  co_return decode_addrs(*raw, true);
}

asio::awaitable<Result<Answer<IpAddr>>> Resolver::aaaa(std::string name) {
  auto raw = co_await query(std::move(name), kTypeAaaa);
  if (!raw) co_return raw.error();
  co_return decode_addrs(*raw, false);
}

asio::awaitable<Result<Answer<IpAddr>>> Resolver::a_aaaa(std::string name) {
  using namespace asio::experimental::awaitable_operators;
  auto [r4, r6] = co_await (a(name) && aaaa(name));
  if (!r4 && !r6) co_return r4.error();
  Answer<IpAddr> out;
  out.nxdomain = (r4 && r4->nxdomain) || (r6 && r6->nxdomain);
  out.ttl = r4 && r6 ? std::min(r4->ttl, r6->ttl) : r4 ? r4->ttl : r6->ttl;
  if (r4) out.records = r4->records;
  if (r6) out.records.insert(out.records.end(), r6->records.begin(), r6->records.end());
  // One family failing and the other empty is not a safe "no address".
  if (out.records.empty() && (!r4 || !r6)) co_return (!r4 ? r4 : r6).error();
  co_return out;
}

asio::awaitable<Result<Answer<std::string>>> Resolver::txt(std::string name) {
  auto raw = co_await query(std::move(name), kTypeTxt);
  if (!raw) co_return raw.error();
  Answer<std::string> out;
  out.nxdomain = raw->nxdomain;
  out.ttl = raw->ttl;
  for (const auto& rd : raw->rdata) {
    std::string s;
    std::size_t i = 0;
    while (i < rd.size()) {
      auto len = static_cast<unsigned char>(rd[i++]);
      if (i + len > rd.size()) break;
      s.append(rd, i, len);
      i += len;
    }
    out.records.push_back(std::move(s));
  }
  co_return out;
}

asio::awaitable<Result<Answer<std::string>>> Resolver::ptr(IpAddr ip) {
  auto raw = co_await query(reverse_name(ip), kTypePtr);
  if (!raw) co_return raw.error();
  Answer<std::string> out;
  out.nxdomain = raw->nxdomain;
  out.ttl = raw->ttl;
  for (const auto& rd : raw->rdata)
    if (auto n = decode_name(rd)) out.records.push_back(std::move(*n));
  co_return out;
}

}  // namespace moat::dns

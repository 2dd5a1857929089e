// DNSBL and RHSBL checks (see dnsbl.hpp; RFC 5782). Lookups of one phase run
// in parallel, so a slow list costs one DNS timeout, not one per zone.
#include "filters/dnsbl/dnsbl.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cctype>

#include "common/dns/resolver.hpp"
#include "common/gather.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/text.hpp"

namespace moat::filters::dnsbl {
namespace {

struct Counters {
  metrics::Counter& lookups = metrics::counter("moat_dnsbl_lookups_total", {}, "DNSBL/RHSBL queries sent");
  metrics::Counter& cached = metrics::counter("moat_dnsbl_cache_hits_total", {}, "DNSBL/RHSBL answers from the cache");
  metrics::Counter& errors = metrics::counter("moat_dnsbl_errors_total", {}, "DNSBL/RHSBL lookups that failed (skipped)");
  metrics::Counter& listed = metrics::counter("moat_dnsbl_listed_total", {}, "DNSBL/RHSBL listings found");
};
Counters& counters() {
  static Counters c;
  return c;
}

IpAddr v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return *parse_ip(std::to_string(a) + "." + std::to_string(b) + "." + std::to_string(c) + "." + std::to_string(d));
}

bool in_range(const IpAddr& ip, const IpAddr& lo, const IpAddr& hi) { return lo.b <= ip.b && ip.b <= hi.b; }

// One query's outcome; default-constructible for co_spawn.
struct Lookup {
  bool ok = false;
  std::vector<IpAddr> records;
  std::string error;
};

// A free coroutine: it references only the daemon's resolver, never the
// filter, which a reload may destroy.
asio::awaitable<Lookup> lookup(dns::Resolver* resolver, std::string qname) {
  auto a = co_await resolver->a(qname);
  Lookup out;
  if (!a) {
    out.error = a.error().detail;
    co_return out;
  }
  out.ok = true;
  out.records = std::move(a->records);  // empty for NXDOMAIN and NODATA: not listed
  co_return out;
}

// The lookup under the filter's own deadline, shorter than its pipeline
// budget: a list that does not answer in time is an error like any other
// (skipped), instead of the whole filter running over its budget.
asio::awaitable<Lookup> lookup_within(dns::Resolver* resolver, std::string qname, std::chrono::milliseconds deadline) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
  auto r = co_await (lookup(resolver, std::move(qname)) || timer.async_wait(asio::use_awaitable));
  if (r.index() == 0) co_return std::get<0>(std::move(r));
  Lookup out;
  out.error = "no answer within " + std::to_string(deadline.count()) + "ms";
  co_return out;
}

// Client-supplied names in symbol details go to logs and headers: printable, bounded.
std::string safe(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) out += (c > 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace

std::string ip_query(const IpAddr& ip, std::string_view zone) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  if (ip.v4) {
    for (int i = 15; i >= 12; --i) out += std::to_string(ip.b[std::size_t(i)]) + ".";
  } else {
    for (int i = 15; i >= 0; --i) {
      auto byte = ip.b[std::size_t(i)];
      out += kHex[byte & 0xf];
      out += '.';
      out += kHex[byte >> 4];
      out += '.';
    }
  }
  return out + std::string(zone);
}

std::optional<std::string> domain_query(std::string_view domain, std::string_view zone) {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  if (!config::is_domain_name(domain) || domain.find('.') == std::string_view::npos) return std::nullopt;
  std::string q = lower(domain) + "." + std::string(zone);
  if (q.size() > 253) return std::nullopt;
  return q;
}

Match match(const std::vector<IpAddr>& records, const config::DnsblZone& zone) {
  static const IpAddr kLo = v4(127, 0, 0, 2), kHi = v4(127, 255, 255, 254);
  static const IpAddr kErrLo = v4(127, 255, 255, 0), kErrHi = v4(127, 255, 255, 255);
  Match m;
  for (const auto& r : records) {
    if (!r.v4) continue;
    if (!zone.answers.empty()) {
      for (const auto& [lo, hi] : zone.answers)
        if (in_range(r, lo, hi)) return Match{Outcome::Listed, r};
      continue;
    }
    if (in_range(r, kErrLo, kErrHi)) {
      m = Match{Outcome::Error, r};
      continue;
    }
    if (in_range(r, kLo, kHi)) return Match{Outcome::Listed, r};
  }
  return m;
}

// ---- Cache ----

std::optional<std::vector<IpAddr>> Cache::get(const std::string& qname, std::chrono::seconds ttl,
                                              Clock::time_point now) {
  std::lock_guard lk(mu_);
  auto it = map_.find(qname);
  if (it == map_.end() || now - it->second.stored >= ttl) return std::nullopt;
  return it->second.records;
}

void Cache::put(const std::string& qname, std::vector<IpAddr> records, Clock::time_point now,
                std::size_t max_entries) {
  std::lock_guard lk(mu_);
  if (auto it = map_.find(qname); it != map_.end()) {
    order_.erase(it->second.age);
    map_.erase(it);
  }
  if (max_entries == 0) return;
  while (map_.size() >= max_entries) {
    map_.erase(order_.front());
    order_.pop_front();
  }
  order_.push_back(qname);
  map_.emplace(qname, Entry{std::move(records), now, std::prev(order_.end())});
}

std::size_t Cache::size() const {
  std::lock_guard lk(mu_);
  return map_.size();
}

// ---- Filter ----

DnsblFilter::DnsblFilter(const config::Config& cfg, dns::Resolver* resolver, Cache* cache,
                         std::chrono::milliseconds budget)
    : cfg_(cfg.dnsbl), exempt_(cfg.relay.networks), resolver_(resolver), cache_(cache), deadline_(budget * 4 / 5) {
  if (!cache_) {
    own_cache_ = std::make_unique<Cache>();
    cache_ = own_cache_.get();
  }
}

PhaseMask DnsblFilter::phases() const {
  bool ip = false, domain = false;
  for (const auto& z : cfg_.zones) (z.domain ? domain : ip) = true;
  PhaseMask m = 0;
  if (ip) m |= mask(Phase::Connect);
  if (domain) m |= mask(Phase::Helo);
  if (ip || domain) m |= mask(Phase::MailFrom);
  return m;
}

bool DnsblFilter::exempt(const ScanContext& ctx, Phase phase) const {
  const auto& c = ctx.envelope.client;
  if (phase == Phase::MailFrom && !c.auth_user.empty()) return true;
  return std::any_of(exempt_.begin(), exempt_.end(), [&](const Cidr& n) { return n.contains(c.ip); });
}

std::vector<DnsblFilter::Query> DnsblFilter::queries(Phase phase, const ScanContext& ctx) const {
  const auto& client = ctx.envelope.client;
  std::string sender_domain;
  if (auto at = ctx.envelope.sender.rfind('@'); at != std::string::npos) sender_domain = ctx.envelope.sender.substr(at + 1);
  std::vector<Query> out;
  for (const auto& z : cfg_.zones) {
    if (!z.domain) {
      if (phase == Phase::Connect || phase == Phase::MailFrom)
        out.push_back(Query{&z, client.ip.str(), ip_query(client.ip, z.zone)});
      continue;
    }
    if (phase == Phase::Helo || phase == Phase::MailFrom)
      if (auto q = domain_query(client.helo, z.zone)) out.push_back(Query{&z, "helo " + safe(lower(client.helo)), *q});
    if (phase == Phase::MailFrom)
      if (auto q = domain_query(sender_domain, z.zone)) out.push_back(Query{&z, "from " + safe(lower(sender_domain)), *q});
  }
  return out;
}

// The A records of each query, from the cache or the resolver; nullopt where
// the lookup failed.
asio::awaitable<std::vector<std::optional<std::vector<IpAddr>>>> DnsblFilter::lookup_all(const std::vector<Query>& qs) {
  const auto now = Cache::Clock::now();
  std::vector<std::optional<std::vector<IpAddr>>> out(qs.size());
  std::vector<asio::awaitable<Lookup>> lookups;
  std::vector<std::size_t> sent;  // op index -> query index
  for (std::size_t i = 0; i < qs.size(); ++i) {
    if (auto hit = cache_->get(qs[i].qname, cfg_.cache_ttl, now)) {
      counters().cached.inc();
      out[i] = std::move(*hit);
      continue;
    }
    counters().lookups.inc();
    lookups.push_back(lookup_within(resolver_, qs[i].qname, deadline_));
    sent.push_back(i);
  }
  auto results = co_await gather(std::move(lookups));
  for (std::size_t k = 0; k < sent.size(); ++k) {
    const auto& q = qs[sent[k]];
    if (!results[k] || !results[k]->ok) {
      counters().errors.inc();
      log::warning("dnsbl: lookup of " + q.qname + " failed, skipped (" +
                   (results[k] ? results[k]->error : std::string("exception")) + ")");
      continue;
    }
    cache_->put(q.qname, results[k]->records, now, cfg_.cache_size);
    out[sent[k]] = std::move(results[k]->records);
  }
  co_return out;
}

asio::awaitable<Status> DnsblFilter::run(Phase phase, ScanContext& ctx) {
  if (exempt(ctx, phase)) co_return Status{};
  auto qs = queries(phase, ctx);
  if (qs.empty()) co_return Status{};
  if (!resolver_) co_return Status(Errc::ScanUnavailable, "dnsbl: no resolver");
  auto answers = co_await lookup_all(qs);
  // One symbol per zone; its detail names every listed item.
  std::vector<std::pair<const config::DnsblZone*, std::string>> hits;
  for (std::size_t i = 0; i < qs.size(); ++i) {
    if (!answers[i]) continue;
    Match m = match(*answers[i], *qs[i].zone);
    if (m.outcome == Outcome::Error) {
      counters().errors.inc();
      log::warning("dnsbl: " + qs[i].zone->zone + " answered " + m.answer.str() + " for " + qs[i].qname +
                   " (an error code, not a listing; skipped)");
      continue;
    }
    if (m.outcome != Outcome::Listed) continue;
    counters().listed.inc();
    std::string item = qs[i].what + " " + m.answer.str();
    auto it = std::find_if(hits.begin(), hits.end(), [&](auto& h) { return h.first == qs[i].zone; });
    if (it == hits.end())
      hits.emplace_back(qs[i].zone, item);
    else
      it->second += ", " + item;
  }
  for (auto& [zone, detail] : hits)
    if (!ctx.has(zone->symbol)) ctx.add(zone->symbol, detail);
  co_return Status{};
}

}  // namespace moat::filters::dnsbl

// Token-bucket rate limits (see ratelimit.hpp).
#include "filters/ratelimit/ratelimit.hpp"

#include <algorithm>
#include <cctype>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/text.hpp"

namespace moat::filters::ratelimit {
namespace {

metrics::Counter& hits(std::string_view symbol) {
  // One counter per limit; the label is the symbol in lower case.
  const std::string label = "limit=\"" + lower(symbol.substr(std::string_view("RATELIMIT_").size())) + "\"";
  return metrics::counter("moat_ratelimit_hits_total", label, "Events refused by a rate limit");
}

}  // namespace

bool take(Bucket& b, const config::Rate& rate, std::chrono::steady_clock::time_point now) {
  const double cap = rate.count;
  const double per_second = cap / double(rate.period.count());
  if (now > b.last) {
    b.tokens = std::min(cap, b.tokens + std::chrono::duration<double>(now - b.last).count() * per_second);
    b.last = now;
  }
  b.tokens = std::min(b.tokens, cap);  // the rate may have shrunk on reload
  if (b.tokens < 1.0 - 1e-9) return false;  // refills in floating point: 6 s * 10/60 is 0.999...
  b.tokens -= 1.0;
  return true;
}

bool Buckets::take(const std::string& key, const config::Rate& rate, Clock::time_point now, std::size_t max_entries) {
  std::lock_guard lk(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) {
    while (!lru_.empty() && map_.size() >= std::max<std::size_t>(max_entries, 1)) {
      map_.erase(lru_.front());
      lru_.pop_front();
    }
    lru_.push_back(key);
    it = map_.emplace(key, Entry{Bucket{double(rate.count), now}, std::prev(lru_.end())}).first;
  } else {
    lru_.splice(lru_.end(), lru_, it->second.use);
  }
  return ratelimit::take(it->second.bucket, rate, now);
}

std::size_t Buckets::size() const {
  std::lock_guard lk(mu_);
  return map_.size();
}

std::string client_key(const IpAddr& ip) {
  if (ip.v4) return ip.str();
  IpAddr net = ip;
  std::fill(net.b.begin() + 8, net.b.end(), 0);
  return net.str() + "/64";
}

RateLimitFilter::RateLimitFilter(const config::Config& cfg, Buckets* buckets, Now now)
    : cfg_(cfg.ratelimit), buckets_(buckets), now_(now ? now : &Buckets::Clock::now) {
  if (!buckets_) {
    own_ = std::make_unique<Buckets>();
    buckets_ = own_.get();
  }
}

asio::awaitable<Status> RateLimitFilter::run(Phase phase, ScanContext& ctx) {
  check(phase, ctx);
  co_return Status{};
}

void RateLimitFilter::limit(ScanContext& ctx, const char* symbol, const config::Rate& rate, const std::string& key) {
  if (!rate.enabled()) return;
  if (buckets_->take(std::string(symbol) + " " + key, rate, now_(), cfg_.max_entries)) return;
  hits(symbol).inc();
  ctx.add(symbol, std::to_string(rate.count) + " per " + std::to_string(rate.period.count()) + "s");
}

void RateLimitFilter::check(Phase phase, ScanContext& ctx) {
  const auto& client = ctx.envelope.client;
  if (std::any_of(cfg_.whitelist.begin(), cfg_.whitelist.end(), [&](const Cidr& n) { return n.contains(client.ip); }))
    return;
  const std::string user = lower(client.auth_user);
  const std::string ip = client_key(client.ip);
  switch (phase) {
    case Phase::Connect:
      limit(ctx, "RATELIMIT_CONNECTIONS", cfg_.connections, ip);
      break;
    case Phase::MailFrom:
      if (user.empty())
        limit(ctx, "RATELIMIT_MESSAGES", cfg_.messages, ip);
      else
        limit(ctx, "RATELIMIT_USER_MESSAGES", cfg_.user_messages, user);
      break;
    case Phase::RcptTo:
      if (user.empty())
        limit(ctx, "RATELIMIT_RECIPIENTS", cfg_.recipients, ip);
      else
        limit(ctx, "RATELIMIT_USER_RECIPIENTS", cfg_.user_recipients, user);
      break;
    default:
      break;
  }
}

}  // namespace moat::filters::ratelimit

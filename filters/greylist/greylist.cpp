// Greylisting state machine and filter (see greylist.hpp; RFC 6647 §2.1, the
// triplet of Harris's original paper; auto-allow as in postgrey).
#include "filters/greylist/greylist.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>

#include "common/blocking.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/text.hpp"

namespace moat::filters::greylist {
namespace {

metrics::Counter& outcome_counter(Outcome o) {
  static metrics::Counter* c[] = {
      &metrics::counter("moat_greylist_total", "result=\"new\"", "Greylisting decisions"),
      &metrics::counter("moat_greylist_total", "result=\"too_early\""),
      &metrics::counter("moat_greylist_total", "result=\"passed\""),
      &metrics::counter("moat_greylist_total", "result=\"known\""),
      &metrics::counter("moat_greylist_total", "result=\"auto_allowed\""),
  };
  return *c[int(o)];
}
metrics::Counter& skipped() {
  static auto& c = metrics::counter("moat_greylist_total", "result=\"skipped\"");
  return c;
}

// Migration i takes user_version i to i+1; append only. IF NOT EXISTS: files
// made before versioning have these tables at version 0.
constexpr std::array<const char*, 1> kMigrations{
    "CREATE TABLE IF NOT EXISTS triplet(net TEXT NOT NULL, sender TEXT NOT NULL, rcpt TEXT NOT NULL,"
    " first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, passed INTEGER NOT NULL,"
    " PRIMARY KEY(net, sender, rcpt)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS client(net TEXT PRIMARY KEY NOT NULL, retries INTEGER NOT NULL,"
    " last_seen INTEGER NOT NULL) WITHOUT ROWID;",
};

}  // namespace

std::string_view outcome_name(Outcome o) {
  switch (o) {
    case Outcome::New: return "new";
    case Outcome::TooEarly: return "too_early";
    case Outcome::Passed: return "passed";
    case Outcome::Known: return "known";
    case Outcome::AutoAllowed: return "auto_allowed";
  }
  return "?";
}

std::string network_of(const IpAddr& ip, unsigned v4_prefix, unsigned v6_prefix) {
  unsigned prefix = ip.v4 ? 96 + std::min(v4_prefix, 32u) : std::min(v6_prefix, 128u);
  IpAddr net = ip;
  for (unsigned i = 0; i < 16; ++i) {
    unsigned keep = prefix > i * 8 ? std::min(8u, prefix - i * 8) : 0;
    net.b[i] &= static_cast<std::uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
  return net.str() + "/" + std::to_string(ip.v4 ? prefix - 96 : prefix);
}

// ---- Store ----

Store::Store(std::filesystem::path file) : file_(std::move(file)) {}

Store::~Store() = default;

Status Store::open_locked() {
  if (db_.is_open()) return {};
  sqlite::Options o;
  o.label = "greylist db";
  o.errc = Errc::TempFailure;
  // NORMAL: a power loss may forget the last few triplets, which only means
  // greylisting them once more; an fsync per RCPT is not worth that.
  o.pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;";
  o.migrations = kMigrations;
  auto db = sqlite::Db::open(file_, std::move(o));
  if (!db) return db.error();
  db_ = std::move(*db);
  return {};
}

Result<Outcome> Store::check(const Triplet& t, const config::Greylist& policy, std::int64_t now) {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  return check_locked(t, policy, now);
}

Result<Outcome> Store::check_locked(const Triplet& t, const config::Greylist& p, std::int64_t now) {
  auto tx = db_.transaction();
  if (!tx) return tx.error();
  const std::int64_t delay = p.delay.count(), window = p.retry_window.count(), expiry = p.expiry.count();

  if (p.auto_allow_after > 0) {
    auto q = db_.cached("SELECT retries, last_seen FROM client WHERE net = ?1");
    auto row = q.bind(1, t.network).step();
    if (!row) return row.error();
    if (*row && q.integer(0) >= p.auto_allow_after && q.integer(1) + expiry >= now) {
      q.reset();
      auto refresh = db_.cached("UPDATE client SET last_seen = ?2 WHERE net = ?1").bind(1, t.network).bind(2, now).run();
      if (!refresh) return refresh.error();
      if (auto st = tx->commit(); !st) return st.error();
      return Outcome::AutoAllowed;
    }
  }

  auto q = db_.cached("SELECT first_seen, last_seen, passed FROM triplet WHERE net = ?1 AND sender = ?2 AND rcpt = ?3");
  auto row = q.bind(1, t.network).bind(2, t.sender).bind(3, t.recipient).step();
  if (!row) return row.error();
  Outcome out = Outcome::New;
  if (*row) {
    const std::int64_t first = q.integer(0), last = q.integer(1);
    const bool passed = q.integer(2) != 0;
    if (passed)
      out = last + expiry >= now ? Outcome::Known : Outcome::New;
    else if (now < first + delay)
      out = Outcome::TooEarly;
    else
      out = now <= first + window ? Outcome::Passed : Outcome::New;  // too late: start over
  }
  q.reset();
  // New starts the clock; every other outcome keeps first_seen.
  const bool passes = out == Outcome::Passed || out == Outcome::Known;
  auto w = db_.cached(
      "INSERT INTO triplet(net, sender, rcpt, first_seen, last_seen, passed) VALUES (?1, ?2, ?3, ?4, ?4, ?5) "
      "ON CONFLICT(net, sender, rcpt) DO UPDATE SET last_seen = ?4, passed = ?5, "
      "first_seen = CASE WHEN ?6 THEN ?4 ELSE first_seen END");
  w.bind(1, t.network).bind(2, t.sender).bind(3, t.recipient).bind(4, now).bind(5, passes).bind(6, out == Outcome::New);
  if (auto st = w.run(); !st) return st.error();
  if (out == Outcome::Passed) {
    auto c = db_.cached(
        "INSERT INTO client(net, retries, last_seen) VALUES (?1, 1, ?2) "
        "ON CONFLICT(net) DO UPDATE SET retries = retries + 1, last_seen = ?2");
    if (auto st = c.bind(1, t.network).bind(2, now).run(); !st) return st.error();
  }
  if (auto st = tx->commit(); !st) return st.error();
  return out;
}

Result<std::int64_t> Store::cleanup(const config::Greylist& p, std::int64_t now) {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  last_cleanup_ = now;
  auto t = db_.prepare(
      "DELETE FROM triplet WHERE (passed = 0 AND first_seen + ?1 < ?3) OR (passed = 1 AND last_seen + ?2 < ?3)");
  if (auto st = t.bind(1, p.retry_window.count()).bind(2, p.expiry.count()).bind(3, now).run(); !st)
    return st.error();
  std::int64_t n = db_.changes();
  auto c = db_.prepare("DELETE FROM client WHERE last_seen + ?1 < ?2");
  if (auto st = c.bind(1, p.expiry.count()).bind(2, now).run(); !st) return st.error();
  return n + db_.changes();
}

void Store::maybe_cleanup(const config::Greylist& policy, std::int64_t now, std::int64_t every) {
  {
    std::lock_guard lk(mu_);
    if (now - last_cleanup_ < every) return;
  }
  auto r = cleanup(policy, now);
  if (!r)
    log::warning(r.error().detail);
  else if (*r > 0)
    log::info("greylist: expired " + std::to_string(*r) + " entries");
}

Result<std::int64_t> Store::count_triplets() {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  auto q = db_.prepare("SELECT count(*) FROM triplet");
  auto row = q.step();
  if (!row) return row.error();
  return q.integer(0);
}

// ---- Filter ----

GreylistFilter::GreylistFilter(const config::Config& cfg, Store* store, boost::asio::thread_pool* pool, Clock clock)
    : cfg_(cfg.greylist), exempt_(cfg.relay.networks), store_(store), pool_(pool), clock_(std::move(clock)) {
  exempt_.insert(exempt_.end(), cfg_.whitelist.begin(), cfg_.whitelist.end());
  if (!store_) {
    own_store_ = std::make_unique<Store>(cfg.server.data_dir / "db" / "greylist.sqlite");
    store_ = own_store_.get();
  }
  if (!pool_) {
    own_pool_ = std::make_unique<boost::asio::thread_pool>(1);
    pool_ = own_pool_.get();
  }
  if (!clock_)
    clock_ = [] {
      return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
}

GreylistFilter::~GreylistFilter() {
  if (own_pool_) own_pool_->join();
}

bool GreylistFilter::exempt(const ClientInfo& client) const {
  if (!client.auth_user.empty()) return true;
  return std::any_of(exempt_.begin(), exempt_.end(), [&](const Cidr& n) { return n.contains(client.ip); });
}

asio::awaitable<Status> GreylistFilter::run(Phase, ScanContext& ctx) {
  if (!ctx.current_rcpt || exempt(ctx.envelope.client)) {
    skipped().inc();
    co_return Status{};
  }
  Triplet t{network_of(ctx.envelope.client.ip, cfg_.ipv4_prefix, cfg_.ipv6_prefix), lower(ctx.envelope.sender),
            lower(ctx.current_rcpt->address)};
  const std::int64_t now = clock_();
  auto r = co_await run_blocking(*pool_, [&] {
    auto checked = store_->check(t, cfg_, now);
    store_->maybe_cleanup(cfg_, now);
    return checked;
  });
  if (!r) co_return r.error();
  outcome_counter(*r).inc();
  if (defers(*r)) ctx.add("GREYLIST", std::string(outcome_name(*r)));
  co_return Status{};
}

}  // namespace moat::filters::greylist

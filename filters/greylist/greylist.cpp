// Greylisting state machine and filter (see greylist.hpp; RFC 6647 §2.1, the
// triplet of Harris's original paper; auto-allow as in postgrey).
#include "filters/greylist/greylist.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <system_error>

#include "common/blocking.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/text.hpp"

namespace moat::filters::greylist {
namespace {

constexpr int kBusyTimeoutMs = 5000;

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

Error db_error(sqlite3* db, const std::string& what) {
  return Error{Errc::TempFailure, "greylist db: " + what + ": " + (db ? sqlite3_errmsg(db) : "out of memory")};
}

// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK || rc_ == SQLITE_ROW || rc_ == SQLITE_DONE; }
  Stmt& text(int i, std::string_view t) {
    if (ok()) rc_ = sqlite3_bind_text(s_, i, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& integer(int i, std::int64_t v) {
    if (ok()) rc_ = sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  int step() { return rc_ = ok() ? sqlite3_step(s_) : rc_; }
  std::int64_t col(int i) const { return sqlite3_column_int64(s_, i); }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_ = SQLITE_OK;
};

Status exec(sqlite3* db, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return db_error(db, sql);
  return {};
}

// Ends a transaction on every path: ROLLBACK unless commit() ran.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) { st_ = exec(db, "BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (st_ && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  const Status& status() const { return st_; }
  Status commit() {
    done_ = true;
    return exec(db_, "COMMIT");
  }

 private:
  sqlite3* db_;
  Status st_;
  bool done_ = false;
};

constexpr const char* kSchema =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS triplet(net TEXT NOT NULL, sender TEXT NOT NULL, rcpt TEXT NOT NULL,"
    " first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, passed INTEGER NOT NULL,"
    " PRIMARY KEY(net, sender, rcpt)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS client(net TEXT PRIMARY KEY NOT NULL, retries INTEGER NOT NULL,"
    " last_seen INTEGER NOT NULL) WITHOUT ROWID;";

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

Store::~Store() { sqlite3_close_v2(db_); }

Status Store::open_locked() {
  if (db_) return {};
  std::error_code ec;
  if (file_.has_parent_path()) std::filesystem::create_directories(file_.parent_path(), ec);
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(file_.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    Error e = db_error(raw, "open " + file_.string());
    sqlite3_close_v2(raw);
    return e;
  }
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  if (auto st = exec(raw, kSchema); !st) {
    sqlite3_close_v2(raw);
    return st;
  }
  db_ = raw;
  return {};
}

Result<Outcome> Store::check(const Triplet& t, const config::Greylist& policy, std::int64_t now) {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  return check_locked(t, policy, now);
}

Result<Outcome> Store::check_locked(const Triplet& t, const config::Greylist& p, std::int64_t now) {
  Transaction tx(db_);
  if (!tx.status()) return tx.status().error();
  const std::int64_t delay = p.delay.count(), window = p.retry_window.count(), expiry = p.expiry.count();

  if (p.auto_allow_after > 0) {
    Stmt q(db_, "SELECT retries, last_seen FROM client WHERE net = ?1");
    int rc = q.text(1, t.network).step();
    if (rc == SQLITE_ROW && q.col(0) >= p.auto_allow_after && q.col(1) + expiry >= now) {
      Stmt u(db_, "UPDATE client SET last_seen = ?2 WHERE net = ?1");
      if (u.text(1, t.network).integer(2, now).step() != SQLITE_DONE) return db_error(db_, "refresh client");
      if (auto st = tx.commit(); !st) return st.error();
      return Outcome::AutoAllowed;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_error(db_, "read client");
  }

  Stmt q(db_, "SELECT first_seen, last_seen, passed FROM triplet WHERE net = ?1 AND sender = ?2 AND rcpt = ?3");
  int rc = q.text(1, t.network).text(2, t.sender).text(3, t.recipient).step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_error(db_, "read triplet");
  Outcome out = Outcome::New;
  if (rc == SQLITE_ROW) {
    const std::int64_t first = q.col(0), last = q.col(1);
    const bool passed = q.col(2) != 0;
    if (passed)
      out = last + expiry >= now ? Outcome::Known : Outcome::New;
    else if (now < first + delay)
      out = Outcome::TooEarly;
    else
      out = now <= first + window ? Outcome::Passed : Outcome::New;  // too late: start over
  }
  // New starts the clock; every other outcome keeps first_seen.
  Stmt w(db_,
         "INSERT INTO triplet(net, sender, rcpt, first_seen, last_seen, passed) VALUES (?1, ?2, ?3, ?4, ?4, ?5) "
         "ON CONFLICT(net, sender, rcpt) DO UPDATE SET last_seen = ?4, passed = ?5, "
         "first_seen = CASE WHEN ?6 THEN ?4 ELSE first_seen END");
  const bool passes = out == Outcome::Passed || out == Outcome::Known;
  if (w.text(1, t.network).text(2, t.sender).text(3, t.recipient).integer(4, now).integer(5, passes).integer(6, out == Outcome::New).step() !=
      SQLITE_DONE)
    return db_error(db_, "write triplet");
  if (out == Outcome::Passed) {
    Stmt c(db_,
           "INSERT INTO client(net, retries, last_seen) VALUES (?1, 1, ?2) "
           "ON CONFLICT(net) DO UPDATE SET retries = retries + 1, last_seen = ?2");
    if (c.text(1, t.network).integer(2, now).step() != SQLITE_DONE) return db_error(db_, "write client");
  }
  if (auto st = tx.commit(); !st) return st.error();
  return out;
}

Result<std::int64_t> Store::cleanup(const config::Greylist& p, std::int64_t now) {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  last_cleanup_ = now;
  Stmt t(db_,
         "DELETE FROM triplet WHERE (passed = 0 AND first_seen + ?1 < ?3) OR (passed = 1 AND last_seen + ?2 < ?3)");
  if (t.integer(1, p.retry_window.count()).integer(2, p.expiry.count()).integer(3, now).step() != SQLITE_DONE)
    return db_error(db_, "expire triplets");
  std::int64_t n = sqlite3_changes(db_);
  Stmt c(db_, "DELETE FROM client WHERE last_seen + ?1 < ?2");
  if (c.integer(1, p.expiry.count()).integer(2, now).step() != SQLITE_DONE) return db_error(db_, "expire clients");
  return n + sqlite3_changes(db_);
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
  Stmt q(db_, "SELECT count(*) FROM triplet");
  if (q.step() != SQLITE_ROW) return db_error(db_, "count");
  return q.col(0);
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

namespace {

}  // namespace

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

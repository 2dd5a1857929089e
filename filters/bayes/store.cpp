// SQLite token store (see store.hpp). Tokens are kept as their 64-bit hash
// (rspamd and bogofilter keep no text either), so the database holds no
// message content.
#include "filters/bayes/store.hpp"

#include <sqlite3.h>

#include <system_error>

namespace moat::filters::bayes {
namespace {

constexpr int kBusyTimeoutMs = 10000;

Error db_error(sqlite3* db, const std::string& what) {
  return Error{Errc::TempFailure, "bayes db: " + what + ": " + (db ? sqlite3_errmsg(db) : "out of memory")};
}

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK || rc_ == SQLITE_ROW || rc_ == SQLITE_DONE; }
  Stmt& text(int i, std::string_view t) {
    // An empty view may have a null data(), which SQLite would bind as NULL.
    if (ok()) rc_ = sqlite3_bind_text(s_, i, t.empty() ? "" : t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& integer(int i, std::int64_t v) {
    if (ok()) rc_ = sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  int step() { return rc_ = ok() ? sqlite3_step(s_) : rc_; }
  void reset() {
    sqlite3_reset(s_);
    rc_ = s_ ? SQLITE_OK : rc_;
  }
  std::int64_t col(int i) const { return sqlite3_column_int64(s_, i); }
  const char* col_text(int i) const { return reinterpret_cast<const char*>(sqlite3_column_text(s_, i)); }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_ = SQLITE_OK;
};

Status exec(sqlite3* db, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return db_error(db, sql);
  return {};
}

// A transaction unless a batch is already open; rolls back unless committed.
class Transaction {
 public:
  Transaction(sqlite3* db, bool in_batch) : db_(db), own_(!in_batch) {
    if (own_) st_ = exec(db, "BEGIN IMMEDIATE");
  }
  ~Transaction() {
    if (own_ && st_ && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  const Status& status() const { return st_; }
  Status commit() {
    done_ = true;
    return own_ ? exec(db_, "COMMIT") : Status{};
  }

 private:
  sqlite3* db_;
  bool own_;
  Status st_;
  bool done_ = false;
};

constexpr const char* kSchema =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS user(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
    " spam INTEGER NOT NULL DEFAULT 0, ham INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS token(uid INTEGER NOT NULL, hash INTEGER NOT NULL, spam INTEGER NOT NULL,"
    " ham INTEGER NOT NULL, atime INTEGER NOT NULL, PRIMARY KEY(uid, hash)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS seen(uid INTEGER NOT NULL, digest INTEGER NOT NULL, spam INTEGER NOT NULL,"
    " PRIMARY KEY(uid, digest)) WITHOUT ROWID;";

}  // namespace

std::string_view class_name(Class c) { return c == Class::Spam ? "spam" : "ham"; }

Store::Store(std::filesystem::path file) : file_(std::move(file)) {}

Store::~Store() {
  if (batch_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);  // an unfinished batch is abandoned
  sqlite3_close_v2(db_);
}

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

Result<std::int64_t> Store::user_id_locked(std::string_view user, bool create) {
  Stmt q(db_, "SELECT id FROM user WHERE name = ?1");
  int rc = q.text(1, user).step();
  if (rc == SQLITE_ROW) return q.col(0);
  if (rc != SQLITE_DONE) return db_error(db_, "read user");
  if (!create) return std::int64_t{-1};
  Stmt ins(db_, "INSERT INTO user(name) VALUES (?1)");
  if (ins.text(1, user).step() != SQLITE_DONE) return db_error(db_, "add user");
  return sqlite3_last_insert_rowid(db_);
}

// Adds dspam/dham to each token, never below zero, and drops tokens that
// reach zero in both classes.
Status Store::adjust_locked(std::int64_t uid, std::span<const std::uint64_t> tokens, int dspam, int dham,
                            std::int64_t now) {
  Stmt up(db_,
          "INSERT INTO token(uid, hash, spam, ham, atime) VALUES (?1, ?2, max(?3, 0), max(?4, 0), ?5) "
          "ON CONFLICT(uid, hash) DO UPDATE SET spam = max(spam + ?3, 0), ham = max(ham + ?4, 0), atime = ?5");
  for (auto h : tokens) {
    up.reset();
    if (up.integer(1, uid).integer(2, std::int64_t(h)).integer(3, dspam).integer(4, dham).integer(5, now).step() !=
        SQLITE_DONE)
      return db_error(db_, "write token");
  }
  if (dspam < 0 || dham < 0) {
    Stmt del(db_, "DELETE FROM token WHERE uid = ?1 AND hash = ?2 AND spam = 0 AND ham = 0");
    for (auto h : tokens) {
      del.reset();
      if (del.integer(1, uid).integer(2, std::int64_t(h)).step() != SQLITE_DONE) return db_error(db_, "drop token");
    }
  }
  return {};
}

Result<LearnResult> Store::learn(std::string_view user, std::uint64_t digest, std::span<const std::uint64_t> tokens,
                                 Class cls, std::int64_t now) {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  Transaction tx(db_, batch_);
  if (!tx.status()) return tx.status().error();
  auto uid = user_id_locked(user, true);
  if (!uid) return uid.error();
  const bool spam = cls == Class::Spam;
  Stmt q(db_, "SELECT spam FROM seen WHERE uid = ?1 AND digest = ?2");
  int rc = q.integer(1, *uid).integer(2, std::int64_t(digest)).step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_error(db_, "read seen");
  LearnResult result = LearnResult::Learned;
  int dspam = spam ? 1 : 0, dham = spam ? 0 : 1;
  if (rc == SQLITE_ROW) {
    if ((q.col(0) != 0) == spam) return LearnResult::AlreadyLearned;
    result = LearnResult::Relearned;
    dspam = spam ? 1 : -1;
    dham = spam ? -1 : 1;
  }
  if (auto st = adjust_locked(*uid, tokens, dspam, dham, now); !st) return st.error();
  Stmt u(db_, "UPDATE user SET spam = max(spam + ?2, 0), ham = max(ham + ?3, 0) WHERE id = ?1");
  if (u.integer(1, *uid).integer(2, dspam).integer(3, dham).step() != SQLITE_DONE) return db_error(db_, "count");
  Stmt s(db_, "INSERT INTO seen(uid, digest, spam) VALUES (?1, ?2, ?3) ON CONFLICT(uid, digest) DO UPDATE SET spam = ?3");
  if (s.integer(1, *uid).integer(2, std::int64_t(digest)).integer(3, spam).step() != SQLITE_DONE)
    return db_error(db_, "write seen");
  if (auto st = tx.commit(); !st) return st.error();
  return result;
}

Result<bool> Store::unlearn(std::string_view user, std::uint64_t digest, std::span<const std::uint64_t> tokens) {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  Transaction tx(db_, batch_);
  if (!tx.status()) return tx.status().error();
  auto uid = user_id_locked(user, false);
  if (!uid) return uid.error();
  if (*uid < 0) return false;
  Stmt q(db_, "SELECT spam FROM seen WHERE uid = ?1 AND digest = ?2");
  int rc = q.integer(1, *uid).integer(2, std::int64_t(digest)).step();
  if (rc == SQLITE_DONE) return false;
  if (rc != SQLITE_ROW) return db_error(db_, "read seen");
  const bool spam = q.col(0) != 0;
  const int dspam = spam ? -1 : 0, dham = spam ? 0 : -1;
  if (auto st = adjust_locked(*uid, tokens, dspam, dham, 0); !st) return st.error();
  Stmt u(db_, "UPDATE user SET spam = max(spam + ?2, 0), ham = max(ham + ?3, 0) WHERE id = ?1");
  if (u.integer(1, *uid).integer(2, dspam).integer(3, dham).step() != SQLITE_DONE) return db_error(db_, "count");
  Stmt d(db_, "DELETE FROM seen WHERE uid = ?1 AND digest = ?2");
  if (d.integer(1, *uid).integer(2, std::int64_t(digest)).step() != SQLITE_DONE) return db_error(db_, "drop seen");
  if (auto st = tx.commit(); !st) return st.error();
  return true;
}

Result<Counts> Store::totals(std::string_view user) {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  Stmt q(db_, "SELECT spam, ham FROM user WHERE name = ?1");
  int rc = q.text(1, user).step();
  if (rc == SQLITE_DONE) return Counts{};
  if (rc != SQLITE_ROW) return db_error(db_, "read totals");
  return Counts{q.col(0), q.col(1)};
}

Result<std::vector<Counts>> Store::lookup(std::string_view user, std::span<const std::uint64_t> tokens) {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  std::vector<Counts> out(tokens.size());
  auto uid = user_id_locked(user, false);
  if (!uid) return uid.error();
  if (*uid < 0) return out;
  Stmt q(db_, "SELECT spam, ham FROM token WHERE uid = ?1 AND hash = ?2");
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    q.reset();
    int rc = q.integer(1, *uid).integer(2, std::int64_t(tokens[i])).step();
    if (rc == SQLITE_ROW) out[i] = Counts{q.col(0), q.col(1)};
    else if (rc != SQLITE_DONE) return db_error(db_, "read token");
  }
  return out;
}

Result<std::vector<UserStats>> Store::stats() {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  std::vector<UserStats> out;
  Stmt q(db_,
         "SELECT name, spam, ham, (SELECT count(*) FROM token WHERE uid = user.id) FROM user ORDER BY name");
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    const char* name = q.col_text(0);
    out.push_back(UserStats{name ? name : "", Counts{q.col(1), q.col(2)}, q.col(3)});
  }
  if (rc != SQLITE_DONE) return db_error(db_, "read stats");
  return out;
}

Status Store::begin_batch() {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st;
  if (batch_) return {};
  if (auto st = exec(db_, "BEGIN IMMEDIATE"); !st) return st;
  batch_ = true;
  return {};
}

Status Store::end_batch() {
  std::lock_guard lk(mu_);
  if (!batch_) return {};
  batch_ = false;
  return exec(db_, "COMMIT");
}

}  // namespace moat::filters::bayes

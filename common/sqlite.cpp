// See sqlite.hpp. Error details name the statement (its first characters,
// never the bound values, which may be passwords' hashes or addresses).
#include "common/sqlite.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#include "common/file_io.hpp"

namespace moat::sqlite {

struct Conn {
  struct Cached {
    sqlite3_stmt* s = nullptr;
    bool in_use = false;
  };

  sqlite3* db = nullptr;
  std::string label;
  std::optional<Errc> errc;
  std::unordered_map<std::string, Cached> cache;  // element addresses stay put on rehash
  unsigned savepoints = 0;                         // names each nested savepoint uniquely

  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    for (auto& [sql, c] : cache) sqlite3_finalize(c.s);
    sqlite3_close_v2(db);  // NOMUTEX is safe here: the owner holds the only reference
  }

  Error make(Errc fallback, std::string detail) const {
    return {errc.value_or(fallback), label + ": " + std::move(detail)};
  }
  Error error(std::string_view what, int rc) const {
    return make(errc_of(rc), std::string(what) + ": " + sqlite3_errmsg(db));  // errmsg(nullptr): "out of memory"
  }
};

namespace {

constexpr std::size_t kSqlInErrors = 60;

// "<message> (in: <the start of the statement>)", to say which one failed.
std::string failed_in(sqlite3* db, std::string_view sql) {
  std::string out = sqlite3_errmsg(db);
  out += " (in: ";
  out += sql.substr(0, kSqlInErrors);
  if (sql.size() > kSqlInErrors) out += "...";
  out += ')';
  return out;
}

Error closed(std::string_view what) { return {Errc::IoError, "database not open: " + std::string(what)}; }

}  // namespace

Errc errc_of(int rc) {
  switch (rc & 0xff) {  // the primary code of an extended one
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return Errc::TempFailure;
    case SQLITE_FULL: return Errc::DiskFull;
    // CORRUPT and NOTADB too: Errc::Corrupt is a permanent code, and a
    // damaged database must not turn mail away for good.
    default: return Errc::IoError;
  }
}

// ---- Stmt ----

Stmt::Stmt(Stmt&& o) noexcept
    : conn_(o.conn_),
      s_(std::exchange(o.s_, nullptr)),
      rc_(o.rc_),
      err_(std::move(o.err_)),
      in_use_(std::exchange(o.in_use_, nullptr)) {}

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    Stmt old(std::move(*this));  // ours is finalized or handed back when `old` goes
    conn_ = o.conn_;
    s_ = std::exchange(o.s_, nullptr);
    rc_ = o.rc_;
    err_ = std::move(o.err_);
    in_use_ = std::exchange(o.in_use_, nullptr);
  }
  return *this;
}

Stmt::~Stmt() {
  if (in_use_ != nullptr) {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
    *in_use_ = false;
  } else {
    sqlite3_finalize(s_);
  }
}

void Stmt::fail(int rc, const char* sql) { fail(rc, std::string_view(sql != nullptr ? sql : "")); }

void Stmt::fail(int rc, std::string_view sql) {
  rc_ = rc;
  err_ = conn_ != nullptr ? failed_in(conn_->db, sql) : std::string(sql);
}

Error Stmt::error() const {
  if (conn_ == nullptr) return closed(err_);
  return conn_->make(errc_of(rc_), err_);
}

Stmt& Stmt::check_bind(int rc) {
  if (rc != SQLITE_OK) fail(rc, sqlite3_sql(s_));
  return *this;
}

Stmt& Stmt::bind(int i, std::string_view text) {
  if (rc_ != SQLITE_OK) return *this;
  // An empty view may have a null data(), which SQLite would store as NULL.
  return check_bind(sqlite3_bind_text64(s_, i, text.empty() ? "" : text.data(), text.size(), SQLITE_TRANSIENT,
                                        SQLITE_UTF8));
}

Stmt& Stmt::bind(int i, double v) {
  if (rc_ != SQLITE_OK) return *this;
  return check_bind(sqlite3_bind_double(s_, i, v));
}

Stmt& Stmt::bind(int i, Blob b) {
  if (rc_ != SQLITE_OK) return *this;
  return check_bind(sqlite3_bind_blob64(s_, i, b.bytes.empty() ? "" : b.bytes.data(), b.bytes.size(),
                                        SQLITE_TRANSIENT));
}

Stmt& Stmt::bind(int i, std::nullptr_t) {
  if (rc_ != SQLITE_OK) return *this;
  return check_bind(sqlite3_bind_null(s_, i));
}

Stmt& Stmt::bind_int64(int i, std::int64_t v) {
  if (rc_ != SQLITE_OK) return *this;
  return check_bind(sqlite3_bind_int64(s_, i, v));
}

Result<bool> Stmt::step() {
  if (rc_ != SQLITE_OK) return error();
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(rc, sqlite3_sql(s_));
  return error();
}

Status Stmt::run() {
  auto r = step();
  if (!r) return r.error();
  return {};
}

void Stmt::reset() {
  if (s_ == nullptr) return;  // a failed prepare stays failed
  sqlite3_reset(s_);
  rc_ = SQLITE_OK;
  err_.clear();
}

bool Stmt::duplicate() const { return rc_ == SQLITE_CONSTRAINT_PRIMARYKEY || rc_ == SQLITE_CONSTRAINT_UNIQUE; }

std::int64_t Stmt::integer(int col) const { return sqlite3_column_int64(s_, col); }
double Stmt::real(int col) const { return sqlite3_column_double(s_, col); }
bool Stmt::is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

std::string Stmt::text(int col) const {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
  return p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col))) : std::string();
}

std::string Stmt::blob(int col) const {
  auto* p = static_cast<const char*>(sqlite3_column_blob(s_, col));
  return p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col))) : std::string();
}

// ---- Transaction ----

Transaction::Transaction(Transaction&& o) noexcept
    : conn_(o.conn_), savepoint_(std::move(o.savepoint_)), done_(o.done_) {
  o.done_ = true;  // the moved-from guard must not roll back
}

Transaction::~Transaction() {
  if (!done_) rollback();
}

void Transaction::rollback() {
  sqlite3* db = conn_->db;
  if (savepoint_.empty()) {
    // Some errors (SQLITE_FULL, IOERR, NOMEM) roll back on their own already.
    if (sqlite3_get_autocommit(db) == 0) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return;
  }
  // ROLLBACK TO undoes the savepoint's work but keeps it open; RELEASE ends it.
  std::string sql = "ROLLBACK TO " + savepoint_ + "; RELEASE " + savepoint_;
  sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
}

Status Transaction::commit() {
  if (done_) return Error{Errc::IoError, "transaction already ended"};
  std::string sql = savepoint_.empty() ? "COMMIT" : "RELEASE " + savepoint_;
  int rc = sqlite3_exec(conn_->db, sql.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return conn_->error("commit", rc);  // the destructor rolls back
  done_ = true;
  return {};
}

// ---- Db ----

Db::Db() = default;
Db::Db(Db&& o) noexcept = default;
Db& Db::operator=(Db&& o) noexcept = default;
Db::~Db() = default;

Result<Db> Db::open(const std::filesystem::path& file, Options opts) {
  auto conn = std::make_unique<Conn>();
  conn->label = std::move(opts.label);
  conn->errc = opts.errc;
  std::error_code ec;
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path(), ec);
  if (ec) {
    Error e = file_error(file.parent_path().string(), ec.value());
    return conn->make(e.code, std::move(e.detail));
  }
  if (opts.file_mode != 0) {
    int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, static_cast<mode_t>(opts.file_mode));
    if (fd < 0) {
      Error e = file_error("create " + file.string(), errno);
      return conn->make(e.code, std::move(e.detail));
    }
    ::close(fd);
  }
  int rc = sqlite3_open_v2(file.c_str(), &conn->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) return conn->error("open " + file.string(), rc);  // conn closes the handle
  sqlite3_extended_result_codes(conn->db, 1);
  sqlite3_busy_timeout(conn->db, opts.busy_timeout_ms);
  Db db;
  db.conn_ = std::move(conn);
  if (!opts.pragmas.empty()) {
    if (auto st = db.exec_pragmas(opts.pragmas.c_str(), opts.busy_timeout_ms); !st) return st.error();
  }
  if (!opts.migrations.empty()) {  // none: the caller does not version this file
    if (auto st = db.migrate(opts.migrations); !st) return st.error();
  }
  return db;
}

Status Db::exec(const char* sql) {
  if (!conn_) return closed(sql);
  int rc = sqlite3_exec(conn_->db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return conn_->make(errc_of(rc), failed_in(conn_->db, sql));
  return {};
}

// Switching to WAL needs the file to itself for a moment, and SQLite
// answers SQLITE_BUSY at once rather than through the busy handler when
// another connection is opening or migrating the same file. The pragmas
// are idempotent, so they are retried until the busy timeout.
Status Db::exec_pragmas(const char* sql, int busy_timeout_ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_timeout_ms);
  for (;;) {
    int rc = sqlite3_exec(conn_->db, sql, nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) return {};
    if ((rc & 0xff) != SQLITE_BUSY || std::chrono::steady_clock::now() >= until)
      return conn_->make(errc_of(rc), failed_in(conn_->db, sql));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Stmt Db::prepare(std::string_view sql) {
  Stmt st(conn_.get(), nullptr, nullptr);
  if (!conn_) {
    st.fail(SQLITE_MISUSE, sql);
    return st;
  }
  int rc = sqlite3_prepare_v3(conn_->db, sql.data(), static_cast<int>(sql.size()), 0, &st.s_, nullptr);
  if (rc == SQLITE_OK && st.s_ == nullptr) rc = SQLITE_MISUSE;  // only blanks or comments
  if (rc != SQLITE_OK) st.fail(rc, sql);
  return st;
}

Stmt Db::cached(std::string_view sql) {
  if (!conn_) return prepare(sql);
  auto it = conn_->cache.find(std::string(sql));
  if (it == conn_->cache.end()) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(conn_->db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &s,
                                nullptr);
    if (rc != SQLITE_OK || s == nullptr) {
      sqlite3_finalize(s);
      return prepare(sql);  // fails the same way and carries the message
    }
    it = conn_->cache.emplace(std::string(sql), Conn::Cached{s, false}).first;
  }
  if (it->second.in_use) return prepare(sql);  // e.g. a recursive lookup while the first handle is out
  it->second.in_use = true;
  return Stmt(conn_.get(), it->second.s, &it->second.in_use);
}

Result<Transaction> Db::transaction() {
  if (!conn_) return closed("begin");
  if (sqlite3_get_autocommit(conn_->db) != 0) {
    if (auto st = exec("BEGIN IMMEDIATE"); !st) return st.error();
    return Transaction(conn_.get(), "");
  }
  std::string sp = "moat_sp" + std::to_string(++conn_->savepoints);
  if (auto st = exec(("SAVEPOINT " + sp).c_str()); !st) return st.error();
  return Transaction(conn_.get(), std::move(sp));
}

Result<std::int64_t> Db::user_version() {
  Stmt s = prepare("PRAGMA user_version");
  auto r = s.step();
  if (!r) return r.error();
  return s.integer(0);
}

Status Db::migrate(std::span<const char* const> steps) {
  const auto target = static_cast<std::int64_t>(steps.size());
  auto v = user_version();
  while (v && *v < target) {
    auto tx = transaction();
    if (!tx) return tx.error();
    v = user_version();  // another process may have migrated meanwhile
    if (!v || *v >= target) break;
    std::string sql = steps[static_cast<std::size_t>(*v)];
    sql += ";PRAGMA user_version=" + std::to_string(*v + 1) + ";";
    int rc = sqlite3_exec(conn_->db, sql.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return conn_->error("migrate schema to version " + std::to_string(*v + 1), rc);
    if (auto st = tx->commit(); !st) return st;
    v = *v + 1;
  }
  if (!v) return v.error();
  if (*v > target)
    return conn_->make(Errc::IoError, "schema version " + std::to_string(*v) +
                                          " is newer than this moat understands (" + std::to_string(target) + ")");
  return {};
}

std::int64_t Db::changes() const { return conn_ ? sqlite3_changes64(conn_->db) : 0; }
std::int64_t Db::last_insert_rowid() const { return conn_ ? sqlite3_last_insert_rowid(conn_->db) : 0; }

Error Db::error(std::string_view what, int rc) const {
  if (!conn_) return closed(what);
  return conn_->error(what, rc);
}

sqlite3* Db::handle() const { return conn_ ? conn_->db : nullptr; }

}  // namespace moat::sqlite

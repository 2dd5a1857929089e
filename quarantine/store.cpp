// See store.hpp. Every statement binds its parameters; the schema is created
// by numbered migrations in one IMMEDIATE transaction (directory/userdb.cpp),
// so moatd and moatctl opening a fresh file together cannot both apply one.
#include "common/file_io.hpp"
#include "quarantine/store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <set>

#include "common/failpoint.hpp"
#include "common/log.hpp"

namespace moat::quarantine {
namespace fs = std::filesystem;

namespace {

constexpr int kBusyTimeoutMs = 5000;

// Migration i takes user_version i to i+1. Append only.
constexpr std::array<const char*, 1> kMigrations{
    "CREATE TABLE messages ("
    "  id TEXT PRIMARY KEY,"
    "  kind INTEGER NOT NULL,"
    "  time INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL,"
    "  sender TEXT NOT NULL,"
    "  recipients TEXT NOT NULL,"     // one address per line
    "  from_field TEXT NOT NULL,"
    "  subject TEXT NOT NULL,"
    "  score REAL NOT NULL,"
    "  symbols TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  client TEXT NOT NULL,"
    "  auth_domain TEXT NOT NULL,"
    "  size INTEGER NOT NULL"
    ");"
    "CREATE INDEX messages_time ON messages(time);"
    "CREATE INDEX messages_expires ON messages(expires);"
    "CREATE TABLE sender_lists ("
    "  domain TEXT PRIMARY KEY COLLATE NOCASE,"
    "  kind INTEGER NOT NULL,"
    "  added INTEGER NOT NULL"
    ");",
};

Error db_error(sqlite3* db, std::string_view what) {
  return {Errc::IoError, "quarantine database: " + std::string(what) + ": " +
                             (db != nullptr ? sqlite3_errmsg(db) : "out of memory")};
}

Error io_error(std::string_view what, int e) {
  return Error{(e == ENOSPC || e == EDQUOT) ? Errc::DiskFull : Errc::IoError,
               "quarantine: " + std::string(what) + ": " + std::strerror(e)};
}

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  void bind(int i, std::string_view t) {
    if (ok()) rc_ = sqlite3_bind_text(s_, i, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
  }
  void bind(int i, std::int64_t v) {
    if (ok()) rc_ = sqlite3_bind_int64(s_, i, v);
  }
  void bind(int i, double v) {
    if (ok()) rc_ = sqlite3_bind_double(s_, i, v);
  }
  int step() { return ok() ? sqlite3_step(s_) : rc_; }
  std::string text(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col))) : std::string();
  }
  std::int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }
  double real(int col) const { return sqlite3_column_double(s_, col); }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

Status exec(sqlite3* db, const char* sql, std::string_view what) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return db_error(db, what);
  return {};
}



std::string join_lines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : "\n") + s;
  return out;
}

std::vector<std::string> split_lines(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    auto nl = s.find('\n');
    out.emplace_back(s.substr(0, nl));
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
  return out;
}

constexpr const char* kColumns =
    "id, kind, time, expires, sender, recipients, from_field, subject, score, symbols, reason, client, "
    "auth_domain, size";

Entry read_entry(const Stmt& st) {
  Entry e;
  e.id = st.text(0);
  e.kind = st.integer(1) == 1 ? Kind::Rejected : Kind::Quarantined;
  e.time = st.integer(2);
  e.expires = st.integer(3);
  e.sender = st.text(4);
  e.recipients = split_lines(st.text(5));
  e.from = st.text(6);
  e.subject = st.text(7);
  e.score = st.real(8);
  e.symbols = st.text(9);
  e.reason = st.text(10);
  e.client = st.text(11);
  e.auth_domain = st.text(12);
  e.size = std::uint64_t(st.integer(13));
  return e;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

}  // namespace

std::string_view kind_name(Kind k) { return k == Kind::Rejected ? "reject" : "quarantine"; }
std::string_view list_name(ListKind k) { return k == ListKind::Block ? "block" : "allow"; }

bool valid_id(std::string_view id) {
  if (id.size() < 10 || id.size() > 20) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return false;
  return true;
}

Store::Store(fs::path dir, fs::path db_file) : dir_(std::move(dir)), db_file_(std::move(db_file)) {}

Store::~Store() {
  if (db_) sqlite3_close_v2(db_);
}

Status Store::ensure_open() {
  if (db_) return {};
  std::error_code ec;
  fs::create_directories(db_file_.parent_path(), ec);
  if (ec) return io_error(db_file_.parent_path().string(), ec.value());
  // Subjects and senders of held mail are private: 0600 before SQLite creates it.
  int fd = ::open(db_file_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("create " + db_file_.string(), errno);
  ::close(fd);
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(db_file_.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    Error e = db_error(raw, "open " + db_file_.string());
    sqlite3_close_v2(raw);
    return e;
  }
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  db_ = raw;
  if (auto st = exec(db_, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", "pragmas"); !st) return st;
  if (auto st = exec(db_, "BEGIN IMMEDIATE", "begin"); !st) return st;
  Stmt v(db_, "PRAGMA user_version");
  std::int64_t version = v.step() == SQLITE_ROW ? v.integer(0) : -1;
  for (auto i = std::size_t(std::max<std::int64_t>(version, 0)); version >= 0 && i < kMigrations.size(); ++i) {
    if (auto st = exec(db_, kMigrations[i], "migrate"); !st) {
      (void)exec(db_, "ROLLBACK", "rollback");
      return st;
    }
    std::string set = "PRAGMA user_version=" + std::to_string(i + 1);
    if (auto st = exec(db_, set.c_str(), "migrate"); !st) {
      (void)exec(db_, "ROLLBACK", "rollback");
      return st;
    }
  }
  if (version < 0) {
    (void)exec(db_, "ROLLBACK", "rollback");
    return db_error(db_, "read schema version");
  }
  return exec(db_, "COMMIT", "commit");
}

Status Store::open(bool recover_files) {
  std::error_code ec;
  for (const char* sub : {"tmp", "msg"}) {
    fs::create_directories(dir_ / sub, ec);
    if (ec) return io_error((dir_ / sub).string(), ec.value());
    fs::permissions(dir_ / sub, fs::perms::owner_all, ec);
  }
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st;
  return recover_files ? recover() : Status{};
}

Status Store::recover() {
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir_ / "tmp", ec)) fs::remove(f.path(), ec);
  std::set<std::string> rows;
  {
    Stmt st(db_, "SELECT id FROM messages");
    int rc;
    while ((rc = st.step()) == SQLITE_ROW) rows.insert(st.text(0));
    if (rc != SQLITE_DONE) return db_error(db_, "recover");
  }
  std::set<std::string> files;
  for (const auto& f : fs::directory_iterator(dir_ / "msg", ec)) {
    std::string id = f.path().filename().string();
    if (rows.count(id)) {
      files.insert(id);
      continue;
    }
    // Renamed into msg/ but the row never committed: no 250 was sent.
    log::warning("quarantine: " + id + ": file without a database row removed (never acknowledged)");
    fs::remove(f.path(), ec);
  }
  for (const auto& id : rows) {
    if (files.count(id)) continue;
    log::warning("quarantine: " + id + ": row without a file dropped");
    Stmt del(db_, "DELETE FROM messages WHERE id = ?1");
    del.bind(1, id);
    if (del.step() != SQLITE_DONE) return db_error(db_, "recover");
  }
  return {};
}

Status Store::write_file(const Entry& e, std::string_view bytes, bool durable) {
  auto tmp = dir_ / "tmp" / e.id;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("create " + tmp.string(), errno);
  Status st = write_all(fd, bytes);
  if (st && failpoint::hit("quarantine.write")) st = Error{Errc::IoError, "quarantine: write: injected failure"};
  if (st && durable && ::fdatasync(fd) != 0) st = io_error("fdatasync", errno);
  if (::close(fd) != 0 && st) st = io_error("close", errno);
  if (st && ::rename(tmp.c_str(), file(e.id).c_str()) != 0) st = io_error("rename into msg/", errno);
  if (st && durable) st = fsync_dir(dir_ / "msg");
  if (!st) {
    ::unlink(tmp.c_str());
    ::unlink(file(e.id).c_str());
  }
  return st;
}

Status Store::insert_row(const Entry& e, bool durable) {
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st;
  // Rejected copies need no fsync: the client still holds the message.
  if (!durable) (void)exec(db_, "PRAGMA synchronous=NORMAL", "pragma");
  Stmt st(db_,
          "INSERT OR REPLACE INTO messages (id, kind, time, expires, sender, recipients, from_field, subject, score, "
          "symbols, reason, client, auth_domain, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
          "?13, ?14)");
  st.bind(1, e.id);
  st.bind(2, std::int64_t(e.kind == Kind::Rejected ? 1 : 0));
  st.bind(3, e.time);
  st.bind(4, e.expires);
  st.bind(5, e.sender);
  st.bind(6, join_lines(e.recipients));
  st.bind(7, e.from);
  st.bind(8, e.subject);
  st.bind(9, e.score);
  st.bind(10, e.symbols);
  st.bind(11, e.reason);
  st.bind(12, e.client);
  st.bind(13, e.auth_domain);
  st.bind(14, std::int64_t(e.size));
  int rc = st.step();
  if (!durable) (void)exec(db_, "PRAGMA synchronous=FULL", "pragma");
  if (rc != SQLITE_DONE) return db_error(db_, "insert");
  return {};
}

Status Store::put(const Entry& e, std::string_view bytes, bool durable) {
  if (!valid_id(e.id)) return Error{Errc::Invalid, "quarantine: bad id"};
  if (auto st = write_file(e, bytes, durable); !st) return st;
  Status st = failpoint::hit("quarantine.before_row") ? Status(Errc::IoError, "quarantine: injected failure before the row")
                                                       : insert_row(e, durable);
  // No row, no 250: the file must not outlive the failure (recover() would drop it too).
  if (!st) ::unlink(file(e.id).c_str());
  return st;
}

Result<std::vector<Entry>> Store::list(std::size_t limit, std::optional<Kind> kind) {
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st.error();
  std::string sql = std::string("SELECT ") + kColumns + " FROM messages" + (kind ? " WHERE kind = ?1" : "") +
                    " ORDER BY time DESC, id DESC" + (limit ? " LIMIT " + std::to_string(limit) : "");
  Stmt st(db_, sql.c_str());
  if (kind) st.bind(1, std::int64_t(*kind == Kind::Rejected ? 1 : 0));
  std::vector<Entry> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) out.push_back(read_entry(st));
  if (rc != SQLITE_DONE) return db_error(db_, "list");
  return out;
}

Result<Entry> Store::get(std::string_view id) {
  if (!valid_id(id)) return Error{Errc::Invalid, "invalid quarantine id"};
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st.error();
  std::string sql = std::string("SELECT ") + kColumns + " FROM messages WHERE id = ?1";
  Stmt st(db_, sql.c_str());
  st.bind(1, id);
  int rc = st.step();
  if (rc == SQLITE_ROW) return read_entry(st);
  if (rc == SQLITE_DONE) return Error{Errc::NotFound, std::string(id) + ": not in quarantine"};
  return db_error(db_, "get");
}

Result<std::string> Store::read(std::string_view id) {
  if (!valid_id(id)) return Error{Errc::Invalid, "invalid quarantine id"};
  auto p = file(id);
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Error{Errc::NotFound, std::string(id) + ": not in quarantine"};
    return io_error("open " + p.string(), errno);
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return io_error("read " + p.string(), e);
    }
    if (n == 0) break;
    out.append(buf, std::size_t(n));
  }
  ::close(fd);
  return out;
}

Status Store::remove(std::string_view id) {
  if (!valid_id(id)) return Error{Errc::Invalid, "invalid quarantine id"};
  {
    std::lock_guard lk(mu_);
    if (auto st = ensure_open(); !st) return st;
    Stmt st(db_, "DELETE FROM messages WHERE id = ?1");
    st.bind(1, id);
    if (st.step() != SQLITE_DONE) return db_error(db_, "delete");
    if (sqlite3_changes(db_) == 0) return Error{Errc::NotFound, std::string(id) + ": not in quarantine"};
  }
  // A crash here leaves a file without a row, which the next start removes.
  if (::unlink(file(id).c_str()) != 0 && errno != ENOENT) return io_error("unlink", errno);
  return {};
}

Result<std::size_t> Store::expire(std::int64_t now) {
  std::vector<std::string> ids;
  {
    std::lock_guard lk(mu_);
    if (auto st = ensure_open(); !st) return st.error();
    Stmt sel(db_, "SELECT id FROM messages WHERE expires <= ?1");
    sel.bind(1, now);
    int rc;
    while ((rc = sel.step()) == SQLITE_ROW) ids.push_back(sel.text(0));
    if (rc != SQLITE_DONE) return db_error(db_, "expire");
    Stmt del(db_, "DELETE FROM messages WHERE expires <= ?1");
    del.bind(1, now);
    if (del.step() != SQLITE_DONE) return db_error(db_, "expire");
  }
  for (const auto& id : ids)
    if (valid_id(id)) ::unlink(file(id).c_str());
  return ids.size();
}

Status Store::set_list(std::string_view domain, ListKind kind) {
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st;
  Stmt st(db_, "INSERT OR REPLACE INTO sender_lists (domain, kind, added) VALUES (?1, ?2, strftime('%s','now'))");
  st.bind(1, lower(domain));
  st.bind(2, std::int64_t(kind == ListKind::Block ? 1 : 0));
  if (st.step() != SQLITE_DONE) return db_error(db_, "list add");
  return {};
}

Status Store::unlist(std::string_view domain) {
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st;
  Stmt st(db_, "DELETE FROM sender_lists WHERE domain = ?1");
  st.bind(1, lower(domain));
  if (st.step() != SQLITE_DONE) return db_error(db_, "list remove");
  if (sqlite3_changes(db_) == 0) return Error{Errc::NotFound, std::string(domain) + ": not listed"};
  return {};
}

Result<std::vector<ListEntry>> Store::lists() {
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st.error();
  Stmt st(db_, "SELECT domain, kind, added FROM sender_lists ORDER BY domain");
  std::vector<ListEntry> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW)
    out.push_back(ListEntry{st.text(0), st.integer(1) == 1 ? ListKind::Block : ListKind::Allow, st.integer(2)});
  if (rc != SQLITE_DONE) return db_error(db_, "lists");
  return out;
}

Result<std::optional<ListKind>> Store::lookup(std::string_view domain) {
  if (domain.empty()) return std::optional<ListKind>();
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st.error();
  std::string d = lower(domain);
  std::string_view rest = d;
  // mail.example.com, then example.com, then com: the most specific first.
  for (;;) {
    Stmt q(db_, "SELECT kind FROM sender_lists WHERE domain = ?1");
    q.bind(1, rest);
    int rc = q.step();
    if (rc == SQLITE_ROW) return std::optional<ListKind>(q.integer(0) == 1 ? ListKind::Block : ListKind::Allow);
    if (rc != SQLITE_DONE) return db_error(db_, "lookup");
    auto dot = rest.find('.');
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  return std::optional<ListKind>();
}

}  // namespace moat::quarantine

// See userdb.hpp. Every statement binds its parameters (no SQL built from
// user input); each migration runs in one IMMEDIATE transaction so moatd and
// moatctl opening a fresh file at the same time cannot both apply it.
#include "directory/userdb.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <array>
#include <ctime>
#include <system_error>

#include "directory/password.hpp"

namespace moat::directory {
namespace {

// Migration i takes the schema from user_version i to i+1. Append only:
// never edit a step that has shipped.
constexpr std::array<const char*, UserDb::kSchemaVersion> kMigrations{
    // 0 -> 1: users. name is the login (full address or plain name),
    // compared case-insensitively for ASCII as mail addresses usually are.
    "CREATE TABLE users ("
    "  name TEXT PRIMARY KEY COLLATE NOCASE,"
    "  hash TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  disabled INTEGER NOT NULL DEFAULT 0"
    ");",
};

constexpr int kBusyTimeoutMs = 5000;

Error db_error(sqlite3* db, std::string_view what) {
  std::string d = "user database: ";
  d += what;
  d += ": ";
  d += db != nullptr ? sqlite3_errmsg(db) : "out of memory";
  return {Errc::DirectoryUnavailable, std::move(d)};
}

// RAII for one prepared statement.
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
  int step() { return ok() ? sqlite3_step(s_) : rc_; }
  std::string text(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col))) : std::string();
  }
  std::int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

Status exec(sqlite3* db, const char* sql, std::string_view what) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return db_error(db, what);
  return {};
}

// SQLite creates the file with the umask's mode; it holds password hashes, so
// make it 0600 first. SQLite gives the -wal and -shm files the same mode.
Status prepare_file(const std::filesystem::path& file) {
  std::error_code ec;
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path(), ec);
  if (ec) return {Errc::DirectoryUnavailable, "user database: " + file.parent_path().string() + ": " + ec.message()};
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return {Errc::DirectoryUnavailable,
            "user database: " + file.string() + ": " + std::generic_category().message(errno)};
  ::close(fd);
  return {};
}

Result<int> user_version(sqlite3* db) {
  Stmt s(db, "PRAGMA user_version");
  if (s.step() != SQLITE_ROW) return db_error(db, "read schema version");
  return static_cast<int>(s.integer(0));
}

}  // namespace

Result<std::unique_ptr<UserDb>> UserDb::open(const std::filesystem::path& file) {
  if (auto st = prepare_file(file); !st) return st.error();
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(file.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  std::unique_ptr<UserDb> db(new UserDb(raw));  // owns raw even when open failed
  if (rc != SQLITE_OK) return db_error(raw, "open " + file.string());
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  // The first statement that reads the file: a damaged or foreign file fails here.
  if (auto st = exec(raw, "PRAGMA journal_mode=WAL", "enable WAL on " + file.string()); !st)
    return st.error();
  if (auto st = exec(raw, "PRAGMA foreign_keys=ON", "enable foreign keys"); !st) return st.error();
  if (auto st = db->migrate(); !st) return st.error();
  return db;
}

UserDb::~UserDb() { sqlite3_close_v2(db_); }

Status UserDb::migrate() {
  auto v = user_version(db_);
  if (!v) return v.error();
  if (*v > kSchemaVersion)
    return {Errc::DirectoryUnavailable, "user database: schema version " + std::to_string(*v) +
                                            " is newer than this moat understands (" +
                                            std::to_string(kSchemaVersion) + ")"};
  while (*v < kSchemaVersion) {
    if (auto st = exec(db_, "BEGIN IMMEDIATE", "begin migration"); !st) return st;
    v = user_version(db_);  // another process may have migrated meanwhile
    Status st;
    if (v && *v < kSchemaVersion) {
      std::string sql = kMigrations[static_cast<std::size_t>(*v)];
      sql += "PRAGMA user_version=" + std::to_string(*v + 1) + ";";
      st = exec(db_, sql.c_str(), "migrate schema");
    } else if (!v) {
      st = v.error();
    }
    if (!st) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return st;
    }
    if (auto c = exec(db_, "COMMIT", "commit migration"); !c) return c;
    v = user_version(db_);
    if (!v) return v.error();
  }
  return {};
}

Status UserDb::insert(std::string_view name, const std::string& hash) {
  Stmt s(db_, "INSERT INTO users(name, hash, created, disabled) VALUES(?1, ?2, ?3, 0)");
  s.bind(1, name);
  s.bind(2, hash);
  s.bind(3, static_cast<std::int64_t>(std::time(nullptr)));
  int rc = s.step();
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
    return {Errc::Invalid, "user " + std::string(name) + " already exists"};
  if (rc != SQLITE_DONE) return db_error(db_, "add user");
  return {};
}

Status UserDb::update_where_name(const char* sql, std::string_view name, const std::string* text, int number) {
  Stmt s(db_, sql);
  if (text != nullptr) s.bind(1, *text);
  else s.bind(1, static_cast<std::int64_t>(number));
  s.bind(2, name);
  if (s.step() != SQLITE_DONE) return db_error(db_, "update user");
  if (sqlite3_changes(db_) == 0) return {Errc::NotFound, "no such user: " + std::string(name)};
  return {};
}

Status UserDb::add(std::string_view name, std::string_view password) {
  if (auto st = validate_name(name); !st) return st;
  auto hash = hash_password(password);
  if (!hash) return hash.error();
  return insert(name, *hash);
}

Status UserDb::add_hash(std::string_view name, std::string_view encoded) {
  if (auto st = validate_name(name); !st) return st;
  if (scheme_of(encoded) == Scheme::Unknown || encoded.size() > 512)
    return {Errc::Invalid, "unsupported hash: expected $argon2id$, $2b$, $2y$ or $6$"};
  for (char c : encoded)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) return {Errc::Invalid, "hash contains a control character"};
  return insert(name, std::string(encoded));
}

Status UserDb::set_password(std::string_view name, std::string_view password) {
  if (auto st = validate_name(name); !st) return st;
  auto hash = hash_password(password);
  if (!hash) return hash.error();
  return update_where_name("UPDATE users SET hash = ?1 WHERE name = ?2", name, &*hash, 0);
}

Status UserDb::set_disabled(std::string_view name, bool disabled) {
  if (auto st = validate_name(name); !st) return st;
  return update_where_name("UPDATE users SET disabled = ?1 WHERE name = ?2", name, nullptr, disabled ? 1 : 0);
}

Status UserDb::remove(std::string_view name) {
  if (auto st = validate_name(name); !st) return st;
  Stmt s(db_, "DELETE FROM users WHERE name = ?1");
  s.bind(1, name);
  if (s.step() != SQLITE_DONE) return db_error(db_, "delete user");
  if (sqlite3_changes(db_) == 0) return {Errc::NotFound, "no such user: " + std::string(name)};
  return {};
}

Result<std::vector<User>> UserDb::list() {
  Stmt s(db_, "SELECT name, created, disabled, hash FROM users ORDER BY name");
  std::vector<User> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    out.push_back({s.text(0), s.integer(1), s.integer(2) != 0, std::string(scheme_name(scheme_of(s.text(3))))});
  if (rc != SQLITE_DONE) return db_error(db_, "list users");
  return out;
}

Result<bool> UserDb::verify(std::string_view name, std::string_view password) {
  if (!validate_name(name) || !validate_password(password)) {
    verify_dummy(password);
    return false;
  }
  std::string hash;
  bool disabled = false;
  {
    // The statement is finished before hashing so no read transaction stays
    // open (and blocks WAL checkpoints) for the tens of milliseconds argon2 takes.
    Stmt s(db_, "SELECT hash, disabled FROM users WHERE name = ?1");
    s.bind(1, name);
    int rc = s.step();
    if (rc == SQLITE_DONE) {
      verify_dummy(password);
      return false;
    }
    if (rc != SQLITE_ROW) return db_error(db_, "look up user");
    hash = s.text(0);
    disabled = s.integer(1) != 0;
  }
  // A disabled user still pays for the check: same timing as any other failure.
  bool match = verify_password(hash, password);
  return match && !disabled;
}

}  // namespace moat::directory

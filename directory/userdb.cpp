// See userdb.hpp. Every statement binds its parameters (no SQL built from
// user input); each migration runs in one IMMEDIATE transaction so moatd and
// moatctl opening a fresh file at the same time cannot both apply it.
#include "directory/userdb.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <system_error>

#include "common/text.hpp"
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
    // 1 -> 2: quotas, local domains, aliases and catch-alls (issue 5).
    "ALTER TABLE users ADD COLUMN quota INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE domains ("
    "  name TEXT PRIMARY KEY COLLATE NOCASE,"
    "  created INTEGER NOT NULL"
    ");"
    "CREATE TABLE aliases ("
    "  address TEXT NOT NULL COLLATE NOCASE,"
    "  target TEXT NOT NULL COLLATE NOCASE,"
    "  PRIMARY KEY (address, target)"
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

Status UserDb::update_where_name(const char* sql, std::string_view name, const std::string* text,
                                 std::int64_t number) {
  Stmt s(db_, sql);
  if (text != nullptr) s.bind(1, *text);
  else s.bind(1, number);
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
  Stmt s(db_, "SELECT name, created, disabled, hash, quota FROM users ORDER BY name");
  std::vector<User> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    out.push_back({s.text(0), s.integer(1), s.integer(2) != 0, std::string(scheme_name(scheme_of(s.text(3)))),
                   static_cast<std::uint64_t>(std::max<std::int64_t>(s.integer(4), 0))});
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

// ------------------------------------------------------------ local delivery

namespace {

// "local@domain" with a domain name, or "@domain" (catch-all).
Status validate_alias_address(std::string_view a) {
  auto at = a.rfind('@');
  if (at == std::string_view::npos || at + 1 >= a.size() || a.size() > kMaxNameBytes)
    return {Errc::Invalid, "alias address must be local@domain or @domain"};
  for (char c : a)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) return {Errc::Invalid, "alias address contains a control character or space"};
  return {};
}

Status validate_domain(std::string_view d) {
  if (d.empty() || d.size() > 253 || d.front() == '.' || d.front() == '-') return {Errc::Invalid, "bad domain name"};
  for (char c : d)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
      return {Errc::Invalid, "bad domain name: " + std::string(d)};
  return {};
}

}  // namespace

Status UserDb::set_quota(std::string_view name, std::uint64_t bytes) {
  if (auto st = validate_name(name); !st) return st;
  if (bytes > std::uint64_t(INT64_MAX)) return {Errc::Invalid, "quota too large"};
  return update_where_name("UPDATE users SET quota = ?1 WHERE name = ?2", name, nullptr, std::int64_t(bytes));
}

Result<std::optional<LocalUser>> UserDb::find_user(std::string_view name) {
  Stmt s(db_, "SELECT name, quota FROM users WHERE name = ?1");
  s.bind(1, name);
  int rc = s.step();
  if (rc == SQLITE_DONE) return std::optional<LocalUser>();
  if (rc != SQLITE_ROW) return db_error(db_, "look up user");
  return std::optional<LocalUser>(LocalUser{s.text(0), static_cast<std::uint64_t>(std::max<std::int64_t>(s.integer(1), 0))});
}

Result<bool> UserDb::user_exists(std::string_view name) {
  auto u = find_user(name);
  if (!u) return u.error();
  return u->has_value();
}

Status UserDb::add_domain(std::string_view domain) {
  if (auto st = validate_domain(domain); !st) return st;
  Stmt s(db_, "INSERT INTO domains(name, created) VALUES(lower(?1), ?2)");
  s.bind(1, domain);
  s.bind(2, static_cast<std::int64_t>(std::time(nullptr)));
  int rc = s.step();
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
    return {Errc::Invalid, "domain " + std::string(domain) + " already exists"};
  if (rc != SQLITE_DONE) return db_error(db_, "add domain");
  return {};
}

Status UserDb::remove_domain(std::string_view domain) {
  Stmt s(db_, "DELETE FROM domains WHERE name = ?1");
  s.bind(1, domain);
  if (s.step() != SQLITE_DONE) return db_error(db_, "delete domain");
  if (sqlite3_changes(db_) == 0) return {Errc::NotFound, "no such domain: " + std::string(domain)};
  return {};
}

Result<std::vector<std::string>> UserDb::domains() {
  Stmt s(db_, "SELECT name FROM domains ORDER BY name");
  std::vector<std::string> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(s.text(0));
  if (rc != SQLITE_DONE) return db_error(db_, "list domains");
  return out;
}

Status UserDb::add_alias(std::string_view address, std::string_view target) {
  if (auto st = validate_alias_address(address); !st) return st;
  if (auto st = validate_name(target); !st) return st;
  if (iequals(address, target)) return {Errc::Invalid, "an alias cannot point to itself"};
  Stmt s(db_, "INSERT INTO aliases(address, target) VALUES(?1, ?2)");
  s.bind(1, address);
  s.bind(2, target);
  int rc = s.step();
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
    return {Errc::Invalid, "alias " + std::string(address) + " -> " + std::string(target) + " already exists"};
  if (rc != SQLITE_DONE) return db_error(db_, "add alias");
  return {};
}

Status UserDb::remove_alias(std::string_view address, std::string_view target) {
  Stmt s(db_, target.empty() ? "DELETE FROM aliases WHERE address = ?1" : "DELETE FROM aliases WHERE address = ?1 AND target = ?2");
  s.bind(1, address);
  if (!target.empty()) s.bind(2, target);
  if (s.step() != SQLITE_DONE) return db_error(db_, "delete alias");
  if (sqlite3_changes(db_) == 0) return {Errc::NotFound, "no such alias: " + std::string(address)};
  return {};
}

Result<std::vector<Alias>> UserDb::aliases() {
  Stmt s(db_, "SELECT address, target FROM aliases ORDER BY address, target");
  std::vector<Alias> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back({s.text(0), s.text(1)});
  if (rc != SQLITE_DONE) return db_error(db_, "list aliases");
  return out;
}

Status UserDb::expand(std::string_view address, unsigned depth, std::vector<LocalUser>& out) {
  if (depth > kMaxAliasDepth || out.size() >= kMaxAliasTargets) return {};
  auto add = [&](LocalUser u) {
    for (const auto& o : out)
      if (iequals(o.name, u.name)) return;
    out.push_back(std::move(u));
  };
  auto user = find_user(address);
  if (!user) return user.error();
  if (*user) {
    add(**user);
    return {};
  }
  std::vector<std::string> targets;
  {
    Stmt s(db_, "SELECT target FROM aliases WHERE address = ?1 ORDER BY target");
    s.bind(1, address);
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) targets.push_back(s.text(0));
    if (rc != SQLITE_DONE) return db_error(db_, "look up alias");
  }
  for (const auto& t : targets)
    if (auto st = expand(t, depth + 1, out); !st) return st;
  if (!targets.empty()) return {};
  auto at = address.rfind('@');
  if (at == std::string_view::npos || at == 0) return {};
  auto local = address.substr(0, at);
  auto domain = address.substr(at);  // "@example.org"
  if (auto plus = local.find('+'); plus != std::string_view::npos && plus > 0) {
    const auto before = out.size();
    if (auto st = expand(std::string(local.substr(0, plus)) + std::string(domain), depth + 1, out); !st) return st;
    if (out.size() > before) return {};
  }
  auto plain = find_user(local);
  if (!plain) return plain.error();
  if (*plain) {
    add(**plain);
    return {};
  }
  if (depth > 0) return {};  // catch-alls apply to the address as received only
  Stmt s(db_, "SELECT target FROM aliases WHERE address = ?1 ORDER BY target");
  s.bind(1, domain);
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) targets.push_back(s.text(0));
  if (rc != SQLITE_DONE) return db_error(db_, "look up catch-all");
  for (const auto& t : targets)
    if (auto st = expand(t, 1, out); !st) return st;
  return {};
}

Result<std::vector<LocalUser>> UserDb::resolve(std::string_view address) {
  std::vector<LocalUser> out;
  if (address.empty() || address.size() > kMaxNameBytes) return out;
  if (auto st = expand(address, 0, out); !st) return st.error();
  return out;
}

}  // namespace moat::directory

// See userdb.hpp. Every statement binds its parameters (no SQL built from
// user input); the migrations run through sqlite::Db::migrate, one IMMEDIATE
// transaction each, so moatd and moatctl opening a fresh file at the same
// time cannot both apply one.
#include "directory/userdb.hpp"

#include <algorithm>
#include <array>
#include <ctime>

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

}  // namespace

Result<std::unique_ptr<UserDb>> UserDb::open(const std::filesystem::path& file) {
  sqlite::Options o;
  o.label = "user database";
  o.errc = Errc::DirectoryUnavailable;  // the directory's contract (directory.hpp)
  o.file_mode = 0600;  // it holds password hashes; SQLite gives -wal and -shm the same mode
  o.pragmas = "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;";
  o.migrations = kMigrations;
  auto db = sqlite::Db::open(file, std::move(o));
  if (!db) return db.error();
  return std::unique_ptr<UserDb>(new UserDb(std::move(*db)));
}

UserDb::~UserDb() = default;

Status UserDb::insert(std::string_view name, const std::string& hash) {
  auto s = db_.cached("INSERT INTO users(name, hash, created, disabled) VALUES(?1, ?2, ?3, 0)");
  auto st = s.bind(1, name).bind(2, hash).bind(3, std::time(nullptr)).run();
  if (!st && s.duplicate()) return {Errc::Invalid, "user " + std::string(name) + " already exists"};
  return st;
}

Status UserDb::update_where_name(const char* sql, std::string_view name, const std::string* text,
                                 std::int64_t number) {
  auto s = db_.cached(sql);
  if (text != nullptr) s.bind(1, *text);
  else s.bind(1, number);
  if (auto st = s.bind(2, name).run(); !st) return st;
  if (db_.changes() == 0) return {Errc::NotFound, "no such user: " + std::string(name)};
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
  if (auto st = db_.cached("DELETE FROM users WHERE name = ?1").bind(1, name).run(); !st) return st;
  if (db_.changes() == 0) return {Errc::NotFound, "no such user: " + std::string(name)};
  return {};
}

Result<std::vector<User>> UserDb::list() {
  auto s = db_.cached("SELECT name, created, disabled, hash, quota FROM users ORDER BY name");
  std::vector<User> out;
  auto st = s.each([&] {
    out.push_back({s.text(0), s.integer(1), s.integer(2) != 0, std::string(scheme_name(scheme_of(s.text(3)))),
                   static_cast<std::uint64_t>(std::max<std::int64_t>(s.integer(4), 0))});
  });
  if (!st) return st.error();
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
    auto s = db_.cached("SELECT hash, disabled FROM users WHERE name = ?1");
    auto row = s.bind(1, name).step();
    if (!row) return row.error();
    if (!*row) {
      verify_dummy(password);
      return false;
    }
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
  auto s = db_.cached("SELECT name, quota FROM users WHERE name = ?1");
  auto row = s.bind(1, name).step();
  if (!row) return row.error();
  if (!*row) return std::optional<LocalUser>();
  return std::optional<LocalUser>(LocalUser{s.text(0), static_cast<std::uint64_t>(std::max<std::int64_t>(s.integer(1), 0))});
}

Result<bool> UserDb::user_exists(std::string_view name) {
  auto u = find_user(name);
  if (!u) return u.error();
  return u->has_value();
}

Status UserDb::add_domain(std::string_view domain) {
  if (auto st = validate_domain(domain); !st) return st;
  auto s = db_.cached("INSERT INTO domains(name, created) VALUES(lower(?1), ?2)");
  auto st = s.bind(1, domain).bind(2, std::time(nullptr)).run();
  if (!st && s.duplicate()) return {Errc::Invalid, "domain " + std::string(domain) + " already exists"};
  return st;
}

Status UserDb::remove_domain(std::string_view domain) {
  if (auto st = db_.cached("DELETE FROM domains WHERE name = ?1").bind(1, domain).run(); !st) return st;
  if (db_.changes() == 0) return {Errc::NotFound, "no such domain: " + std::string(domain)};
  return {};
}

Result<std::vector<std::string>> UserDb::domains() {
  auto s = db_.cached("SELECT name FROM domains ORDER BY name");
  std::vector<std::string> out;
  if (auto st = s.each([&] { out.push_back(s.text(0)); }); !st) return st.error();
  return out;
}

Status UserDb::add_alias(std::string_view address, std::string_view target) {
  if (auto st = validate_alias_address(address); !st) return st;
  if (auto st = validate_name(target); !st) return st;
  if (iequals(address, target)) return {Errc::Invalid, "an alias cannot point to itself"};
  auto s = db_.cached("INSERT INTO aliases(address, target) VALUES(?1, ?2)");
  auto st = s.bind(1, address).bind(2, target).run();
  if (!st && s.duplicate())
    return {Errc::Invalid, "alias " + std::string(address) + " -> " + std::string(target) + " already exists"};
  return st;
}

Status UserDb::remove_alias(std::string_view address, std::string_view target) {
  auto s = db_.cached(target.empty() ? "DELETE FROM aliases WHERE address = ?1"
                                      : "DELETE FROM aliases WHERE address = ?1 AND target = ?2");
  s.bind(1, address);
  if (!target.empty()) s.bind(2, target);
  if (auto st = s.run(); !st) return st;
  if (db_.changes() == 0) return {Errc::NotFound, "no such alias: " + std::string(address)};
  return {};
}

Result<std::vector<Alias>> UserDb::aliases() {
  auto s = db_.cached("SELECT address, target FROM aliases ORDER BY address, target");
  std::vector<Alias> out;
  if (auto st = s.each([&] { out.push_back({s.text(0), s.text(1)}); }); !st) return st.error();
  return out;
}

Result<std::vector<std::string>> UserDb::alias_targets(std::string_view address) {
  auto s = db_.cached("SELECT target FROM aliases WHERE address = ?1 ORDER BY target");
  std::vector<std::string> out;
  if (auto st = s.bind(1, address).each([&] { out.push_back(s.text(0)); }); !st) return st.error();
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
  auto targets = alias_targets(address);
  if (!targets) return targets.error();
  for (const auto& t : *targets)
    if (auto st = expand(t, depth + 1, out); !st) return st;
  if (!targets->empty()) return {};
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
  auto catch_all = alias_targets(domain);
  if (!catch_all) return catch_all.error();
  for (const auto& t : *catch_all)
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

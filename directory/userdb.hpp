// moat's own user database: one SQLite file (config db_path(), WAL mode),
// schema versioned with PRAGMA user_version so later tables (domains,
// aliases, quotas) arrive as numbered migrations. Blocking: call it from a
// thread pool (see directory.hpp), never from an I/O thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

struct sqlite3;

namespace moat::directory {

struct User {
  std::string name;
  std::int64_t created = 0;  // Unix seconds
  bool disabled = false;
  std::string scheme;        // "argon2id", "bcrypt", "sha512-crypt"
};

class UserDb {
 public:
  // Creates the folders, the file (mode 0600: it holds password hashes) and
  // the schema as needed. SQLite failures are Errc::DirectoryUnavailable.
  static Result<std::unique_ptr<UserDb>> open(const std::filesystem::path& file);
  ~UserDb();
  UserDb(const UserDb&) = delete;
  UserDb& operator=(const UserDb&) = delete;

  Status add(std::string_view name, std::string_view password);
  // Imports an existing encoded hash ($argon2id$, $2b$/$2y$, $6$) unchanged.
  Status add_hash(std::string_view name, std::string_view encoded);
  Status set_password(std::string_view name, std::string_view password);
  Status set_disabled(std::string_view name, bool disabled);
  Status remove(std::string_view name);
  Result<std::vector<User>> list();
  // true only for an existing, enabled user whose password matches. Unknown
  // users cost one dummy argon2id check so timing does not tell them apart.
  Result<bool> verify(std::string_view name, std::string_view password);

  static constexpr int kSchemaVersion = 1;

 private:
  explicit UserDb(sqlite3* db) : db_(db) {}
  Status migrate();
  Status insert(std::string_view name, const std::string& hash);
  Status update_where_name(const char* sql, std::string_view name, const std::string* text, int number);
  sqlite3* db_;
};

}  // namespace moat::directory

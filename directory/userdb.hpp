// moat's own user database: one SQLite file (config db_path(), WAL mode),
// schema versioned with PRAGMA user_version (numbered migrations): users
// with quotas, local domains, aliases and catch-alls ("@domain"). Blocking:
// call it from a thread pool (see directory.hpp), never from an I/O thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/sqlite.hpp"

namespace moat::directory {

struct User {
  std::string name;
  std::int64_t created = 0;  // Unix seconds
  bool disabled = false;
  std::string scheme;        // "argon2id", "bcrypt", "sha512-crypt"
  std::uint64_t quota = 0;   // bytes in the mailbox store; 0: no limit
};

// An alias sends mail for `address` ("sales@example.org", or "@example.org"
// for a catch-all) to `target` (a user, or another alias).
struct Alias {
  std::string address;
  std::string target;
};

// A user a local address delivers to.
struct LocalUser {
  std::string name;
  std::uint64_t quota = 0;
};

constexpr unsigned kMaxAliasDepth = 8;  // alias → alias → ... (loops end here)
constexpr std::size_t kMaxAliasTargets = 1000;

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

  Status set_quota(std::string_view name, std::uint64_t bytes);
  Result<bool> user_exists(std::string_view name);

  // Local domains added at run time (moatctl domain); [local] domains in the
  // config file are the others.
  Status add_domain(std::string_view domain);
  Status remove_domain(std::string_view domain);
  Result<std::vector<std::string>> domains();

  Status add_alias(std::string_view address, std::string_view target);
  // Removes one target, or every target of `address` when `target` is empty.
  Status remove_alias(std::string_view address, std::string_view target = {});
  Result<std::vector<Alias>> aliases();

  // The users mail to `address` (in a local domain) goes to: a user of that
  // name, else its aliases, else the part before '+' (subaddress), else a
  // plain user name equal to the local part, else the domain's catch-all.
  // Empty: unknown recipient. Deduplicated, in the order found.
  Result<std::vector<LocalUser>> resolve(std::string_view address);

  static constexpr int kSchemaVersion = 2;

 private:
  explicit UserDb(sqlite::Db db) : db_(std::move(db)) {}
  Status insert(std::string_view name, const std::string& hash);
  Status update_where_name(const char* sql, std::string_view name, const std::string* text, std::int64_t number);
  Result<std::optional<LocalUser>> find_user(std::string_view name);
  Result<std::vector<std::string>> alias_targets(std::string_view address);
  Status expand(std::string_view address, unsigned depth, std::vector<LocalUser>& out);
  sqlite::Db db_;
};

}  // namespace moat::directory

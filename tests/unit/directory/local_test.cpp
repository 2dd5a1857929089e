// Unit tests for local delivery data in directory/userdb: quotas, local
// domains, aliases, catch-alls and how an address resolves to users; and
// the migration of a version-1 database.
#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <filesystem>

#include "directory/userdb.hpp"
#include "tests/support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace moat;
using namespace moat::directory;

namespace {

std::unique_ptr<UserDb> open_db(const fs::path& p) {
  auto db = UserDb::open(p);
  INFO((db ? std::string() : db.error().detail));
  REQUIRE(db.ok());
  return std::move(*db);
}

std::vector<std::string> names(UserDb& db, std::string_view address) {
  auto r = db.resolve(address);
  REQUIRE(r.ok());
  std::vector<std::string> out;
  for (const auto& u : *r) out.push_back(u.name);
  return out;
}

// Users are added by hash import: argon2 hashing is slow under ASan.
constexpr const char* kHash = "$6$saltsalt$OzwDyf7r5zb.jBGUQ8fnNJZDn8U2ThzL8Ex7R0q4cMD/wNiJ3/5ZVJ2tXNsKVkg3dGIbaV5OcfOPhxhfl2LVS/";

}  // namespace

TEST_CASE("addresses resolve to users, aliases, subaddresses and catch-alls", "[directory][local]") {
  test::TempDir tmp;
  auto db = open_db(tmp.path / "moat.sqlite");
  for (const char* u : {"alice@example.test", "bob@example.test", "carol"}) REQUIRE(db->add_hash(u, kHash).ok());
  REQUIRE(db->add_alias("sales@example.test", "alice@example.test").ok());
  REQUIRE(db->add_alias("sales@example.test", "bob@example.test").ok());
  REQUIRE(db->add_alias("team@example.test", "sales@example.test").ok());   // alias of an alias
  REQUIRE(db->add_alias("team@example.test", "ALICE@example.test").ok());   // duplicate user, other case
  REQUIRE(db->add_alias("loop1@example.test", "loop2@example.test").ok());
  REQUIRE(db->add_alias("loop2@example.test", "loop1@example.test").ok());
  REQUIRE(db->add_alias("@catch.test", "bob@example.test").ok());

  CHECK(names(*db, "alice@example.test") == std::vector<std::string>{"alice@example.test"});
  CHECK(names(*db, "Alice@Example.TEST") == std::vector<std::string>{"alice@example.test"});
  CHECK(names(*db, "sales@example.test") == std::vector<std::string>{"alice@example.test", "bob@example.test"});
  CHECK(names(*db, "team@example.test") == std::vector<std::string>{"alice@example.test", "bob@example.test"});
  CHECK(names(*db, "alice+lists@example.test") == std::vector<std::string>{"alice@example.test"});
  CHECK(names(*db, "carol@anything.test") == std::vector<std::string>{"carol"});  // plain user names
  CHECK(names(*db, "whoever@catch.test") == std::vector<std::string>{"bob@example.test"});
  CHECK(names(*db, "nobody@example.test").empty());
  CHECK(names(*db, "loop1@example.test").empty());  // a loop ends, resolving to nobody
  CHECK(names(*db, "").empty());

  REQUIRE(db->remove_alias("sales@example.test", "bob@example.test").ok());
  CHECK(names(*db, "sales@example.test") == std::vector<std::string>{"alice@example.test"});
  REQUIRE(db->remove_alias("@catch.test").ok());
  CHECK(names(*db, "whoever@catch.test").empty());
  CHECK(db->remove_alias("@catch.test").error().code == Errc::NotFound);
  CHECK(db->add_alias("no-domain", "alice@example.test").error().code == Errc::Invalid);
  CHECK(db->add_alias("x@example.test", "x@example.test").error().code == Errc::Invalid);
  CHECK(db->add_alias("sales@example.test", "alice@example.test").error().code == Errc::Invalid);  // exists
  auto all = db->aliases();
  REQUIRE(all.ok());
  CHECK(all->size() == 5);
}

TEST_CASE("quotas and local domains", "[directory][local]") {
  test::TempDir tmp;
  auto db = open_db(tmp.path / "moat.sqlite");
  REQUIRE(db->add_hash("alice@example.test", kHash).ok());
  CHECK(db->resolve("alice@example.test")->at(0).quota == 0);
  REQUIRE(db->set_quota("alice@example.test", 5u << 20).ok());
  CHECK(db->resolve("alice@example.test")->at(0).quota == 5u << 20);
  CHECK(db->list()->at(0).quota == 5u << 20);
  CHECK(db->set_quota("nobody", 1).error().code == Errc::NotFound);

  REQUIRE(db->add_domain("Example.TEST").ok());
  REQUIRE(db->add_domain("other.test").ok());
  CHECK(db->add_domain("example.test").error().code == Errc::Invalid);  // already there
  CHECK(db->add_domain("bad domain").error().code == Errc::Invalid);
  CHECK(*db->domains() == std::vector<std::string>{"example.test", "other.test"});
  REQUIRE(db->remove_domain("EXAMPLE.test").ok());
  CHECK(*db->domains() == std::vector<std::string>{"other.test"});
  CHECK(db->remove_domain("example.test").error().code == Errc::NotFound);
}

TEST_CASE("a version-1 database migrates and keeps its users", "[directory][local]") {
  test::TempDir tmp;
  auto p = tmp.path / "v1.sqlite";
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(p.c_str(), &raw) == SQLITE_OK);
  REQUIRE(sqlite3_exec(raw,
                       "CREATE TABLE users (name TEXT PRIMARY KEY COLLATE NOCASE, hash TEXT NOT NULL,"
                       " created INTEGER NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);"
                       "INSERT INTO users VALUES('old@example.test', 'x', 1, 0);"
                       "PRAGMA user_version=1;",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(raw);
  auto db = open_db(p);
  auto users = db->list();
  REQUIRE(users->size() == 1);
  CHECK(users->at(0).quota == 0);
  CHECK(names(*db, "old@example.test") == std::vector<std::string>{"old@example.test"});
  REQUIRE(db->add_domain("example.test").ok());
}

// common/sqlite: values round trip through bound parameters, files are made
// with their folder and mode, SQLite errors map to the right Errc (busy and
// locked are temporary, a full disk is DiskFull, a foreign file IoError),
// transactions roll back on scope exit, migrations, cached statements.
#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <array>
#include <chrono>
#include <fstream>
#include <limits>

#include "common/sqlite.hpp"
#include "tests/support/temp_dir.hpp"

using namespace moat;
using namespace moat::sqlite;
namespace fs = std::filesystem;

namespace {

Db open_db(const fs::path& p, Options o = {}) {
  auto db = Db::open(p, std::move(o));
  INFO((db ? std::string() : db.error().detail));
  REQUIRE(db);
  return std::move(*db);
}

std::int64_t count(Db& db, const char* table) {
  auto s = db.prepare(std::string("SELECT count(*) FROM ") + table);
  auto r = s.step();
  REQUIRE(r);
  REQUIRE(*r);
  return s.integer(0);
}

Options wal(int busy_ms = 5000) {
  Options o;
  o.label = "test db";
  o.pragmas = "PRAGMA journal_mode=WAL;";
  o.busy_timeout_ms = busy_ms;
  return o;
}

}  // namespace

TEST_CASE("sqlite: values round trip through bound parameters", "[sqlite]") {
  test::TempDir t;
  auto db = open_db(t.path / "a.sqlite");
  REQUIRE(db.exec("CREATE TABLE v(t, i, r, b, n)"));
  const std::string text("a\0b'; DROP TABLE v; --", 22);
  const std::string bytes("\x00\xff\x01", 3);
  REQUIRE(db.prepare("INSERT INTO v VALUES (?1, ?2, ?3, ?4, ?5)")
              .bind(1, text)
              .bind(2, std::numeric_limits<std::int64_t>::min())
              .bind(3, 0.25)
              .bind(4, Blob{bytes})
              .bind(5, nullptr)
              .run());
  REQUIRE(db.prepare("INSERT INTO v VALUES (?1, ?2, ?3, ?4, ?5)")
              .bind(1, std::string_view())
              .bind(2, true)
              .bind(3, 1e300)
              .bind(4, Blob{})
              .bind(5, 7u)
              .run());
  auto s = db.prepare("SELECT t, i, r, b, n, typeof(t), typeof(b) FROM v ORDER BY rowid");
  REQUIRE(*s.step());
  CHECK(s.text(0) == text);
  CHECK(s.integer(1) == std::numeric_limits<std::int64_t>::min());
  CHECK(s.real(2) == 0.25);
  CHECK(s.blob(3) == bytes);
  CHECK(s.is_null(4));
  CHECK(s.text(4).empty());
  CHECK(s.text(5) == "text");
  CHECK(s.text(6) == "blob");
  REQUIRE(*s.step());
  CHECK(s.text(0).empty());
  CHECK_FALSE(s.is_null(0));  // "" is bound as an empty string, not NULL
  CHECK(s.text(5) == "text");
  CHECK(s.integer(1) == 1);
  CHECK(s.real(2) == 1e300);
  CHECK(s.integer(4) == 7);
  CHECK_FALSE(*s.step());
  CHECK(db.changes() == 1);
  CHECK(db.last_insert_rowid() == 2);
}

TEST_CASE("sqlite: open makes the folder and the file with its mode, and runs the pragmas", "[sqlite]") {
  test::TempDir t;
  auto p = t.path / "x" / "y" / "db.sqlite";
  Options o = wal();
  o.file_mode = 0600;
  auto db = open_db(p, o);
  CHECK((fs::status(p).permissions() & (fs::perms::group_all | fs::perms::others_all)) == fs::perms::none);
  auto s = db.prepare("PRAGMA journal_mode");
  REQUIRE(*s.step());
  CHECK(s.text(0) == "wal");
  CHECK(Db().exec("SELECT 1").error().code == Errc::IoError);  // a closed Db answers errors, not crashes
}

TEST_CASE("sqlite: errors map to one Errc each and name the statement", "[sqlite]") {
  test::TempDir t;
  SECTION("bad SQL: IoError at step, with the label and the statement") {
    auto db = open_db(t.path / "a.sqlite", wal());
    auto s = db.prepare("SELEKT 1");
    auto r = s.bind(1, 5).step();  // binding a failed statement is a no-op
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::IoError);
    CHECK(r.error().detail.find("test db: ") == 0);
    CHECK(r.error().detail.find("syntax error (in: SELEKT 1)") != std::string::npos);
    CHECK_FALSE(db.cached("SELEKT 2").step());
  }
  SECTION("a parameter index out of range fails the step, not silently") {
    auto db = open_db(t.path / "a.sqlite");
    auto s = db.prepare("SELECT ?1");
    auto r = s.bind(2, 1).step();
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("out of range") != std::string::npos);
  }
  SECTION("a file that is not a database: a temporary IoError, never a 5xx") {
    std::ofstream(t.path / "junk") << std::string(8192, 'x');
    auto db = Db::open(t.path / "junk", wal());
    REQUIRE_FALSE(db);
    CHECK(db.error().code == Errc::IoError);
    CHECK(is_temporary(db.error().code));
    CHECK(db.error().detail.find("file is not a database") != std::string::npos);
  }
  SECTION("the folder cannot be made: IoError") {
    std::ofstream(t.path / "file") << "x";
    auto db = Db::open(t.path / "file" / "db" / "a.sqlite");
    REQUIRE_FALSE(db);
    CHECK(db.error().code == Errc::IoError);
  }
  SECTION("an owner's code replaces every mapped code") {
    std::ofstream(t.path / "junk") << std::string(8192, 'x');
    Options o = wal();
    o.errc = Errc::DirectoryUnavailable;
    auto db = Db::open(t.path / "junk", o);
    REQUIRE_FALSE(db);
    CHECK(db.error().code == Errc::DirectoryUnavailable);
  }
  SECTION("a full database: DiskFull") {
    auto db = open_db(t.path / "a.sqlite");
    REQUIRE(db.exec("CREATE TABLE big(b); PRAGMA max_page_count=8;"));
    Status st;
    for (int i = 0; i < 100 && st; ++i)
      st = db.cached("INSERT INTO big VALUES (?1)").bind(1, Blob{std::string(4096, 'x')}).run();
    REQUIRE_FALSE(st);
    CHECK(st.error().code == Errc::DiskFull);
  }
  SECTION("a duplicate key is told apart from other failures") {
    auto db = open_db(t.path / "a.sqlite");
    REQUIRE(db.exec("CREATE TABLE u(name TEXT PRIMARY KEY, x NOT NULL)"));
    REQUIRE(db.prepare("INSERT INTO u VALUES ('a', 1)").run());
    auto dup = db.prepare("INSERT INTO u VALUES ('a', 1)");
    CHECK_FALSE(dup.run());
    CHECK(dup.duplicate());
    auto null = db.prepare("INSERT INTO u VALUES ('b', NULL)");
    CHECK_FALSE(null.run());
    CHECK_FALSE(null.duplicate());
  }
}

TEST_CASE("sqlite: every result code maps to a temporary Errc", "[sqlite]") {
  struct Row {
    int rc;
    Errc want;
  };
  auto row = GENERATE(Row{SQLITE_BUSY, Errc::TempFailure}, Row{SQLITE_BUSY_SNAPSHOT, Errc::TempFailure},
                      Row{SQLITE_LOCKED, Errc::TempFailure}, Row{SQLITE_LOCKED_SHAREDCACHE, Errc::TempFailure},
                      Row{SQLITE_FULL, Errc::DiskFull}, Row{SQLITE_IOERR_FSYNC, Errc::IoError},
                      Row{SQLITE_CORRUPT, Errc::IoError}, Row{SQLITE_NOTADB, Errc::IoError},
                      Row{SQLITE_CANTOPEN, Errc::IoError}, Row{SQLITE_READONLY, Errc::IoError},
                      Row{SQLITE_CONSTRAINT_UNIQUE, Errc::IoError}, Row{SQLITE_NOMEM, Errc::IoError});
  CAPTURE(row.rc);
  CHECK(errc_of(row.rc) == row.want);
  CHECK(is_temporary(errc_of(row.rc)));
}

TEST_CASE("sqlite: a lock held past the busy timeout is a temporary error", "[sqlite]") {
  test::TempDir t;
  auto p = t.path / "a.sqlite";
  auto a = open_db(p, wal());
  REQUIRE(a.exec("CREATE TABLE t(x)"));
  auto b = open_db(p, wal(100));
  auto held = a.transaction();
  REQUIRE(held);
  auto t0 = std::chrono::steady_clock::now();
  auto tx = b.transaction();
  auto waited = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(tx);
  CHECK(tx.error().code == Errc::TempFailure);
  CHECK(tx.error().detail.find("database is locked") != std::string::npos);
  CHECK(waited >= std::chrono::milliseconds(90));  // the busy timeout was honoured, not skipped
  auto ins = b.prepare("INSERT INTO t VALUES (1)").run();
  REQUIRE_FALSE(ins);
  CHECK(ins.error().code == Errc::TempFailure);
  REQUIRE(held->commit());
  CHECK(b.prepare("INSERT INTO t VALUES (1)").run());
  CHECK(count(a, "t") == 1);
}

TEST_CASE("sqlite: a table locked by the same connection is a temporary error", "[sqlite]") {
  test::TempDir t;
  auto db = open_db(t.path / "a.sqlite");
  REQUIRE(db.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);"));
  auto reading = db.prepare("SELECT x FROM t");
  REQUIRE(*reading.step());
  auto st = db.exec("DROP TABLE t");  // SQLITE_LOCKED: a statement is still reading it
  REQUIRE_FALSE(st);
  CHECK(st.error().code == Errc::TempFailure);
}

TEST_CASE("sqlite: transactions roll back on scope exit unless committed", "[sqlite]") {
  test::TempDir t;
  auto db = open_db(t.path / "a.sqlite", wal());
  REQUIRE(db.exec("CREATE TABLE t(x UNIQUE)"));
  auto insert = [&](int x) { return db.cached("INSERT INTO t VALUES (?1)").bind(1, x).run(); };
  {
    auto tx = db.transaction();
    REQUIRE(tx);
    REQUIRE(insert(1));
  }  // an early return on an error path looks like this
  CHECK(count(db, "t") == 0);
  CHECK(sqlite3_get_autocommit(db.handle()) != 0);  // nothing left open
  {
    auto tx = db.transaction();
    REQUIRE(insert(1));
    REQUIRE(tx->commit());
    CHECK_FALSE(tx->commit());  // once only
  }
  CHECK(count(db, "t") == 1);

  SECTION("nested: an inner failure undoes the inner work only") {
    auto outer = db.transaction();
    REQUIRE(outer);
    REQUIRE(insert(2));
    {
      auto inner = db.transaction();
      REQUIRE(inner);
      REQUIRE(insert(3));
      CHECK_FALSE(insert(1));  // duplicate: the inner guard is dropped without commit
    }
    {
      auto inner = db.transaction();
      REQUIRE(insert(4));
      REQUIRE(inner->commit());
    }
    REQUIRE(outer->commit());
    auto s = db.prepare("SELECT group_concat(x) FROM (SELECT x FROM t ORDER BY x)");
    REQUIRE(*s.step());
    CHECK(s.text(0) == "1,2,4");
  }
  SECTION("a moved guard rolls back once, from its new place") {
    std::optional<Transaction> keep;
    {
      auto tx = db.transaction();
      REQUIRE(insert(5));
      keep.emplace(std::move(*tx));
    }
    CHECK(count(db, "t") == 2);  // the moved-from guard did not roll back
    keep.reset();
    CHECK(count(db, "t") == 1);
  }
}

TEST_CASE("sqlite: numbered migrations", "[sqlite]") {
  test::TempDir t;
  auto p = t.path / "a.sqlite";
  constexpr std::array<const char*, 2> kSteps{
      "CREATE TABLE a(x)",
      "CREATE TABLE b(y); INSERT INTO a VALUES (1)",
  };
  {
    auto db = open_db(p);
    REQUIRE(db.migrate(std::span<const char* const>(kSteps).first(1)));
    CHECK(*db.user_version() == 1);
    REQUIRE(db.migrate(kSteps));
    REQUIRE(db.migrate(kSteps));  // nothing left to do
    CHECK(*db.user_version() == 2);
    CHECK(count(db, "a") == 1);
  }
  SECTION("a failing step leaves the version and the schema as they were") {
    auto db = open_db(t.path / "b.sqlite");
    constexpr std::array<const char*, 2> kBad{"CREATE TABLE a(x)", "CREATE TABLE c(z); CREATE TABLE a(x)"};
    auto st = db.migrate(kBad);
    REQUIRE_FALSE(st);
    CHECK(st.error().detail.find("migrate schema to version 2") != std::string::npos);
    CHECK(*db.user_version() == 1);
    CHECK(db.prepare("SELECT * FROM c").step().error().detail.find("no such table") != std::string::npos);
  }
  SECTION("a file from a newer version is refused") {
    auto db = open_db(p);
    REQUIRE(db.exec("PRAGMA user_version=9"));
    auto st = db.migrate(kSteps);
    REQUIRE_FALSE(st);
    CHECK(st.error().detail.find("newer") != std::string::npos);
    CHECK(is_temporary(st.error().code));
  }
}

TEST_CASE("sqlite: cached statements are reused, reset and handed back", "[sqlite]") {
  test::TempDir t;
  auto p = t.path / "a.sqlite";
  auto a = open_db(p, wal());
  REQUIRE(a.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);"));

  // Two handles of one SQL at once (a recursive lookup): each keeps its own place.
  {
    auto s1 = a.cached("SELECT x FROM t WHERE x >= ?1 ORDER BY x");
    auto s2 = a.cached("SELECT x FROM t WHERE x >= ?1 ORDER BY x");
    REQUIRE(*s1.bind(1, 2).step());
    REQUIRE(*s2.bind(1, 1).step());
    CHECK(s1.integer(0) == 2);
    CHECK(s2.integer(0) == 1);
  }
  // Bindings do not leak into the next use: an unbound parameter is NULL.
  {
    auto s = a.cached("SELECT ?1 IS NULL");
    REQUIRE(*s.bind(1, 5).step());
    CHECK(s.integer(0) == 0);
  }
  {
    auto s = a.cached("SELECT ?1 IS NULL");
    REQUIRE(*s.step());
    CHECK(s.integer(0) == 1);
  }

  // A handle dropped mid-rows ends its read transaction, so a writer's
  // checkpoint can reset the WAL; a live one holds it (the control).
  auto b = open_db(p, wal(50));
  auto checkpoint_blocked = [&] {
    REQUIRE(b.prepare("INSERT INTO t VALUES (9)").run());
    auto c = b.prepare("PRAGMA wal_checkpoint(TRUNCATE)");
    REQUIRE(*c.step());
    return c.integer(0) != 0;
  };
  {
    auto reading = a.cached("SELECT x FROM t");
    REQUIRE(*reading.step());
    CHECK(checkpoint_blocked());
  }
  CHECK_FALSE(checkpoint_blocked());
}

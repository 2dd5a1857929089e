// quarantine::Store: files and rows, durability layout, recovery, expiry,
// sender lists, and ids that must never become paths.
#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <fstream>

#include "quarantine/store.hpp"
#include "tests/support/temp_dir.hpp"

using namespace moat;
using namespace moat::quarantine;
namespace fs = std::filesystem;

namespace {

Entry entry(std::string id, std::int64_t time, std::int64_t expires, Kind kind = Kind::Quarantined) {
  Entry e;
  e.id = std::move(id);
  e.kind = kind;
  e.time = time;
  e.expires = expires;
  e.sender = "bounce@sender.test";
  e.recipients = {"a@example.test", "b@example.test"};
  e.from = "Sender <ceo@sender.test>";
  e.subject = "Cheap \"pills\"; 50% off";
  e.score = 12.5;
  e.symbols = "GTUBE(1000) HELO_BARE_IP(1.2)";
  e.reason = "GTUBE";
  e.client = "unknown[192.0.2.1]";
  e.auth_domain = "sender.test";
  e.size = 5;
  return e;
}

std::size_t files_in(const fs::path& p) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& f : fs::directory_iterator(p)) ++n;
  return n;
}

}  // namespace

TEST_CASE("put stores the file in msg/ and the row; get/list/read give them back", "[quarantine][store]") {
  test::TempDir t;
  Store s(t.path / "q", t.path / "db" / "q.sqlite");
  REQUIRE(s.open());
  REQUIRE(s.put(entry("AAAAAAAAAA0001", 100, 1000), "bytes", true));
  REQUIRE(s.put(entry("AAAAAAAAAA0002", 200, 1000, Kind::Rejected), "other", false));
  CHECK(fs::exists(t.path / "q" / "msg" / "AAAAAAAAAA0001"));
  CHECK(files_in(t.path / "q" / "tmp") == 0);
  CHECK((fs::status(t.path / "db" / "q.sqlite").permissions() & fs::perms::others_read) == fs::perms::none);

  auto got = s.get("AAAAAAAAAA0001");
  REQUIRE(got);
  CHECK(got->recipients == std::vector<std::string>{"a@example.test", "b@example.test"});
  CHECK(got->subject == "Cheap \"pills\"; 50% off");
  CHECK(got->score == Approx(12.5));
  CHECK(got->auth_domain == "sender.test");
  CHECK(got->kind == Kind::Quarantined);
  CHECK(*s.read("AAAAAAAAAA0001") == "bytes");

  auto all = s.list();
  REQUIRE(all);
  REQUIRE(all->size() == 2);
  CHECK((*all)[0].id == "AAAAAAAAAA0002");  // newest first
  auto rejected = s.list(0, Kind::Rejected);
  REQUIRE(rejected);
  REQUIRE(rejected->size() == 1);
  CHECK((*rejected)[0].kind == Kind::Rejected);
  CHECK(s.list(1)->size() == 1);

  // A second Store on the same files (moatctl beside moatd) sees the same.
  Store other(t.path / "q", t.path / "db" / "q.sqlite");
  REQUIRE(other.open());
  CHECK(other.get("AAAAAAAAAA0002")->kind == Kind::Rejected);
}

TEST_CASE("remove deletes row and file; unknown ids are NotFound", "[quarantine][store]") {
  test::TempDir t;
  Store s(t.path / "q", t.path / "q.sqlite");
  REQUIRE(s.open());
  REQUIRE(s.put(entry("AAAAAAAAAA0001", 100, 1000), "bytes", true));
  REQUIRE(s.remove("AAAAAAAAAA0001"));
  CHECK(!fs::exists(s.file("AAAAAAAAAA0001")));
  CHECK(s.get("AAAAAAAAAA0001").error().code == Errc::NotFound);
  CHECK(s.remove("AAAAAAAAAA0001").error().code == Errc::NotFound);
  CHECK(s.read("AAAAAAAAAA0001").error().code == Errc::NotFound);
}

TEST_CASE("ids that are not queue ids never reach the filesystem", "[quarantine][store]") {
  test::TempDir t;
  Store s(t.path / "q", t.path / "q.sqlite");
  REQUIRE(s.open());
  std::ofstream(t.path / "secret") << "x";
  auto bad = GENERATE(as<std::string>{}, "../secret", "..", "", "AAAAAAAAA", "AAAAAAAAAA/0001", "AAAAAAAAAA.0001",
                      "/etc/passwd", "AAAAAAAAAAAAAAAAAAAAA");
  CAPTURE(bad);
  CHECK(!valid_id(bad));
  CHECK(s.get(bad).error().code == Errc::Invalid);
  CHECK(s.read(bad).error().code == Errc::Invalid);
  CHECK(s.remove(bad).error().code == Errc::Invalid);
  CHECK(!s.put(entry(bad, 1, 2), "x", false));
  CHECK(fs::exists(t.path / "secret"));
}

TEST_CASE("expire removes entries whose time has come, rows and files", "[quarantine][store]") {
  test::TempDir t;
  Store s(t.path / "q", t.path / "q.sqlite");
  REQUIRE(s.open());
  REQUIRE(s.put(entry("AAAAAAAAAA0001", 100, 500), "a", true));
  REQUIRE(s.put(entry("AAAAAAAAAA0002", 100, 1500), "b", true));
  REQUIRE(s.put(entry("AAAAAAAAAA0003", 100, 1000, Kind::Rejected), "c", false));
  CHECK(*s.expire(999) == 1);
  CHECK(*s.expire(1000) == 1);  // at the expiry second
  auto left = s.list();
  REQUIRE(left->size() == 1);
  CHECK((*left)[0].id == "AAAAAAAAAA0002");
  CHECK(!fs::exists(s.file("AAAAAAAAAA0001")));
  CHECK(!fs::exists(s.file("AAAAAAAAAA0003")));
  CHECK(fs::exists(s.file("AAAAAAAAAA0002")));
  CHECK(*s.expire(999) == 0);
}

TEST_CASE("recovery: tmp emptied, files without rows and rows without files dropped", "[quarantine][store]") {
  test::TempDir t;
  {
    Store s(t.path / "q", t.path / "q.sqlite");
    REQUIRE(s.open());
    REQUIRE(s.put(entry("AAAAAAAAAA0001", 100, 5000), "kept", true));
    REQUIRE(s.put(entry("AAAAAAAAAA0002", 100, 5000), "file gone", true));
  }
  fs::remove(t.path / "q" / "msg" / "AAAAAAAAAA0002");
  std::ofstream(t.path / "q" / "msg" / "AAAAAAAAAA0003") << "renamed, row never written";
  std::ofstream(t.path / "q" / "tmp" / "AAAAAAAAAA0004") << "half written";

  Store moatctl(t.path / "q", t.path / "q.sqlite");
  REQUIRE(moatctl.open(false));  // no recovery: another process may be mid-put
  CHECK(fs::exists(t.path / "q" / "msg" / "AAAAAAAAAA0003"));

  Store s(t.path / "q", t.path / "q.sqlite");
  REQUIRE(s.open(true));
  CHECK(!fs::exists(t.path / "q" / "msg" / "AAAAAAAAAA0003"));
  CHECK(!fs::exists(t.path / "q" / "tmp" / "AAAAAAAAAA0004"));
  auto l = s.list();
  REQUIRE(l->size() == 1);
  CHECK((*l)[0].id == "AAAAAAAAAA0001");
  CHECK(*s.read("AAAAAAAAAA0001") == "kept");
}

TEST_CASE("a database from a newer moat or a foreign file is a temporary error", "[quarantine][store]") {
  test::TempDir t;
  SECTION("newer schema") {
    { Store s(t.path / "q", t.path / "q.sqlite"); REQUIRE(s.open()); }
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open((t.path / "q.sqlite").c_str(), &raw) == SQLITE_OK);
    REQUIRE(sqlite3_exec(raw, "PRAGMA user_version=99", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
    Store s(t.path / "q", t.path / "q.sqlite");
    auto st = s.open();
    REQUIRE_FALSE(st);
    CHECK(st.error().detail.find("newer") != std::string::npos);
    CHECK(is_temporary(st.error().code));
    CHECK_FALSE(s.put(entry("AAAAAAAAAA0001", 100, 1000), "x", true));
    CHECK(!fs::exists(s.file("AAAAAAAAAA0001")));  // no row, so no file either
  }
  SECTION("not a database") {
    std::ofstream(t.path / "q.sqlite") << std::string(8192, 'x');
    Store s(t.path / "q", t.path / "q.sqlite");
    auto st = s.open();
    REQUIRE_FALSE(st);
    CHECK(st.error().code == Errc::IoError);
  }
}

TEST_CASE("sender lists: exact domain and parents, most specific wins", "[quarantine][store]") {
  test::TempDir t;
  Store s(t.path / "q", t.path / "q.sqlite");
  REQUIRE(s.open());
  REQUIRE(s.set_list("Example.COM", ListKind::Block));
  REQUIRE(s.set_list("news.example.com", ListKind::Allow));
  CHECK(*s.lookup("example.com") == ListKind::Block);
  CHECK(*s.lookup("mail.example.com") == ListKind::Block);
  CHECK(*s.lookup("a.news.example.com") == ListKind::Allow);
  CHECK(*s.lookup("NEWS.example.com") == ListKind::Allow);
  CHECK(!*s.lookup("example.org"));
  CHECK(!*s.lookup("notexample.com"));
  CHECK(!*s.lookup(""));
  REQUIRE(s.set_list("example.com", ListKind::Allow));  // replaces
  CHECK(*s.lookup("example.com") == ListKind::Allow);
  auto l = s.lists();
  REQUIRE(l->size() == 2);
  CHECK((*l)[0].domain == "example.com");
  REQUIRE(s.unlist("example.com"));
  CHECK(s.unlist("example.com").error().code == Errc::NotFound);
  CHECK(!*s.lookup("example.com"));
}

// Unit tests for the async Directory: authentication runs on the pool and
// resumes on the caller's io_context; database failures fail closed.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "tests/support/temp_dir.hpp"
#include "directory/directory.hpp"

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace moat;

namespace {

using test::TempDir;

}  // namespace

TEST_CASE("Directory authenticates off the I/O thread", "[directory]") {
  TempDir tmp;
  auto file = tmp.path / "db" / "moat.sqlite";
  {
    auto db = directory::UserDb::open(file);
    REQUIRE(db.ok());
    REQUIRE((*db)->add("alice@example.test", "wonderland").ok());
  }
  asio::thread_pool pool(2);
  asio::io_context io;
  directory::Directory d(file, pool);

  std::vector<Result<bool>> results;
  std::vector<bool> resumed_on_io;
  auto io_thread = std::this_thread::get_id();
  auto one = [&](std::string user, std::string pw) -> asio::awaitable<void> {
    auto r = co_await d.authenticate(std::move(user), std::move(pw));
    resumed_on_io.push_back(std::this_thread::get_id() == io_thread);
    results.push_back(std::move(r));
  };
  // Several at once so two worker threads use connections concurrently.
  asio::co_spawn(io, one("alice@example.test", "wonderland"), asio::detached);
  asio::co_spawn(io, one("alice@example.test", "wrong"), asio::detached);
  asio::co_spawn(io, one("nobody@example.test", "wonderland"), asio::detached);
  asio::co_spawn(io, one("ALICE@example.test", "wonderland"), asio::detached);
  io.run();
  pool.join();

  REQUIRE(results.size() == 4);
  int ok = 0;
  for (auto& r : results) {
    REQUIRE(r.ok());
    ok += *r ? 1 : 0;
  }
  CHECK(ok == 2);
  for (bool b : resumed_on_io) CHECK(b);
}

TEST_CASE("Directory fails closed when the database is broken", "[directory]") {
  TempDir tmp;
  auto file = tmp.path / "moat.sqlite";
  std::ofstream(file) << std::string(4096, 'z');
  asio::thread_pool pool(1);
  directory::Directory d(file, pool);
  auto r = d.authenticate_blocking("alice", "pw");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::DirectoryUnavailable);

  // Repaired file: the next call recovers without a restart.
  fs::remove(file);
  {
    auto db = directory::UserDb::open(file);
    REQUIRE(db.ok());
    REQUIRE((*db)->add("alice", "pw").ok());
  }
  auto r2 = d.authenticate_blocking("alice", "pw");
  REQUIRE(r2.ok());
  CHECK(*r2);
  pool.join();
}

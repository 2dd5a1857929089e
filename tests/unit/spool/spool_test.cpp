// Spool: commit makes a readable file in incoming/, aborts leave nothing,
// injected write errors never commit, recovery after a crash, group commit
// under concurrency; a hidden benchmark ([.bench]) measures commits/s.
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <fstream>
#include <set>
#include <thread>

#include "common/failpoint.hpp"
#include "gateway/spool.hpp"
#include "tests/unit/spool/test_util.hpp"

using namespace moat;
using namespace moat::gateway;
namespace fs = std::filesystem;

namespace {

Envelope envelope(std::string sender = "a@sender.test") {
  Envelope e;
  e.sender = std::move(sender);
  e.recipients.push_back({"b@example.test", DsnNotify::Default, ""});
  e.arrival = std::chrono::system_clock::now();
  return e;
}

Result<std::string> commit_one(asio::io_context& io, Spool& spool, std::string_view body,
                               std::vector<std::string> headers = {}) {
  auto w = spool.begin(envelope());
  REQUIRE(w.ok());
  for (auto& h : headers) (*w)->add_header(h);
  if (auto st = (*w)->append(body); !st) return st.error();
  return test::run_co(io, spool.commit(std::move(*w)));
}

using test::FailpointEnv;

}  // namespace

TEST_CASE("commit writes a complete file into incoming/", "[spool]") {
  test::TempDir tmp;
  asio::io_context io;
  asio::thread_pool pool(2);
  Spool spool(tmp.path, pool);
  REQUIRE(spool.init().ok());
  for (auto q : {"tmp", "incoming", "active", "deferred", "hold", "corrupt"}) CHECK(fs::is_directory(tmp.path / q));
  std::vector<std::string> hooked, files;
  spool.on_committed([&](const std::string& id, std::string file) {
    hooked.push_back(id);
    files.push_back(std::move(file));
  });

  std::string body = "Subject: x\r\n\r\n" + std::string(3 << 20, 'a') + "\r\n";  // several content records
  auto id = commit_one(io, spool, body, {"X-Spam-Flag: YES\r\n"});
  REQUIRE(id.ok());
  CHECK(qf::valid_queue_id(*id));
  test::run_until(io, [&] { return !hooked.empty(); });
  CHECK(hooked == std::vector<std::string>{*id});
  CHECK(files == std::vector<std::string>{""});  // over kKeepBytes: the queue manager reads it back
  CHECK(test::count_files(tmp.path / "tmp") == 0);
  auto f = qf::read_queue_file(tmp.path / "incoming" / *id);
  REQUIRE(f.ok());
  CHECK(f->content.size() == 4);
  CHECK(f->content_size == body.size());
  CHECK(f->prepend == std::vector<std::string>{"X-Spam-Flag: YES\r\n"});
  auto content = qf::read_content(tmp.path / "incoming" / *id, *f);
  REQUIRE(content.ok());
  CHECK(*content == body);

  // A small message reaches the hook as the exact bytes on disk.
  auto small = commit_one(io, spool, "Subject: y\r\n\r\nsmall\r\n");
  REQUIRE(small.ok());
  test::run_until(io, [&] { return hooked.size() == 2; });
  std::ifstream in(tmp.path / "incoming" / *small, std::ios::binary);
  std::string on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(!on_disk.empty());
  CHECK(files.at(1) == on_disk);
}

TEST_CASE("an uncommitted writer leaves nothing behind", "[spool]") {
  test::TempDir tmp;
  asio::thread_pool pool(1);
  Spool spool(tmp.path, pool);
  REQUIRE(spool.init().ok());
  {
    auto w = spool.begin(envelope());
    REQUIRE(w.ok());
    REQUIRE((*w)->append(std::string(5 << 20, 'x')).ok());  // large enough to hit the disk early
    CHECK(test::count_files(tmp.path / "tmp") == 1);
  }
  CHECK(test::count_files(tmp.path / "tmp") == 0);
  CHECK(test::count_files(tmp.path / "incoming") == 0);
}

TEST_CASE("injected write errors never commit", "[spool][failpoint]") {
  test::TempDir tmp;
  asio::io_context io;
  asio::thread_pool pool(1);
  Spool spool(tmp.path, pool);
  REQUIRE(spool.init().ok());
  bool hooked = false;
  spool.on_committed([&](const std::string&, std::string) { hooked = true; });
  {
    FailpointEnv fp("spool.write=error");
    auto id = commit_one(io, spool, "Subject: x\r\n\r\nbody\r\n");
    REQUIRE_FALSE(id.ok());
    CHECK(id.error().code == Errc::IoError);
  }
  {
    FailpointEnv fp("spool.dir_fsync=error");
    auto id = commit_one(io, spool, "Subject: x\r\n\r\nbody\r\n");
    REQUIRE_FALSE(id.ok());
    CHECK(id.error().code == Errc::IoError);
  }
  test::run_until(io, [] { return false; }, std::chrono::milliseconds(20));
  CHECK_FALSE(hooked);
  CHECK(test::count_files(tmp.path / "incoming") == 0);
  CHECK(test::count_files(tmp.path / "tmp") == 0);
  CHECK(commit_one(io, spool, "Subject: x\r\n\r\nbody\r\n").ok());  // resumes once the fault is gone
}

TEST_CASE("recovery after a crash", "[spool]") {
  test::TempDir tmp;
  asio::io_context io;
  asio::thread_pool pool(1);
  std::string good_id, active_id;
  {
    Spool spool(tmp.path, pool);
    REQUIRE(spool.init().ok());
    good_id = *commit_one(io, spool, "Subject: a\r\n\r\na\r\n");
    active_id = *commit_one(io, spool, "Subject: b\r\n\r\nb\r\n");
    REQUIRE(spool.move(active_id, Spool::kIncoming, Spool::kActive).ok());
  }
  // A torn file (no END), a stray tmp file and a file with a bad name.
  auto full = tmp.path / "incoming" / good_id;
  std::string bytes;
  {
    std::ifstream in(full, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(tmp.path / "incoming" / "TORNTORNTORN1", std::ios::binary) << bytes.substr(0, bytes.size() - 3);
  std::ofstream(tmp.path / "deferred" / "TORNTORNTORN2", std::ios::binary) << "MOATQF1\n";
  std::ofstream(tmp.path / "tmp" / "HALFWRITTEN00") << "partial";

  Spool spool(tmp.path, pool);
  REQUIRE(spool.init().ok());
  CHECK(test::count_files(tmp.path / "tmp") == 0);
  CHECK(test::count_files(tmp.path / "active") == 0);
  CHECK(fs::exists(tmp.path / "incoming" / good_id));
  CHECK(fs::exists(tmp.path / "incoming" / active_id));
  CHECK(fs::exists(tmp.path / "corrupt" / "TORNTORNTORN1"));
  CHECK(fs::exists(tmp.path / "corrupt" / "TORNTORNTORN2"));
  CHECK(test::count_files(tmp.path / "incoming") == 2);
}

TEST_CASE("concurrent commits share directory fsyncs and all succeed", "[spool]") {
  test::TempDir tmp;
  asio::io_context io;
  asio::thread_pool pool(2);
  Spool spool(tmp.path, pool);
  REQUIRE(spool.init().ok());
  constexpr int kN = 50;
  std::set<std::string> ids;
  int failures = 0;
  for (int i = 0; i < kN; ++i) {
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      auto w = spool.begin(envelope());
      if (!w || !(*w)->append(std::string(5000, 'm'))) co_return;
      auto id = co_await spool.commit(std::move(*w));
      if (id) ids.insert(*id);
      else ++failures;
    }, asio::detached);
  }
  REQUIRE(test::run_until(io, [&] { return int(ids.size()) + failures == kN; }));
  CHECK(failures == 0);
  CHECK(ids.size() == std::size_t(kN));
  CHECK(test::count_files(tmp.path / "incoming") == std::size_t(kN));
}

// Not run by default: `moat_unit "[.bench]"`. 50 concurrent writers of 5 KB
// messages on two I/O threads; prints commits per second.
TEST_CASE("spool commit throughput", "[.bench]") {
  const char* dir = std::getenv("MOAT_BENCH_DIR");
  test::TempDir tmp;
  fs::path base = dir ? fs::path(dir) / "moat-bench-spool" : tmp.path;
  for (unsigned threads : {1u, 2u, 4u, 8u, 16u}) {
    fs::remove_all(base);
    asio::io_context io;
    asio::thread_pool pool(2);
    Spool spool(base, pool, threads);
    REQUIRE(spool.init().ok());
    constexpr int kWriters = 50, kPerWriter = 40;
    std::atomic<int> done{0};
    std::string body = "Subject: bench\r\n\r\n" + std::string(5000, 'b') + "\r\n";
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kWriters; ++i) {
      asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        for (int k = 0; k < kPerWriter; ++k) {
          auto w = spool.begin(envelope());
          (void)(*w)->append(body);
          auto id = co_await spool.commit(std::move(*w));
          if (id) ++done;
        }
      }, asio::detached);
    }
    std::thread second([&] { test::run_until(io, [&] { return done == kWriters * kPerWriter; }, std::chrono::seconds(120)); });
    test::run_until(io, [&] { return done == kWriters * kPerWriter; }, std::chrono::seconds(120));
    second.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    WARN("sync threads " << threads << ": " << int(done / secs) << " commits/s (" << done << " in " << secs << " s)");
  }
  fs::remove_all(base);
}

// See directory.hpp. Counts every outcome so a failing directory shows up in
// /metrics before users complain (SECURITY.md: auth fails closed and counts).
#include "directory/directory.hpp"

#include "common/blocking.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"

namespace moat::directory {
namespace {

constexpr std::size_t kMaxIdle = 16;  // beyond the pool size there is no use for more

struct AuthCounters {
  metrics::Counter& ok = metrics::counter("moat_auth_total", "result=\"ok\"", "Password checks by result");
  metrics::Counter& fail = metrics::counter("moat_auth_total", "result=\"fail\"");
  metrics::Counter& unavailable = metrics::counter("moat_auth_total", "result=\"unavailable\"");
};

AuthCounters& counters() {
  static AuthCounters c;
  return c;
}

}  // namespace

Directory::Directory(std::filesystem::path db, asio::thread_pool& pool) : db_(std::move(db)), pool_(pool) {}

Result<std::unique_ptr<UserDb>> Directory::acquire() {
  {
    std::lock_guard lk(mu_);
    if (!idle_.empty()) {
      auto db = std::move(idle_.back());
      idle_.pop_back();
      return db;
    }
  }
  return UserDb::open(db_);
}

void Directory::release(std::unique_ptr<UserDb> db) {
  std::lock_guard lk(mu_);
  if (idle_.size() < kMaxIdle) idle_.push_back(std::move(db));
}

Result<bool> Directory::authenticate_blocking(const std::string& user, const std::string& password) {
  auto db = acquire();
  if (!db) {
    counters().unavailable.inc();
    log::warning("directory_unavailable: " + db.error().detail);
    return db.error();
  }
  auto r = (*db)->verify(user, password);
  if (!r) {
    // Drop the connection rather than reuse it: the next call reopens the
    // file, which recovers when the operator has replaced or repaired it.
    counters().unavailable.inc();
    log::warning("directory_unavailable: " + r.error().detail);
    return r;
  }
  release(std::move(*db));
  (*r ? counters().ok : counters().fail).inc();
  return r;
}

Result<std::vector<LocalUser>> Directory::resolve_blocking(const std::string& address) {
  auto db = acquire();
  if (!db) return db.error();
  auto r = (*db)->resolve(address);
  if (r) release(std::move(*db));
  return r;
}

Result<std::vector<std::string>> Directory::domains_blocking() {
  auto db = acquire();
  if (!db) return db.error();
  auto r = (*db)->domains();
  if (r) release(std::move(*db));
  return r;
}

asio::awaitable<Result<bool>> Directory::authenticate(std::string user, std::string password) {
  co_return co_await run_blocking(pool_, [this, &user, &password] { return authenticate_blocking(user, password); });
}

}  // namespace moat::directory

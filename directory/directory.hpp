// Async front of the user database for protocol sessions (SMTP AUTH, IMAP,
// POP3): argon2 and SQLite run on a thread pool, never on an I/O thread.
// Fails closed: any database error is Errc::DirectoryUnavailable (4xx).
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>

#include "common/error.hpp"
#include "directory/userdb.hpp"

namespace moat::directory {

namespace asio = boost::asio;

class Directory {
 public:
  Directory(std::filesystem::path db, asio::thread_pool& pool);
  Directory(const Directory&) = delete;
  Directory& operator=(const Directory&) = delete;

  // true: credentials good; false: bad user, password or disabled account;
  // error: the database could not answer. The Directory must outlive the call.
  asio::awaitable<Result<bool>> authenticate(std::string user, std::string password);

  // The blocking half, for callers already on a worker thread.
  Result<bool> authenticate_blocking(const std::string& user, const std::string& password);

  // Local delivery (store/, gateway/queue/local.*); blocking, call them on
  // the pool. Same fail-closed rule: errors are DirectoryUnavailable.
  Result<std::vector<LocalUser>> resolve_blocking(const std::string& address);
  Result<std::vector<std::string>> domains_blocking();

 private:
  // SQLite connections must not be used by two threads at once: each call
  // borrows one from this free list (or opens one) and gives it back.
  Result<std::unique_ptr<UserDb>> acquire();
  void release(std::unique_ptr<UserDb> db);

  std::filesystem::path db_;
  asio::thread_pool& pool_;
  std::mutex mu_;
  std::vector<std::unique_ptr<UserDb>> idle_;
};

}  // namespace moat::directory

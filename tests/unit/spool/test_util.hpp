// Helpers for spool and queue tests: a temporary spool folder and running a
// coroutine or an io_context until a condition holds.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <unistd.h>

#include "common/failpoint.hpp"
#include "tests/support/temp_dir.hpp"

namespace moat::test {

namespace asio = boost::asio;

// Arms MOAT_FAILPOINT for the scope of the object.
struct FailpointEnv {
  explicit FailpointEnv(const char* v) {
    ::setenv("MOAT_FAILPOINT", v, 1);
    failpoint::reload();
  }
  ~FailpointEnv() {
    ::unsetenv("MOAT_FAILPOINT");
    failpoint::reload();
  }
  FailpointEnv(const FailpointEnv&) = delete;
  FailpointEnv& operator=(const FailpointEnv&) = delete;
};

// Runs `a` to completion on `io` (and whatever else is ready meanwhile).
template <class T>
T run_co(asio::io_context& io, asio::awaitable<T> a) {
  std::optional<T> out;
  // Through a void coroutine: co_spawn needs a default-constructible result.
  asio::co_spawn(io, [&out, a = std::move(a)]() mutable -> asio::awaitable<void> {
    out.emplace(co_await std::move(a));
  }, [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  io.restart();
  auto guard = asio::make_work_guard(io);  // the coroutine may wait on another pool
  while (!out) io.run_one_for(std::chrono::seconds(10));
  return std::move(*out);
}

// Runs the io_context until pred() or the timeout; returns pred().
inline bool run_until(asio::io_context& io, const std::function<bool()>& pred,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto end = std::chrono::steady_clock::now() + timeout;
  io.restart();
  auto guard = asio::make_work_guard(io);
  while (!pred() && std::chrono::steady_clock::now() < end) io.run_for(std::chrono::milliseconds(5));
  return pred();
}

inline std::size_t count_files(const std::filesystem::path& dir) {
  std::size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator(); ++it)
    ++n;
  return n;
}

}  // namespace moat::test

// Runs blocking work (fsync, argon2, libspf2, SQLite) on a thread pool and
// resumes the calling coroutine on its own executor, so I/O threads never block.
//
// The hop is a co_spawn onto the pool with use_awaitable. An earlier version
// posted the awaitable's handler back from the pool thread by hand; under
// g++ 12 / Boost 1.81 that corrupted the reference count of the session's
// strand when called repeatedly inside a parallel group (valgrind: invalid
// reads after ~24 calls; segfaults in moatd with greylisting).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <type_traits>
#include <utility>

namespace moat {

namespace asio = boost::asio;

namespace detail {
// The part that runs on the pool. A pointer, not a capturing lambda
// coroutine (g++ 12); optional<> because co_spawn wants a default-
// constructible result.
template <class F, class R = std::invoke_result_t<F>>
asio::awaitable<std::optional<R>> call_on_pool(F* f) {
  co_return std::optional<R>((*f)());
}
template <class F>
asio::awaitable<bool> call_void_on_pool(F* f) {
  (*f)();
  co_return true;
}
}  // namespace detail

// co_await run_blocking(pool, [&]{ return fsync(fd); });
// F runs on `pool`; the caller resumes on its own executor. F must not throw.
template <class F>
asio::awaitable<std::invoke_result_t<F>> run_blocking(asio::thread_pool& pool, F f) {
  using R = std::invoke_result_t<F>;
  if constexpr (std::is_void_v<R>) {
    (void)co_await asio::co_spawn(pool.get_executor(), detail::call_void_on_pool(&f), asio::use_awaitable);
  } else {
    auto out = co_await asio::co_spawn(pool.get_executor(), detail::call_on_pool(&f), asio::use_awaitable);
    co_return std::move(*out);
  }
}

}  // namespace moat

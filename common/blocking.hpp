// Runs blocking work (fsync, argon2, libspf2, SQLite) on a thread pool and
// resumes the calling coroutine on its own executor, so I/O threads never block.
#pragma once

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <optional>
#include <type_traits>
#include <utility>

namespace moat {

namespace asio = boost::asio;

// co_await run_blocking(pool, [&]{ return fsync(fd); });
// The callable runs on `pool`; the result is handed back on the awaiting
// coroutine's executor. F must not throw.
template <class F>
asio::awaitable<std::invoke_result_t<F>> run_blocking(asio::thread_pool& pool, F f) {
  using R = std::invoke_result_t<F>;
  auto ex = co_await asio::this_coro::executor;
  if constexpr (std::is_void_v<R>) {
    co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
        [&pool, ex, &f](auto handler) mutable {
          asio::post(pool, [h = std::move(handler), ex, &f]() mutable {
            f();
            asio::post(ex, std::move(h));
          });
        },
        asio::use_awaitable);
  } else {
    std::optional<R> out;
    co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
        [&pool, ex, &f, &out](auto handler) mutable {
          asio::post(pool, [h = std::move(handler), ex, &f, &out]() mutable {
            out.emplace(f());
            asio::post(ex, std::move(h));
          });
        },
        asio::use_awaitable);
    co_return std::move(*out);
  }
}

}  // namespace moat

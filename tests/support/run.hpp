// Runs one coroutine to completion on a fresh multi-threaded io_context, so
// tests exercise the same thread-safety the daemon needs.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <optional>
#include <thread>
#include <vector>

namespace moat::test {

namespace asio = boost::asio;

// fn(io) returns the awaitable to run; the result is handed back here.
template <class Fn>
auto run_on(asio::io_context& io, Fn fn, unsigned threads = 2) {
  using Aw = decltype(fn(io));
  using T = typename Aw::value_type;
  // co_spawn wants a default-constructible result; Result<T> is not.
  auto wrap = [](Aw aw) -> asio::awaitable<std::optional<T>> { co_return co_await std::move(aw); };
  auto fut = asio::co_spawn(io, wrap(fn(io)), asio::use_future);
  auto guard = asio::make_work_guard(io);
  // A work guard of the previous call's pool hop can be released late, on
  // the pool's thread, after that call's restart() below: its count drops to
  // zero and the io_context stops itself again, so these threads would
  // return at once and the future never be set (seen as a hang in the
  // greylist test at load ~20). Restarting here, with our guard already
  // counted, closes that window.
  io.restart();
  std::vector<std::thread> pool;
  for (unsigned i = 0; i < threads; ++i) pool.emplace_back([&io] { io.run(); });
  auto out = fut.get();
  guard.reset();
  io.stop();
  for (auto& t : pool) t.join();
  io.restart();
  return std::move(*out);
}

}  // namespace moat::test

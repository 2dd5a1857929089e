// Runs several coroutines at once and waits for every one of them.
//
// This replaces Boost 1.81's ranged parallel_group, which reads its range
// (range.size()) after launching the operations: when the last one finishes
// on another thread first, the waiting coroutine has already resumed and
// freed that range (ASan: heap-use-after-free in ranged_parallel_group_launch).
// Here the tasks and their results live in shared state, the tasks run on
// one strand, and the waiter only learns "all done" through a thread-safe
// channel. A cancelled wait is passed on to every task and still waits for
// them, so no task outlives the call.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <memory>
#include <optional>
#include <vector>

namespace moat {

namespace asio = boost::asio;

namespace detail {
template <class T>
struct GatherState {
  GatherState(const asio::any_io_executor& ex, std::size_t n)
      : strand(asio::make_strand(ex)), done(ex, 1), results(n), signals(n), left(n) {}
  asio::strand<asio::any_io_executor> strand;
  asio::experimental::concurrent_channel<void(boost::system::error_code)> done;
  std::vector<std::optional<T>> results;
  std::vector<asio::cancellation_signal> signals;
  std::size_t left;  // touched on the strand only
};
}  // namespace detail

// The result of each task in order; nullopt where a task threw.
template <class T>
asio::awaitable<std::vector<std::optional<T>>> gather(std::vector<asio::awaitable<T>> tasks) {
  if (tasks.empty()) co_return std::vector<std::optional<T>>{};
  if (tasks.size() == 1) {
    // The common case (one DKIM key, one DNSBL zone) runs inline: spawning
    // costs trips through the executor's queue, and there is nothing to
    // overlap. Cancellation reaches it directly as the caller's own wait.
    std::vector<std::optional<T>> one(1);
    try {
      one[0] = co_await std::move(tasks[0]);
    } catch (const std::exception&) {
    }
    co_return one;
  }
  auto st = std::make_shared<detail::GatherState<T>>(co_await asio::this_coro::executor, tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i)
    asio::co_spawn(st->strand, std::move(tasks[i]),
                   asio::bind_cancellation_slot(st->signals[i].slot(), [st, i](std::exception_ptr e, T v) {
                     if (!e) st->results[i] = std::move(v);
                     if (--st->left == 0) st->done.try_send(boost::system::error_code{});
                   }));
  for (;;) {
    auto [ec] = co_await st->done.async_receive(asio::as_tuple(asio::use_awaitable));
    if (!ec) break;
    asio::dispatch(st->strand, [st] {
      for (auto& s : st->signals) s.emit(asio::cancellation_type::terminal);
    });
    co_await asio::this_coro::reset_cancellation_state();
  }
  co_return std::move(st->results);
}

}  // namespace moat

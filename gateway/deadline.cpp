// See deadline.hpp.
#include "gateway/deadline.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace moat::gateway {

Deadline::Deadline(asio::any_io_executor ex, SessionIo* io) : timer_(std::move(ex)), io_(io) {
  timer_.expires_at(at_);
}

void Deadline::at(Clock::time_point when) {
  at_ = when;
  timer_.expires_at(when);  // cancels the pending wait: watch() re-arms
}

asio::awaitable<void> Deadline::watch() {
  while (!stopped_) {
    boost::system::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    // A wake-up from at() (which cancels the wait) is not a timeout.
    if (Clock::now() >= at_) {
      fired_ = true;
      io_->cancel();
      at_ = Clock::time_point::max();
      timer_.expires_at(at_);
    }
  }
}

void Deadline::stop() {
  stopped_ = true;
  timer_.cancel();
}

bool Deadline::take_fired() {
  const bool f = fired_;
  fired_ = false;
  return f;
}

}  // namespace moat::gateway

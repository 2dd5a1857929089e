// A session's deadline: the RFC 5321 §4.5.3.2 timeouts of SMTP and the
// autologout timers of IMAP (RFC 9051 §5.4) and POP3 (RFC 1939 §3). One timer
// per session, moved as the protocol goes on (each command, the whole DATA
// phase); when it passes, the session's I/O is cancelled and the pending read
// or write fails with Errc::Timeout.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>

#include "gateway/session_io.hpp"

namespace moat::gateway {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  Deadline(asio::any_io_executor ex, SessionIo* io);
  void at(Clock::time_point when);
  void after(Clock::duration d) { at(Clock::now() + d); }
  // Runs beside the dialogue (`dialogue() || deadline.watch()`) until stop().
  asio::awaitable<void> watch();
  void stop();
  // True once after the deadline cancelled the I/O (the session then says
  // why it hangs up).
  bool take_fired();

 private:
  asio::steady_timer timer_;
  SessionIo* io_;
  Clock::time_point at_ = Clock::time_point::max();
  bool stopped_ = false;
  bool fired_ = false;
};

}  // namespace moat::gateway

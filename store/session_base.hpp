// What the IMAP (RFC 9051) and POP3 (RFC 1939) sessions share: their
// dependencies, the per-command deadline (RFC 9051 §5.4 and RFC 1939 §3
// autologout timers) and the SASL PLAIN check (RFC 4616).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/session_io.hpp"

namespace moat::directory {
class Directory;
}

namespace moat::store {

namespace asio = boost::asio;
class MailboxStore;

struct SessionDeps {
  MailboxStore* store = nullptr;
  directory::Directory* directory = nullptr;
  asio::thread_pool* blocking = nullptr;
  std::string hostname = "localhost";
  bool tls_available = false;                 // a TLS context exists: STARTTLS/STLS offered before TLS
  bool implicit_tls = false;                  // imaps/pop3s (RFC 8314): handshake first
  std::chrono::seconds command_timeout{600};  // each protocol's Deps sets its own minimum
  unsigned max_auth_failures = 3;
  unsigned max_errors = 20;                   // unknown/bad commands, then the session ends
};

// The autologout timer: armed for "now + timeout" at each command; when it
// passes, the session's I/O is cancelled and the pending read or write
// fails with Errc::Timeout. One timer per session, not one per read.
class Deadline {
 public:
  Deadline(asio::any_io_executor ex, gateway::SessionIo* io, std::chrono::seconds timeout);
  void restart();
  // Runs beside the dialogue (`dialogue() || deadline.watch()`) until stop().
  asio::awaitable<void> watch();
  void stop();

 private:
  using Clock = std::chrono::steady_clock;
  asio::steady_timer timer_;
  gateway::SessionIo* io_;
  std::chrono::seconds timeout_;
  Clock::time_point at_ = Clock::time_point::max();
  bool stopped_ = false;
};

// SASL PLAIN (RFC 4616) credentials a mail session accepts: well formed,
// and no authorization identity other than the user's own.
struct PlainLogin {
  std::string user;
  std::string password;
};
std::optional<PlainLogin> plain_login(std::string_view response);

}  // namespace moat::store

// What the IMAP (RFC 9051) and POP3 (RFC 1939) sessions share: their
// dependencies and the SASL PLAIN check (RFC 4616); their autologout timer
// is gateway/deadline.hpp.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

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

// SASL PLAIN (RFC 4616) credentials a mail session accepts: well formed,
// and no authorization identity other than the user's own.
struct PlainLogin {
  std::string user;
  std::string password;
};
std::optional<PlainLogin> plain_login(std::string_view response);

}  // namespace moat::store

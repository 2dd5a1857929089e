// POP3 server session (RFC 1939; RFC 2449 CAPA, RESP-CODES, PIPELINING;
// RFC 3206 AUTH-RESP-CODE; RFC 2595 STLS; RFC 5034 SASL PLAIN; RFC 8314
// implicit TLS) over the mailbox store's INBOX. No APOP. Authentication
// only over TLS. UIDL is the IMAP UID and UIDVALIDITY (Dovecot's
// "%08Xu%08Xv"), so POP3 and IMAP agree; messages marked with DELE are
// expunged only at QUIT, so a dropped session expunges nothing.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "gateway/session_io.hpp"

namespace moat::directory {
class Directory;
}

namespace moat::store {
class MailboxStore;
}

namespace moat::store::pop3 {

namespace asio = boost::asio;

struct Deps {
  MailboxStore* store = nullptr;
  directory::Directory* directory = nullptr;
  asio::thread_pool* blocking = nullptr;
  std::string hostname = "localhost";
  bool tls_available = false;         // a TLS context exists: STLS offered before TLS
  bool implicit_tls = false;          // pop3s (RFC 8314): handshake first
  std::chrono::seconds command_timeout{600};  // RFC 1939 §3: at least 10 minutes
  unsigned max_auth_failures = 3;
  unsigned max_errors = 20;           // unknown/bad commands, then the session ends
};

// UIDL of a message: 8 hex digits of the UID, 8 of UIDVALIDITY.
std::string uidl(std::uint32_t uid, std::uint32_t uidvalidity);

// Runs one session to completion; never throws.
asio::awaitable<void> run_session(Deps deps, std::unique_ptr<gateway::SessionIo> io);

}  // namespace moat::store::pop3

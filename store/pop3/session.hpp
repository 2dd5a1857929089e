// POP3 server session (RFC 1939; RFC 2449 CAPA, RESP-CODES, PIPELINING;
// RFC 3206 AUTH-RESP-CODE; RFC 2595 STLS; RFC 5034 SASL PLAIN; RFC 8314
// implicit TLS) over the mailbox store's INBOX. No APOP. Authentication
// only over TLS. UIDL is the IMAP UID and UIDVALIDITY (Dovecot's
// "%08Xu%08Xv"), so POP3 and IMAP agree; messages marked with DELE are
// expunged only at QUIT, so a dropped session expunges nothing.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "gateway/session_io.hpp"
#include "store/session_base.hpp"

namespace moat::store::pop3 {

struct Deps : SessionDeps {};  // command_timeout: RFC 1939 §3 asks for at least 10 minutes

// UIDL of a message: 8 hex digits of the UID, 8 of UIDVALIDITY.
std::string uidl(std::uint32_t uid, std::uint32_t uidvalidity);

// Runs one session to completion; never throws.
asio::awaitable<void> run_session(Deps deps, std::unique_ptr<gateway::SessionIo> io);

}  // namespace moat::store::pop3

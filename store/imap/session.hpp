// IMAP server session (RFC 3501 IMAP4rev1 and RFC 9051 IMAP4rev2, with RFC
// 7888 LITERAL-, RFC 2177 IDLE, RFC 3691 UNSELECT, RFC 4315 UIDPLUS, RFC 6851
// MOVE, RFC 2342 NAMESPACE, RFC 2971 ID, RFC 5161 ENABLE, RFC 4959 SASL-IR,
// RFC 6154 SPECIAL-USE, RFC 3348 CHILDREN, RFC 7162 CONDSTORE/QRESYNC, RFC
// 4731 ESEARCH, RFC 5182 SEARCHRES, RFC 5258 LIST-EXTENDED, RFC 5819
// LIST-STATUS; STARTTLS and RFC 8314 implicit TLS) over
// the mailbox store. Sessions on one mailbox see each other's changes:
// EXISTS, EXPUNGE and FETCH FLAGS on NOOP/IDLE and after commands, with
// IDLE pushed from the store's watch() hook. Login only over TLS.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>

#include "gateway/session_io.hpp"
#include "store/session_base.hpp"

namespace moat::store::imap {

struct Deps : SessionDeps {
  Deps() { command_timeout = std::chrono::seconds(1800); }  // RFC 9051 §5.4: at least 30 minutes idle
  std::uint64_t max_append = 10 * 1024 * 1024;
};

asio::awaitable<void> run_session(Deps deps, std::unique_ptr<gateway::SessionIo> io);

}  // namespace moat::store::imap

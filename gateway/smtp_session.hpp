// One inbound SMTP session (RFC 5321, with RFC 1870 SIZE, 2920 PIPELINING,
// 3030 CHUNKING, 3207 STARTTLS, 3461 DSN, 4954 AUTH, 6152 8BITMIME, 6531
// SMTPUTF8, 2034 ENHANCEDSTATUSCODES). A coroutine that reads like the
// protocol; all parsing is in common/proto (sans-I/O).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <memory>
#include <string>

#include "common/config.hpp"
#include "gateway/session_io.hpp"

namespace moat::filters { class Pipeline; }
namespace moat::directory { class Directory; }
namespace moat::quarantine { class Store; }
namespace moat::gateway { class SenderLists; }

namespace moat::gateway {

class Spool;
class CalloutVerifier;
class QueueManager;
class LocalTransport;

// What a session needs from the server; reloaded state comes as one snapshot
// taken when the connection starts, so a session never sees half a reload.
struct Runtime {
  config::Snapshot config;
  std::shared_ptr<filters::Pipeline> pipeline;
  std::shared_ptr<asio::ssl::context> tls;   // null when TLS could not be set up
  // IMAP and POP3 listeners: same certificate, their own ALPN ids (RFC 7301)
  std::shared_ptr<asio::ssl::context> tls_imap;
  std::shared_ptr<asio::ssl::context> tls_pop3;
};

struct SessionDeps {
  std::function<std::shared_ptr<const Runtime>()> runtime;
  Spool* spool = nullptr;
  directory::Directory* directory = nullptr;   // null: AUTH not offered
  CalloutVerifier* callout = nullptr;          // null: callout verification tempfails
  QueueManager* queue = nullptr;               // hold, when there is no quarantine store
  quarantine::Store* quarantine = nullptr;     // quarantine, rejected copies
  const SenderLists* sender_lists = nullptr;   // allow/block by authenticated domain; null: none
  LocalTransport* local = nullptr;             // local domains: recipients checked in the directory
};

struct Peer {
  IpAddr ip;
  std::uint16_t port = 0;
};

// Runs the session to completion; never throws.
asio::awaitable<void> run_smtp_session(SessionDeps deps, std::unique_ptr<SessionIo> io,
                                       config::Listener listener, Peer peer);

}  // namespace moat::gateway

// Outbound SMTP: the relay Transport (RFC 5321; MX routing §5.1 and RFC 7505
// null MX; RFC 3207 STARTTLS, 2920 PIPELINING, 1870 SIZE, 6152 8BITMIME,
// 6531 SMTPUTF8, 3461 DSN) with a per-destination connection cache, and the
// client connection it is built from (also used by the callout verifier).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.hpp"
#include "common/dns/resolver.hpp"
#include "common/error.hpp"
#include "common/proto/smtp_reply.hpp"
#include "gateway/queue/transport.hpp"

namespace moat::gateway {

namespace asio = boost::asio;
using proto::smtp::Extensions;
using proto::smtp::Reply;

// One client connection. Every operation has a deadline (a watchdog timer
// cancels the socket). Not thread-safe: use it from one coroutine that runs
// on a strand, and call rebind() with that strand when handing it over.
class SmtpConnection : public std::enable_shared_from_this<SmtpConnection> {
 public:
  SmtpConnection(asio::any_io_executor ex, std::string host, asio::ip::tcp::endpoint ep);
  ~SmtpConnection();

  asio::awaitable<Status> connect(std::chrono::seconds limit);
  asio::awaitable<Result<Reply>> read_reply(std::chrono::seconds limit);
  asio::awaitable<Status> write(std::string_view data, std::chrono::seconds limit);
  // Writes `line` + CRLF and reads one reply.
  asio::awaitable<Result<Reply>> command(std::string_view line, std::chrono::seconds limit);
  // EHLO, or HELO when EHLO gets 5xx; fills extensions().
  asio::awaitable<Result<Reply>> hello(std::string_view my_name, std::chrono::seconds limit);
  // After "220" to STARTTLS: handshake, then everything read before it is
  // dropped (STARTTLS injection, CVE-2011-0411). The caller re-sends EHLO.
  asio::awaitable<Status> start_tls(asio::ssl::context& ctx, std::chrono::seconds limit);

  void rebind(asio::any_io_executor ex);  // new owner's strand for the watchdog
  void close();

  const Extensions& extensions() const { return ext_; }
  bool tls_active() const { return tls_ != nullptr; }
  std::string tls_description() const;
  bool usable() const { return usable_; }          // no I/O or protocol error so far
  const std::string& relay() const { return relay_; }  // "host[ip]:port" for logs and DSNs
  std::size_t messages = 0;                        // transactions completed on it

 private:
  void arm(std::chrono::steady_clock::duration limit);
  void disarm();
  Error io_error(const boost::system::error_code& ec, std::string_view what);

  asio::ip::tcp::socket socket_;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls_;
  std::unique_ptr<asio::steady_timer> timer_;
  std::uint64_t generation_ = 0;   // ignores a watchdog that fired for an earlier op
  bool timed_out_ = false;
  bool usable_ = true;
  std::string host_;
  asio::ip::tcp::endpoint ep_;
  std::string relay_;
  std::string rbuf_;
  proto::smtp::ReplyParser parser_;
  Extensions ext_;
};

// Idle connections per destination, reused for the next message (RSET is
// not needed after a completed transaction: the server is back in its
// initial state, RFC 5321 §4.1.4).
class ConnectionCache {
 public:
  using Ptr = std::shared_ptr<SmtpConnection>;
  explicit ConnectionCache(std::chrono::milliseconds idle) : idle_(idle) {}
  Ptr take(const std::string& key);
  void put(const std::string& key, Ptr conn);
  std::size_t size() const;

 private:
  void sweep_locked(std::chrono::steady_clock::time_point now);
  struct Entry {
    Ptr conn;
    std::chrono::steady_clock::time_point since;
  };
  std::chrono::milliseconds idle_;
  mutable std::mutex mu_;
  std::multimap<std::string, Entry> idle_conns_;
};

class SmtpTransport final : public Transport {
 public:
  using ConfigFn = std::function<config::Snapshot()>;
  struct Options {
    std::uint16_t mx_port = 25;                       // tests point MX hosts at a sink's port
    std::chrono::milliseconds cache_idle{5000};       // how long an idle connection is kept
    asio::thread_pool* blocking = nullptr;            // for pread; null: read inline
    std::size_t max_mx_hosts = 5;
  };

  SmtpTransport(asio::any_io_executor ex, dns::Resolver& resolver, ConfigFn config, asio::ssl::context& tls);
  SmtpTransport(asio::any_io_executor ex, dns::Resolver& resolver, ConfigFn config, asio::ssl::context& tls,
                Options opts);

  asio::awaitable<std::vector<RcptResult>> deliver(const DeliveryRequest& req) override;

  // Recipient verification (callout): same routing, TLS and deadlines as a
  // delivery; MAIL FROM:<>, RCPT TO:<address>, QUIT. Returns the RCPT reply;
  // Errc::NextHopUnavailable when no host could be asked or MAIL failed.
  asio::awaitable<Result<Reply>> probe_recipient(Destination dest, std::string address);

  std::size_t cached_connections() const { return cache_.size(); }

  struct Candidate {
    std::string host;
    IpAddr ip;
    std::uint16_t port = 25;
  };
  // A delivery failure that applies to every recipient not yet decided.
  struct Failure {
    RcptStatus status = RcptStatus::Deferred;
    std::string dsn = "4.4.1";
    std::string diagnostic;
    std::string relay = "none";
  };

 private:
  enum class TxOutcome { Done, ConnectionLost };
  struct Tx;

  asio::awaitable<std::optional<std::vector<RcptResult>>> deliver_on_strand(const DeliveryRequest& req);
  asio::awaitable<std::optional<Result<Reply>>> probe_on_strand(Destination dest, std::string address);
  asio::awaitable<bool> candidates(const Destination& dest, std::vector<Candidate>& out, Failure& fail);
  asio::awaitable<std::shared_ptr<SmtpConnection>> open(const Candidate& c, const Destination& dest,
                                                        const config::Config& cfg, Failure& fail);
  asio::awaitable<std::shared_ptr<SmtpConnection>> open_once(const Candidate& c, const Destination& dest,
                                                             const config::Config& cfg, bool try_tls,
                                                             Failure& fail, bool& tls_broke);
  asio::awaitable<TxOutcome> transaction(SmtpConnection& conn, const DeliveryRequest& req,
                                         const config::Config& cfg, std::vector<RcptResult>& results,
                                         Failure& lost);
  asio::awaitable<Status> send_data(SmtpConnection& conn, const MessageSource& src, const config::Config& cfg);
  asio::awaitable<void> release(std::shared_ptr<SmtpConnection> conn, const std::string& key,
                                const config::Config& cfg);
  static std::string cache_key(const Destination& d);

  asio::any_io_executor ex_;
  dns::Resolver& resolver_;
  ConfigFn config_;
  asio::ssl::context& tls_;
  Options opts_;
  ConnectionCache cache_;
};

// Helpers, public for tests.
std::string mail_from_line(const Envelope& env, const Extensions& ext, std::uint64_t size);
std::string rcpt_to_line(const Recipient& r, const Extensions& ext);
std::uint64_t message_size(const MessageSource& src);

}  // namespace moat::gateway

// See smtp_client.hpp. One delivery, as a state machine per connection:
//
//   resolve (MX → A/AAAA, or next hop) ─▶ for each address:
//     connect ─▶ 220 ─▶ EHLO (HELO on 5xx) ─▶ [STARTTLS ─▶ handshake ─▶ EHLO]
//       ─▶ MAIL ─▶ RCPT… ─▶ DATA ─▶ 354 ─▶ body + "." ─▶ final reply
//       ─▶ idle in the cache (or QUIT when it has done enough)
//   connect/greeting/EHLO/TLS failures move on to the next address; once
//   the final dot is sent, a lost reply is a deferral (possible duplicate,
//   never a loss: RFC 5321 §6.1 and Postfix's choice too).
//
// Each delivery runs on its own strand, so the per-operation watchdog timer
// and the coroutine never touch a socket at the same time.
#include "gateway/smtp_client.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <random>

#include "common/blocking.hpp"
#include "common/failpoint.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/proto/dotstuff.hpp"
#include "common/tls.hpp"

namespace moat::gateway {

namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kChunk = 64 * 1024;

struct Counters {
  metrics::Counter& connections = metrics::counter("moat_smtp_client_connections_total", {}, "outbound connections opened");
  metrics::Counter& reused = metrics::counter("moat_smtp_client_connections_reused_total", {}, "deliveries on a cached connection");
  metrics::Counter& tls = metrics::counter("moat_smtp_client_tls_total", {}, "outbound STARTTLS sessions");
  metrics::Counter& messages = metrics::counter("moat_smtp_client_messages_total", {}, "messages sent (final 2xx)");
};
Counters& counters() {
  static Counters c;
  return c;
}

tcp::endpoint to_endpoint(const IpAddr& ip, std::uint16_t port) {
  if (ip.v4) return {asio::ip::address_v4({ip.b[12], ip.b[13], ip.b[14], ip.b[15]}), port};
  return {asio::ip::address_v6(ip.b), port};
}

std::string with_class(std::string dsn, char klass) {
  if (!dsn.empty()) dsn[0] = klass;
  return dsn;
}

RcptStatus status_of(const Reply& r) {
  if (r.klass() == 2 || r.klass() == 3) return RcptStatus::Sent;
  return r.klass() == 4 ? RcptStatus::Deferred : RcptStatus::Bounced;
}

bool has_line_break(std::string_view s) { return s.find_first_of(std::string_view("\r\n\0", 3)) != s.npos; }

}  // namespace

// ---------------------------------------------------------------- SmtpConnection

SmtpConnection::SmtpConnection(asio::any_io_executor ex, std::string host, tcp::endpoint ep)
    : socket_(ex), timer_(std::make_unique<asio::steady_timer>(ex)), host_(std::move(host)), ep_(ep) {
  relay_ = host_ + "[" + ep_.address().to_string() + "]:" + std::to_string(ep_.port());
}

SmtpConnection::~SmtpConnection() { close(); }

void SmtpConnection::rebind(asio::any_io_executor ex) {
  disarm();
  timer_ = std::make_unique<asio::steady_timer>(std::move(ex));
}

void SmtpConnection::close() {
  usable_ = false;
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
}

void SmtpConnection::arm(Clock::duration limit) {
  timed_out_ = false;
  auto gen = ++generation_;
  timer_->expires_after(limit);
  timer_->async_wait([weak = weak_from_this(), gen](const boost::system::error_code& ec) {
    if (ec) return;
    auto self = weak.lock();
    if (!self || self->generation_ != gen) return;
    self->timed_out_ = true;
    boost::system::error_code ignored;
    self->socket_.cancel(ignored);
  });
}

void SmtpConnection::disarm() {
  ++generation_;
  if (timer_) timer_->cancel();
}

Error SmtpConnection::io_error(const boost::system::error_code& ec, std::string_view what) {
  usable_ = false;
  if (timed_out_) return Error{Errc::Timeout, "conversation with " + relay_ + " timed out while " + std::string(what)};
  if (ec == asio::error::eof || ec == asio::error::connection_reset)
    return Error{Errc::IoError, "lost connection with " + relay_ + " while " + std::string(what)};
  return Error{Errc::IoError, "error talking to " + relay_ + " while " + std::string(what) + ": " + ec.message()};
}

asio::awaitable<Status> SmtpConnection::connect(std::chrono::seconds limit) {
  counters().connections.inc();
  arm(limit);
  auto [ec] = co_await socket_.async_connect(ep_, kTuple);
  disarm();
  if (ec) {
    usable_ = false;
    if (timed_out_) co_return Error{Errc::Timeout, "connect to " + relay_ + ": Connection timed out"};
    co_return Error{Errc::IoError, "connect to " + relay_ + ": " + ec.message()};
  }
  boost::system::error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  co_return Status{};
}

asio::awaitable<Result<Reply>> SmtpConnection::read_reply(std::chrono::seconds limit) {
  arm(limit);
  char buf[8192];
  while (true) {
    std::string_view in = rbuf_;
    auto st = parser_.feed(in);
    rbuf_.erase(0, rbuf_.size() - in.size());
    if (st == proto::smtp::ReplyParser::State::Complete) break;
    if (st == proto::smtp::ReplyParser::State::Error) {
      disarm();
      usable_ = false;
      co_return Error{Errc::IoError, "protocol error from " + relay_ + ": " + parser_.error().detail};
    }
    boost::system::error_code ec;
    std::size_t n = 0;
    if (tls_) std::tie(ec, n) = co_await tls_->async_read_some(asio::buffer(buf), kTuple);
    else std::tie(ec, n) = co_await socket_.async_read_some(asio::buffer(buf), kTuple);
    if (ec) {
      disarm();
      co_return io_error(ec, "receiving a reply");
    }
    rbuf_.append(buf, n);
  }
  disarm();
  co_return parser_.take();
}

asio::awaitable<Status> SmtpConnection::write(std::string_view data, std::chrono::seconds limit) {
  arm(limit);
  boost::system::error_code ec;
  if (tls_) std::tie(ec, std::ignore) = co_await asio::async_write(*tls_, asio::buffer(data), kTuple);
  else std::tie(ec, std::ignore) = co_await asio::async_write(socket_, asio::buffer(data), kTuple);
  disarm();
  if (ec) co_return io_error(ec, "sending");
  co_return Status{};
}

asio::awaitable<Result<Reply>> SmtpConnection::command(std::string_view line, std::chrono::seconds limit) {
  std::string out(line);
  out += "\r\n";
  if (auto st = co_await write(out, limit); !st) co_return st.error();
  co_return co_await read_reply(limit);
}

asio::awaitable<Result<Reply>> SmtpConnection::hello(std::string_view my_name, std::chrono::seconds limit) {
  auto r = co_await command("EHLO " + std::string(my_name), limit);
  if (!r) co_return r;
  if (r->klass() == 2) {
    ext_ = proto::smtp::parse_ehlo(*r);
    co_return r;
  }
  if (r->klass() != 5) co_return r;
  ext_ = Extensions{};
  co_return co_await command("HELO " + std::string(my_name), limit);
}

asio::awaitable<Status> SmtpConnection::start_tls(asio::ssl::context& ctx, std::chrono::seconds limit) {
  tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, ctx);
  // SNI only for names (RFC 6066 §3 forbids literals); no verification:
  // opportunistic TLS must not fail on certificates (RFC 7435).
  if (!host_.empty() && !parse_ip(host_)) SSL_set_tlsext_host_name(tls_->native_handle(), host_.c_str());
  arm(limit);
  auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::client, kTuple);
  disarm();
  // Whatever the server sent before the handshake is not to be believed.
  rbuf_.clear();
  parser_.reset();
  ext_ = Extensions{};
  if (ec) {
    usable_ = false;
    co_return Error{Errc::IoError, "TLS handshake with " + relay_ + " failed: " +
                                       (timed_out_ ? std::string("timed out") : ec.message())};
  }
  counters().tls.inc();
  co_return Status{};
}

std::string SmtpConnection::tls_description() const { return tls_ ? tls::describe(tls_->native_handle()) : ""; }

// ---------------------------------------------------------------- ConnectionCache

ConnectionCache::Ptr ConnectionCache::take(const std::string& key) {
  std::lock_guard lk(mu_);
  sweep_locked(Clock::now());
  auto it = idle_conns_.find(key);
  if (it == idle_conns_.end()) return nullptr;
  auto conn = std::move(it->second.conn);
  idle_conns_.erase(it);
  return conn;
}

void ConnectionCache::put(const std::string& key, Ptr conn) {
  std::lock_guard lk(mu_);
  auto now = Clock::now();
  sweep_locked(now);
  idle_conns_.emplace(key, Entry{std::move(conn), now});
}

std::size_t ConnectionCache::size() const {
  std::lock_guard lk(mu_);
  return idle_conns_.size();
}

void ConnectionCache::sweep_locked(Clock::time_point now) {
  // Expired connections are just closed: a QUIT would need a coroutine and
  // the server times the session out anyway.
  for (auto it = idle_conns_.begin(); it != idle_conns_.end();) {
    if (now - it->second.since > idle_) it = idle_conns_.erase(it);
    else ++it;
  }
}

// ---------------------------------------------------------------- helpers

std::string mail_from_line(const Envelope& env, const Extensions& ext, std::uint64_t size) {
  std::string s = "MAIL FROM:<" + env.sender + ">";
  if (ext.size_offered) s += " SIZE=" + std::to_string(size);
  if (ext.eightbitmime && env.body == BodyType::EightBitMime) s += " BODY=8BITMIME";
  if (env.smtputf8 && ext.smtputf8) s += " SMTPUTF8";
  if (ext.dsn) {
    if (env.ret == DsnRet::Full) s += " RET=FULL";
    if (env.ret == DsnRet::Hdrs) s += " RET=HDRS";
    if (!env.envid.empty()) s += " ENVID=" + env.envid;
  }
  return s;
}

std::string rcpt_to_line(const Recipient& r, const Extensions& ext) {
  std::string s = "RCPT TO:<" + r.address + ">";
  if (ext.dsn) {
    if (r.notify == DsnNotify::Never) {
      s += " NOTIFY=NEVER";
    } else if (r.notify != DsnNotify::Default) {
      std::string list;
      if (has(r.notify, DsnNotify::Success)) list += ",SUCCESS";
      if (has(r.notify, DsnNotify::Failure)) list += ",FAILURE";
      if (has(r.notify, DsnNotify::Delay)) list += ",DELAY";
      if (!list.empty()) s += " NOTIFY=" + list.substr(1);
    }
    if (!r.orcpt.empty()) s += " ORCPT=" + r.orcpt;
  }
  return s;
}

std::uint64_t message_size(const MessageSource& src) {
  std::uint64_t n = src.prepend.size();
  if (src.chunks.empty()) return n + src.length;
  for (const auto& c : src.chunks) n += c.second;
  return n;
}

// ---------------------------------------------------------------- SmtpTransport

SmtpTransport::SmtpTransport(asio::any_io_executor ex, dns::Resolver& resolver, ConfigFn config,
                             asio::ssl::context& tls)
    : SmtpTransport(std::move(ex), resolver, std::move(config), tls, Options{}) {}

SmtpTransport::SmtpTransport(asio::any_io_executor ex, dns::Resolver& resolver, ConfigFn config,
                             asio::ssl::context& tls, Options opts)
    : ex_(std::move(ex)), resolver_(resolver), config_(std::move(config)), tls_(tls), opts_(opts),
      cache_(opts.cache_idle) {}

std::string SmtpTransport::cache_key(const Destination& d) {
  std::string k = d.next_hop ? "[" + d.next_hop->host + "]:" + std::to_string(d.next_hop->port) : "mx:" + d.domain;
  return k + (d.tls == config::TlsPolicy::Encrypt ? "/tls" : d.tls == config::TlsPolicy::None ? "/plain" : "");
}

asio::awaitable<std::vector<RcptResult>> SmtpTransport::deliver(const DeliveryRequest& req) {
  auto strand = asio::make_strand(ex_);
  auto r = co_await asio::co_spawn(strand, deliver_on_strand(req), asio::use_awaitable);
  co_return std::move(*r);
}

asio::awaitable<bool> SmtpTransport::candidates(const Destination& dest, std::vector<Candidate>& out,
                                                Failure& fail) {
  auto dns_fail = [&](const Error& e, const std::string& what) {
    fail = Failure{RcptStatus::Deferred, "4.4.3", "Host or domain name lookup failed for " + what + ": " + e.detail,
                   "none"};
  };
  auto add_host = [&](const std::string& host, std::uint16_t port) -> asio::awaitable<Status> {
    if (auto ip = parse_ip(host)) {
      out.push_back({host, *ip, port});
      co_return Status{};
    }
    auto addrs = co_await resolver_.a_aaaa(host);
    if (!addrs) co_return addrs.error();
    for (const auto& ip : addrs->records) out.push_back({host, ip, port});
    co_return Status{};
  };

  if (dest.next_hop) {
    if (auto st = co_await add_host(dest.next_hop->host, dest.next_hop->port); !st) {
      dns_fail(st.error(), dest.next_hop->host);
      co_return false;
    }
    if (out.empty()) {
      fail = Failure{RcptStatus::Deferred, "4.4.4", "next hop " + dest.next_hop->host + " has no address", "none"};
      co_return false;
    }
    co_return true;
  }

  auto mx = co_await resolver_.mx(dest.domain);
  if (!mx) {
    dns_fail(mx.error(), dest.domain + " type=MX");
    co_return false;
  }
  if (mx->nxdomain) {
    fail = Failure{RcptStatus::Bounced, "5.4.4", "Host or domain name not found. Name service error for name=" +
                                                     dest.domain + " type=MX: Host not found", "none"};
    co_return false;
  }
  auto& recs = mx->records;
  // RFC 7505: a single "." MX means the domain takes no mail.
  if (std::any_of(recs.begin(), recs.end(), [](const auto& r) { return r.host.empty(); })) {
    fail = Failure{RcptStatus::Bounced, "5.1.10", "Domain " + dest.domain + " does not accept mail (nullMX)", "none"};
    co_return false;
  }
  if (recs.empty()) {
    // RFC 5321 §5.1: no MX, the domain itself is the host.
    if (auto st = co_await add_host(dest.domain, opts_.mx_port); !st) {
      dns_fail(st.error(), dest.domain + " type=A");
      co_return false;
    }
  } else {
    // Lowest preference first; equal preferences in random order (§5.1).
    static thread_local std::mt19937 rng{std::random_device{}()};
    std::shuffle(recs.begin(), recs.end(), rng);
    std::stable_sort(recs.begin(), recs.end(), [](const auto& a, const auto& b) { return a.preference < b.preference; });
    if (recs.size() > opts_.max_mx_hosts) recs.resize(opts_.max_mx_hosts);
    std::optional<Error> last;
    for (const auto& r : recs)
      if (auto st = co_await add_host(r.host, opts_.mx_port); !st) last = st.error();
    if (out.empty() && last) {
      dns_fail(*last, "MX hosts of " + dest.domain);
      co_return false;
    }
  }
  if (out.empty()) {
    fail = Failure{RcptStatus::Bounced, "5.4.4", "Host or domain name not found for " + dest.domain, "none"};
    co_return false;
  }
  co_return true;
}

asio::awaitable<std::shared_ptr<SmtpConnection>> SmtpTransport::open(const Candidate& c, const Destination& dest,
                                                                     const config::Config& cfg, Failure& fail) {
  bool tls_broke = false;
  auto conn = co_await open_once(c, dest, cfg, dest.tls != config::TlsPolicy::None, fail, tls_broke);
  // Opportunistic TLS that breaks in the handshake: the same host again in
  // plaintext, as Postfix does; never when TLS is required.
  if (!conn && tls_broke && dest.tls == config::TlsPolicy::May)
    conn = co_await open_once(c, dest, cfg, false, fail, tls_broke);
  co_return conn;
}

asio::awaitable<std::shared_ptr<SmtpConnection>> SmtpTransport::open_once(const Candidate& c, const Destination& dest,
                                                                          const config::Config& cfg, bool try_tls,
                                                                          Failure& fail, bool& tls_broke) {
  const auto& q = cfg.queue;
  auto ex = co_await asio::this_coro::executor;
  auto conn = std::make_shared<SmtpConnection>(ex, c.host, to_endpoint(c.ip, c.port));
  auto lost = [&](const Error& e) {
    fail = Failure{RcptStatus::Deferred, e.code == Errc::Timeout ? "4.4.2" : "4.4.1", e.detail, conn->relay()};
  };
  auto refused = [&](const Reply& r, std::string_view what) {
    fail = Failure{RcptStatus::Deferred, with_class(r.dsn(), '4'),
                   "host " + conn->relay() + " " + std::string(what) + ": " + r.str(), conn->relay()};
  };
  if (auto st = co_await conn->connect(q.connect_timeout); !st) {
    lost(st.error());
    co_return nullptr;
  }
  auto greeting = co_await conn->read_reply(q.command_timeout);
  if (!greeting) {
    lost(greeting.error());
    co_return nullptr;
  }
  if (greeting->klass() != 2) {
    refused(*greeting, "refused to talk to me");
    (void)co_await conn->command("QUIT", q.command_timeout);
    co_return nullptr;
  }
  auto hello = co_await conn->hello(cfg.server.hostname, q.command_timeout);
  if (!hello) {
    lost(hello.error());
    co_return nullptr;
  }
  if (hello->klass() != 2) {
    refused(*hello, "said to HELO");
    co_return nullptr;
  }
  bool want_tls = try_tls && conn->extensions().starttls;
  if (dest.tls == config::TlsPolicy::Encrypt && !conn->extensions().starttls) {
    fail = Failure{RcptStatus::Deferred, "4.7.4", "TLS is required, but was not offered by host " + conn->relay(),
                   conn->relay()};
    (void)co_await conn->command("QUIT", q.command_timeout);
    co_return nullptr;
  }
  if (want_tls) {
    auto r = co_await conn->command("STARTTLS", q.command_timeout);
    if (!r) {
      lost(r.error());
      co_return nullptr;
    }
    if (r->code != 220) {
      if (dest.tls == config::TlsPolicy::Encrypt) {
        refused(*r, "refused STARTTLS");
        fail.dsn = "4.7.4";
        co_return nullptr;
      }
      log::info("STARTTLS refused by " + conn->relay() + ": " + r->str() + "; continuing in plaintext");
    } else {
      if (auto st = co_await conn->start_tls(tls_, q.command_timeout); !st) {
        log::warning(st.error().detail);
        tls_broke = true;
        fail = Failure{RcptStatus::Deferred, "4.7.5", st.error().detail, conn->relay()};
        co_return nullptr;
      }
      log::info("Untrusted TLS connection established to " + conn->relay() + ": " + conn->tls_description());
      auto again = co_await conn->hello(cfg.server.hostname, q.command_timeout);
      if (!again) {
        lost(again.error());
        co_return nullptr;
      }
      if (again->klass() != 2) {
        refused(*again, "said to EHLO after STARTTLS");
        co_return nullptr;
      }
    }
  }
  co_return conn;
}

asio::awaitable<std::optional<std::vector<RcptResult>>> SmtpTransport::deliver_on_strand(const DeliveryRequest& req) {
  auto cfg_snap = config_();
  const auto& cfg = *cfg_snap;
  std::vector<RcptResult> results;
  for (auto i : req.recipients) results.push_back({i, RcptStatus::Deferred, "4.4.1", "none", "not attempted"});
  auto fill = [&](const Failure& f) {
    for (auto& r : results) r = {r.index, f.status, f.dsn, f.relay, f.diagnostic};
  };
  if (!req.envelope) {
    fill(Failure{RcptStatus::Deferred, "4.3.0", "no envelope", "none"});
    co_return results;
  }
  auto key = cache_key(req.destination);
  auto ex = co_await asio::this_coro::executor;
  Failure lost;

  // A cached connection first; if it died while idle, nothing was sent, so
  // falling through to a fresh connection is safe.
  while (auto conn = cache_.take(key)) {
    conn->rebind(ex);
    counters().reused.inc();
    if (auto outcome = co_await transaction(*conn, req, cfg, results, lost); outcome == TxOutcome::Done) {
      co_await release(std::move(conn), key, cfg);
      co_return results;
    }
  }

  std::vector<Candidate> cands;
  Failure fail;
  if (bool found = co_await candidates(req.destination, cands, fail); !found) {
    fill(fail);
    co_return results;
  }
  for (const auto& c : cands) {
    auto conn = co_await open(c, req.destination, cfg, fail);
    if (!conn) continue;
    if (auto outcome = co_await transaction(*conn, req, cfg, results, fail); outcome == TxOutcome::Done) {
      co_await release(std::move(conn), key, cfg);
      co_return results;
    }
  }
  fill(fail);
  co_return results;
}

asio::awaitable<void> SmtpTransport::release(std::shared_ptr<SmtpConnection> conn, const std::string& key,
                                             const config::Config& cfg) {
  if (!conn->usable()) co_return;
  if (conn->messages >= cfg.queue.max_messages_per_connection) {
    (void)co_await conn->command("QUIT", cfg.queue.command_timeout);
    co_return;
  }
  cache_.put(key, std::move(conn));
}

// Runs MAIL/RCPT/DATA on an open connection. ConnectionLost: the session
// broke before the final dot went out, so nothing was delivered and the
// caller may try another connection; `lost` says why.
asio::awaitable<SmtpTransport::TxOutcome> SmtpTransport::transaction(SmtpConnection& conn, const DeliveryRequest& req,
                                                                     const config::Config& cfg,
                                                                     std::vector<RcptResult>& results, Failure& lost) {
  const auto& env = *req.envelope;
  const auto& ext = conn.extensions();
  const auto& q = cfg.queue;
  const auto relay = conn.relay();
  auto set = [&](RcptResult& r, RcptStatus st, std::string dsn, std::string diag) {
    r.status = st;
    r.dsn = std::move(dsn);
    r.diagnostic = std::move(diag);
    r.relay = relay;
  };
  auto set_all = [&](RcptStatus st, const std::string& dsn, const std::string& diag) {
    for (auto& r : results) set(r, st, dsn, diag);
  };
  auto on_lost = [&](const Error& e) {
    lost = Failure{RcptStatus::Deferred, e.code == Errc::Timeout ? "4.4.2" : "4.4.1", e.detail, relay};
    conn.close();
    return TxOutcome::ConnectionLost;
  };

  // Checks that need no round trip (RFC 1870 §6.1, RFC 6531 §3.4).
  auto size = message_size(req.source);
  if (ext.size_offered && ext.size > 0 && size > ext.size) {
    set_all(RcptStatus::Bounced, "5.3.4",
            "message size " + std::to_string(size) + " exceeds size limit " + std::to_string(ext.size) + " of server " + relay);
    co_return TxOutcome::Done;
  }
  if (env.smtputf8 && !ext.smtputf8) {
    set_all(RcptStatus::Bounced, "5.6.7", "SMTPUTF8 is required, but was not offered by host " + relay);
    co_return TxOutcome::Done;
  }
  // Addresses are data: a line break in one would be a command injection.
  if (has_line_break(env.sender) || has_line_break(env.envid)) {
    set_all(RcptStatus::Bounced, "5.1.7", "invalid sender address");
    co_return TxOutcome::Done;
  }

  std::vector<std::string> rcpt_lines;
  std::vector<std::size_t> rcpt_slots;  // results index per RCPT sent
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& rc = env.recipients.at(results[i].index);
    if (has_line_break(rc.address) || has_line_break(rc.orcpt)) {
      set(results[i], RcptStatus::Bounced, "5.1.3", "invalid recipient address");
      continue;
    }
    rcpt_lines.push_back(rcpt_to_line(rc, ext));
    rcpt_slots.push_back(i);
  }
  if (rcpt_slots.empty()) co_return TxOutcome::Done;

  const std::string mail = mail_from_line(env, ext, size);
  std::optional<Reply> mail_reply;
  std::vector<std::optional<Reply>> rcpt_replies(rcpt_slots.size());
  std::optional<Reply> data_reply;
  bool any_accepted = false;

  if (ext.pipelining) {
    // RFC 2920: MAIL, every RCPT and DATA in one write, replies in order.
    std::string batch = mail + "\r\n";
    for (const auto& l : rcpt_lines) batch += l + "\r\n";
    batch += "DATA\r\n";
    if (auto st = co_await conn.write(batch, q.command_timeout); !st) co_return on_lost(st.error());
    auto r = co_await conn.read_reply(q.command_timeout);
    if (!r) co_return on_lost(r.error());
    mail_reply = std::move(*r);
    for (auto& slot : rcpt_replies) {
      auto rr = co_await conn.read_reply(q.command_timeout);
      if (!rr) co_return on_lost(rr.error());
      slot = std::move(*rr);
      if (mail_reply->klass() == 2 && slot->klass() == 2) any_accepted = true;
    }
    auto dr = co_await conn.read_reply(q.command_timeout);
    if (!dr) co_return on_lost(dr.error());
    data_reply = std::move(*dr);
  } else {
    auto r = co_await conn.command(mail, q.command_timeout);
    if (!r) co_return on_lost(r.error());
    mail_reply = std::move(*r);
    if (mail_reply->klass() == 2) {
      for (std::size_t i = 0; i < rcpt_lines.size(); ++i) {
        auto rr = co_await conn.command(rcpt_lines[i], q.command_timeout);
        if (!rr) co_return on_lost(rr.error());
        rcpt_replies[i] = std::move(*rr);
        if (rcpt_replies[i]->klass() == 2) any_accepted = true;
      }
      if (any_accepted) {
        auto dr = co_await conn.command("DATA", q.command_timeout);
        if (!dr) co_return on_lost(dr.error());
        data_reply = std::move(*dr);
      }
    }
  }

  // Outcomes known before any data.
  if (mail_reply->klass() != 2) {
    for (auto i : rcpt_slots)
      set(results[i], status_of(*mail_reply) == RcptStatus::Bounced ? RcptStatus::Bounced : RcptStatus::Deferred,
          mail_reply->dsn(), "host " + relay + " said: " + mail_reply->str() + " (in reply to MAIL FROM command)");
  } else {
    for (std::size_t i = 0; i < rcpt_slots.size(); ++i) {
      const auto& rr = *rcpt_replies[i];
      if (rr.klass() != 2)
        set(results[rcpt_slots[i]], rr.klass() == 4 ? RcptStatus::Deferred : RcptStatus::Bounced, rr.dsn(),
            "host " + relay + " said: " + rr.str() + " (in reply to RCPT TO command)");
    }
  }

  bool go = mail_reply->klass() == 2 && any_accepted && data_reply && data_reply->code == 354;
  if (!go) {
    if (data_reply && data_reply->code == 354) {
      // Pipelined DATA accepted with no recipient (RFC 2920 §3.1): end it empty.
      if (auto st = co_await conn.write(".\r\n", q.command_timeout); !st) co_return on_lost(st.error());
      if (auto r = co_await conn.read_reply(q.command_timeout); !r) co_return on_lost(r.error());
    }
    if (any_accepted && data_reply) {
      for (std::size_t i = 0; i < rcpt_slots.size(); ++i)
        if (rcpt_replies[i]->klass() == 2)
          set(results[rcpt_slots[i]], data_reply->klass() == 5 ? RcptStatus::Bounced : RcptStatus::Deferred,
              data_reply->dsn(), "host " + relay + " said: " + data_reply->str() + " (in reply to DATA command)");
    }
    auto rs = co_await conn.command("RSET", q.command_timeout);
    if (!rs || rs->klass() != 2) conn.close();
    co_return TxOutcome::Done;
  }

  if (auto st = co_await send_data(conn, req.source, cfg); !st) {
    if (st.error().code == Errc::IoError && conn.usable()) {
      // Local read error: drop the connection without the final dot so the
      // server discards the partial message.
      conn.close();
      for (std::size_t i = 0; i < rcpt_slots.size(); ++i)
        if (rcpt_replies[i]->klass() == 2)
          set(results[rcpt_slots[i]], RcptStatus::Deferred, "4.3.0", st.error().detail);
      co_return TxOutcome::Done;
    }
    co_return on_lost(st.error());
  }
  (void)failpoint::hit("smtp_client.after_data_sent");
  auto fin = co_await conn.read_reply(q.data_timeout);
  for (std::size_t i = 0; i < rcpt_slots.size(); ++i) {
    if (rcpt_replies[i]->klass() != 2) continue;
    auto& res = results[rcpt_slots[i]];
    if (!fin) {
      // The dot went out; the message may have been taken. Defer (a possible
      // duplicate later is allowed, a loss is not).
      set(res, RcptStatus::Deferred, fin.error().code == Errc::Timeout ? "4.4.2" : "4.4.1", fin.error().detail +
                                                                                                " (after end of data)");
    } else if (fin->klass() == 2) {
      set(res, RcptStatus::Sent, fin->enhanced.empty() ? "2.0.0" : fin->enhanced, fin->str());
    } else {
      set(res, fin->klass() == 4 ? RcptStatus::Deferred : RcptStatus::Bounced, fin->dsn(),
          "host " + relay + " said: " + fin->str() + " (in reply to end of DATA command)");
    }
  }
  if (!fin) {
    conn.close();
  } else {
    ++conn.messages;
    if (fin->klass() == 2) counters().messages.inc();
  }
  co_return TxOutcome::Done;
}

namespace {

// Writes `wire` and empties it; a failed write is a temporary failure (or a
// timeout), never a bounce.
asio::awaitable<Status> flush_wire(SmtpConnection& conn, std::string& wire, Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - Clock::now());
  auto st = co_await conn.write(wire, std::max(left, std::chrono::seconds(1)));
  wire.clear();
  if (!st) co_return Error{st.error().code == Errc::Timeout ? Errc::Timeout : Errc::TempFailure, st.error().detail};
  co_return Status{};
}

}  // namespace

// The content comes from memory when the queue manager kept the file's bytes
// (the common case: no second read), else from the file in kChunk reads.
asio::awaitable<Status> SmtpTransport::send_data(SmtpConnection& conn, const MessageSource& src,
                                                 const config::Config& cfg) {
  const auto deadline = Clock::now() + cfg.queue.data_timeout;
  proto::smtp::DotStuffer stuffer;
  std::string wire;
  stuffer.feed(src.prepend, wire);
  for (auto piece : src.memory) {
    stuffer.feed(piece, wire);
    if (wire.size() < kChunk) continue;
    if (Status st = co_await flush_wire(conn, wire, deadline); !st) co_return st;
  }

  std::vector<std::pair<std::uint64_t, std::uint64_t>> regions;
  if (src.memory.empty()) {
    regions = src.chunks;
    if (regions.empty() && src.length > 0) regions.emplace_back(src.offset, src.length);
  }
  int fd = -1;
  if (!regions.empty()) {
    fd = ::open(src.file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) co_return Error{Errc::IoError, "cannot open queue file " + src.file.string() + ": " + std::strerror(errno)};
  }
  struct Closer {
    int fd;
    ~Closer() {
      if (fd >= 0) ::close(fd);
    }
  } closer{fd};

  std::string buf(regions.empty() ? 0 : kChunk, '\0');
  for (const auto& region : regions) {
    const std::uint64_t off = region.first, len = region.second;  // clang 14: no captured bindings
    std::uint64_t done = 0;
    while (done < len) {
      auto want = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, len - done));
      auto do_read = [&]() -> ssize_t { return ::pread(fd, buf.data(), want, off_t(off + done)); };
      ssize_t n = 0;
      if (opts_.blocking)
        n = co_await run_blocking(*opts_.blocking, do_read);
      else
        n = do_read();
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        co_return Error{Errc::IoError, "short read from queue file " + src.file.string()};
      stuffer.feed(std::string_view(buf.data(), std::size_t(n)), wire);
      done += std::uint64_t(n);
      if (wire.size() < kChunk) continue;
      if (Status st = co_await flush_wire(conn, wire, deadline); !st) co_return st;
    }
  }
  stuffer.finish(wire);
  co_return co_await flush_wire(conn, wire, deadline);
}

// ---------------------------------------------------------------- callout probe

asio::awaitable<Result<Reply>> SmtpTransport::probe_recipient(Destination dest, std::string address) {
  auto strand = asio::make_strand(ex_);
  auto r = co_await asio::co_spawn(strand, probe_on_strand(std::move(dest), std::move(address)), asio::use_awaitable);
  co_return std::move(*r);
}

asio::awaitable<std::optional<Result<Reply>>> SmtpTransport::probe_on_strand(Destination dest, std::string address) {
  if (has_line_break(address)) co_return Result<Reply>(Errc::BadAddress, "invalid address");
  auto cfg_snap = config_();
  const auto& cfg = *cfg_snap;
  std::vector<Candidate> cands;
  Failure fail;
  if (bool found = co_await candidates(dest, cands, fail); !found) co_return Result<Reply>(Errc::NextHopUnavailable, fail.diagnostic);
  for (const auto& c : cands) {
    auto conn = co_await open(c, dest, cfg, fail);
    if (!conn) continue;
    const auto t = cfg.queue.command_timeout;
    auto mail = co_await conn->command("MAIL FROM:<>", t);
    if (!mail) {
      fail.diagnostic = mail.error().detail;
      continue;
    }
    if (mail->klass() != 2) {
      // A server that refuses the null sender cannot tell us about the
      // recipient; that is not an answer about the address.
      (void)co_await conn->command("QUIT", t);
      co_return Result<Reply>(Errc::NextHopUnavailable, "callout: " + conn->relay() + " said " + mail->str() +
                                                             " to MAIL FROM:<>");
    }
    auto rcpt = co_await conn->command("RCPT TO:<" + address + ">", t);
    if (!rcpt) {
      fail.diagnostic = rcpt.error().detail;
      continue;
    }
    (void)co_await conn->command("QUIT", t);
    co_return Result<Reply>(std::move(*rcpt));
  }
  co_return Result<Reply>(Errc::NextHopUnavailable, fail.diagnostic);
}

}  // namespace moat::gateway

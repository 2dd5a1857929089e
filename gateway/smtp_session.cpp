// The inbound SMTP session: greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT,
// DATA/BDAT, each answered through the one error table (common/error.hpp).
// The 250 after DATA is sent only once the spool has fsynced the message and
// its directory entry (SECURITY.md promise 1).
//
//   CONNECT ─▶ GREETED ─HELO/EHLO─▶ READY ─MAIL─▶ IN_MAIL ─RCPT─▶ HAVE_RCPT
//                 ▲                   ▲ ▲                            │
//                 └──── STARTTLS ─────┘ └──── 250/5xx after DATA ◀───┘
#include "gateway/smtp_session.hpp"
#include "gateway/queue/local.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <ctime>
#include <optional>

#include "common/base64.hpp"
#include "common/failpoint.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/proto/address.hpp"
#include "common/proto/sasl.hpp"
#include "common/proto/smtp_parser.hpp"
#include "directory/directory.hpp"
#include "filters/pipeline.hpp"
#include "filters/policy.hpp"
#include "common/blocking.hpp"
#include "gateway/callout.hpp"
#include "gateway/deadline.hpp"
#include "gateway/quarantine_admin.hpp"
#include "gateway/sender_lists.hpp"
#include "gateway/queue/manager.hpp"
#include "gateway/spool.hpp"
#include "quarantine/sender.hpp"
#include "quarantine/store.hpp"

namespace moat::gateway {

namespace smtp = proto::smtp;
namespace sasl = proto::sasl;
using filters::Action;
using filters::Phase;
using Clock = std::chrono::steady_clock;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr std::size_t kCommandRead = 4096;
constexpr std::size_t kDataRead = 64 * 1024;
constexpr std::size_t kKeepBuffer = 1024 * 1024;

std::string rfc5322_date(std::chrono::system_clock::time_point tp) {
  std::time_t t = std::chrono::system_clock::to_time_t(tp);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return std::string(buf, n);
}

// Counts "Received:" header fields for loop detection (RFC 5321 §6.3).
unsigned count_received(std::string_view header) {
  unsigned n = 0;
  std::size_t pos = 0;
  while (pos < header.size()) {
    std::size_t eol = header.find('\n', pos);
    std::string_view line = header.substr(pos, eol == std::string_view::npos ? eol : eol - pos);
    if (line.size() >= 9) {
      bool match = true;
      constexpr std::string_view kName = "received:";
      for (std::size_t i = 0; i < kName.size() && match; ++i)
        match = char(std::tolower(static_cast<unsigned char>(line[i]))) == kName[i];
      n += match;
    }
    if (eol == std::string_view::npos) break;
    pos = eol + 1;
  }
  return n;
}

// End of the header section: the offset just past the first empty line.
std::size_t header_end(std::string_view msg) {
  if (msg.rfind("\r\n", 0) == 0) return 0;
  auto p = msg.find("\r\n\r\n");
  return p == std::string_view::npos ? msg.size() : p + 2;
}

struct Counters {
  metrics::Counter& connections = metrics::counter("moat_smtp_connections_total", {}, "SMTP connections accepted");
  metrics::Counter& accepted = metrics::counter("moat_smtp_messages_total", "outcome=\"accepted\"", "Messages by outcome");
  metrics::Counter& rejected = metrics::counter("moat_smtp_messages_total", "outcome=\"rejected\"");
  metrics::Counter& tempfailed = metrics::counter("moat_smtp_messages_total", "outcome=\"tempfailed\"");
  metrics::Counter& discarded = metrics::counter("moat_smtp_messages_total", "outcome=\"discarded\"");
  metrics::Counter& held = metrics::counter("moat_smtp_messages_total", "outcome=\"held\"");
  metrics::Counter& quarantined = metrics::counter("moat_smtp_messages_total", "outcome=\"quarantined\"");
  metrics::Counter& rcpt_rejected = metrics::counter("moat_smtp_rcpt_rejected_total", {}, "RCPT commands refused");
  metrics::Counter& auth_failed = metrics::counter("moat_smtp_auth_failures_total", {}, "Failed AUTH attempts");
  metrics::Counter& timeouts = metrics::counter("moat_smtp_timeouts_total", {}, "Sessions closed by a deadline");
};
Counters& counters() {
  static Counters c;
  return c;
}

class Session {
 public:
  Session(SessionDeps deps, std::unique_ptr<SessionIo> io, config::Listener listener, Peer peer,
          asio::any_io_executor ex)
      : deps_(std::move(deps)),
        rt_(deps_.runtime()),
        cfg_(*rt_->config),
        io_(std::move(io)),
        listener_(std::move(listener)),
        peer_(peer),
        parser_(parser_options()),
        deadline_(ex, io_.get()) {}

  asio::awaitable<void> run();

 private:
  asio::awaitable<void> dialogue();

 private:
  // --- I/O with deadlines ---
  asio::awaitable<bool> fill();      // read more bytes into the parser; false on EOF/timeout
  asio::awaitable<bool> reply(std::string_view text);  // one reply; "CODE text" lines joined by \n
  asio::awaitable<bool> reply(Errc e, std::string_view detail = {});
  asio::awaitable<bool> protocol_error(Errc e, std::string_view detail = {});

  // --- commands ---
  asio::awaitable<bool> on_command(const smtp::Command& cmd);
  asio::awaitable<bool> on_helo(const smtp::Command& cmd, bool extended);
  asio::awaitable<bool> on_starttls();
  asio::awaitable<bool> on_auth(const smtp::Command& cmd);
  asio::awaitable<bool> on_mail(const smtp::Command& cmd);
  asio::awaitable<bool> on_rcpt(const smtp::Command& cmd);
  asio::awaitable<bool> reject_rcpt(Errc e, const std::string& path);
  asio::awaitable<bool> on_data();
  asio::awaitable<bool> on_bdat(const smtp::Command& cmd);
  asio::awaitable<bool> check_connect();
  asio::awaitable<bool> finish_message(Result<void> data_status);
  asio::awaitable<bool> end_transaction(std::string reply_text);
  asio::awaitable<Result<std::string>> auth_challenge(std::string_view prompt);
  asio::awaitable<Result<std::pair<std::string, std::string>>> auth_exchange(const proto::sasl::AuthRequest& req);
  asio::awaitable<bool> auth_failed(std::string_view mechanism);

  // --- helpers ---
  smtp::ParserOptions parser_options() const {
    // A header limit above the message limit is simply the message limit.
    return {cfg_.limits.line_length, std::min<std::size_t>(cfg_.limits.header_size, cfg_.limits.message_size),
            cfg_.limits.message_size,
            cfg_.limits.bare_line};
  }
  bool must_tls_before_auth() const { return !io_->tls_active(); }
  bool auth_offered() const { return deps_.directory && io_->tls_active(); }
  bool starttls_offered() const {
    return rt_->tls && !io_->tls_active() && listener_.mode != config::ListenerMode::Submissions;
  }
  bool may_relay_anywhere() const;
  Status check_rcpt_domain(const smtp::Mailbox& mb) const;
  asio::awaitable<Status> verify_recipient(const config::RelayDomain& dom, const std::string& addr);
  bool pipelined_input() { return parser_.buffered() > 0 || io_->available() > 0; }
  std::string client_name() const {
    return (ctx_.envelope.client.reverse_name.empty() ? "unknown" : ctx_.envelope.client.reverse_name) +
           "[" + peer_.ip.str() + "]";
  }
  std::string received_header(const std::string& qid) const;
  void reset_transaction();
  void log_reject(std::string_view stage, std::string_view reply_text, std::string_view rcpt = {}) const;
  asio::awaitable<bool> apply_verdict_early(Phase phase);
  filters::SenderList sender_list(const std::string& domain) const;
  quarantine::Entry quarantine_entry(quarantine::Kind kind, const filters::Verdict& v, const std::string& qid,
                                     std::string auth_domain, std::string_view header) const;
  asio::awaitable<Status> keep(const quarantine::Entry& e, std::string_view head, std::string_view header,
                               std::string_view body, bool durable);

  SessionDeps deps_;
  std::shared_ptr<const Runtime> rt_;
  const config::Config& cfg_;
  std::unique_ptr<SessionIo> io_;
  config::Listener listener_;
  Peer peer_;
  smtp::Parser parser_;
  Deadline deadline_;

  // session state, reset by STARTTLS
  bool greeted_ = false;    // HELO or EHLO seen
  bool extended_ = false;   // EHLO (pipelining allowed)
  std::string auth_user_;
  unsigned errors_ = 0;
  bool deferred_ = false;  // the last early verdict was TempFail (greylisting, rate limit): not a client error
  unsigned auth_failures_ = 0;
  // transaction state
  bool in_mail_ = false;
  bool bdat_used_ = false;
  filters::ScanContext ctx_;
  std::unique_ptr<SpoolWriter> writer_;
  std::string message_;   // kept for the EndOfData filters (bounded by message_size)
  std::string data_buf_;  // read buffer for DATA/BDAT, allocated at the first one
  // counts for the "disconnect" log line, Postfix style
  unsigned n_commands_ = 0;
};

asio::awaitable<bool> Session::fill() {
  // Commands arrive in small reads; message data in large ones. The large
  // buffer exists only once a session sends a message, so an idle
  // connection stays small.
  char small[kCommandRead];
  char* buf = small;
  std::size_t size = sizeof small;
  if (parser_.mode() != smtp::Parser::Mode::Command) {
    data_buf_.resize(kDataRead);
    buf = data_buf_.data();
    size = data_buf_.size();
  }
  auto got = co_await io_->read_some(buf, size);
  if (!got) {
    if (deadline_.take_fired()) {
      counters().timeouts.inc();
      log::info("timeout after " + std::string(in_mail_ ? "DATA" : "command") + " from " + client_name());
      deadline_.after(std::chrono::seconds(5));  // bound the 421 write
      co_await reply(Errc::Timeout, std::string(cfg_.server.hostname) + " Error: timeout exceeded");
    }
    co_return false;
  }
  parser_.feed(std::string_view(buf, *got));
  co_return true;
}

asio::awaitable<bool> Session::reply(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  // Multi-line replies are passed with '\n' between lines: "250-a\n250 b".
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto nl = text.find('\n', pos);
    out.append(text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos));
    out += "\r\n";
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  auto st = co_await io_->write(out);
  co_return st.ok();
}

asio::awaitable<bool> Session::reply(Errc e, std::string_view detail) {
  std::string text = format_reply(e, detail);
  bool ok = co_await reply(std::string_view(text));
  co_return ok;
}

// A client error: reply, count it, and hang up with 421 after too many.
asio::awaitable<bool> Session::protocol_error(Errc e, std::string_view detail) {
  bool sent = co_await reply(e, detail);
  if (!sent) co_return false;
  if (++errors_ >= cfg_.limits.hard_errors) {
    log::info("too many errors after " + std::to_string(n_commands_) + " commands from " + client_name());
    co_await reply(Errc::TooManyErrors);
    co_return false;
  }
  co_return true;
}

bool Session::may_relay_anywhere() const {
  if (!auth_user_.empty()) return true;
  for (const auto& net : cfg_.relay.networks)
    if (net.contains(peer_.ip)) return true;
  return false;
}

std::string Session::received_header(const std::string& qid) const {
  const auto& c = ctx_.envelope.client;
  std::string h = "Received: from " + (c.helo.empty() ? std::string("unknown") : c.helo) + " (" +
                  (c.reverse_name.empty() ? "unknown" : c.reverse_name) + " [" + peer_.ip.str() + "])\r\n";
  h += "\tby " + cfg_.server.hostname + " (moat) with " + c.protocol + " id " + qid;
  if (!c.tls_version.empty()) h += "\r\n\t(using " + c.tls_version + " with cipher " + c.tls_cipher + ")";
  if (ctx_.envelope.recipients.size() == 1) h += "\r\n\tfor <" + ctx_.envelope.recipients[0].address + ">";
  h += "; " + rfc5322_date(std::chrono::system_clock::now()) + "\r\n";
  return h;
}

void Session::reset_transaction() {
  in_mail_ = false;
  bdat_used_ = false;
  writer_.reset();  // aborts an uncommitted spool file
  // Buffers keep their memory for the next message of this session (no
  // mmap/munmap per message), unless a large message made them big.
  message_.clear();
  if (message_.capacity() > kKeepBuffer) std::string().swap(message_);
  auto client = ctx_.envelope.client;
  ctx_ = filters::ScanContext{};
  ctx_.config = rt_->config;
  ctx_.envelope.client = std::move(client);
  parser_.reset_message();
}

void Session::log_reject(std::string_view stage, std::string_view reply_text, std::string_view rcpt) const {
  std::string line = "NOQUEUE: reject: " + std::string(stage) + " from " + client_name() + ": " +
                     std::string(reply_text) + "; from=<" + ctx_.envelope.sender + ">";
  if (!rcpt.empty()) line += " to=<" + std::string(rcpt) + ">";
  line += " proto=" + std::string(extended_ ? "ESMTP" : "SMTP") + " helo=<" + ctx_.envelope.client.helo + ">";
  log::info(line);
}

// Filters that run before DATA can only reject or tempfail.
asio::awaitable<bool> Session::apply_verdict_early(Phase phase) {
  if (!rt_->pipeline) co_return true;
  auto v = co_await rt_->pipeline->run(phase, ctx_);
  deferred_ = v.action == Action::TempFail;
  if (v.action == Action::Reject || v.action == Action::TempFail) {
    std::string text = format_reply(v.reply, std::string(smtp_reply(v.reply).text) +
                                                 (v.reason.empty() ? "" : " (" + v.reason + ")"));
    log_reject(phase == Phase::Helo ? "HELO" : phase == Phase::MailFrom ? "MAIL" : "RCPT", text);
    co_await reply(text);
    co_return false;
  }
  co_return true;
}

// Connect-phase checks (DNSBL, rate limits) answer instead of the banner and
// the session ends (RFC 5321 §3.1): 554 when refused, 421 when deferred.
asio::awaitable<bool> Session::check_connect() {
  if (!rt_->pipeline) co_return true;
  auto v = co_await rt_->pipeline->run(Phase::Connect, ctx_);
  if (v.action != Action::Reject && v.action != Action::TempFail) co_return true;
  Errc e = v.reply;
  if (v.action == Action::TempFail && smtp_reply(e).code != 421) e = Errc::ConnectTempFail;
  if (v.action == Action::Reject && e == Errc::PolicyReject) e = Errc::ConnectRefused;
  std::string text = format_reply(e, std::string(smtp_reply(e).text) + (v.reason.empty() ? "" : " (" + v.reason + ")"));
  log_reject("CONNECT", text);
  co_await reply(text);
  co_return false;
}

// The dialogue and its watchdog run as one parallel group, so the watchdog
// has finished before the Session is destroyed.
asio::awaitable<void> Session::run() {
  counters().connections.inc();
  co_await (dialogue() || deadline_.watch());
  reset_transaction();
  io_->close();
  log::info("disconnect from " + client_name() + " commands=" + std::to_string(n_commands_));
}

asio::awaitable<void> Session::dialogue() {
  auto ex = co_await asio::this_coro::executor;
  ctx_.config = rt_->config;
  ctx_.envelope.client.ip = peer_.ip;
  ctx_.envelope.client.port = peer_.port;
  log::info("connect from " + client_name());

  deadline_.after(cfg_.limits.command_timeout);
  bool ok = true;
  if (listener_.mode == config::ListenerMode::Submissions) {
    Status tls{Errc::NotImplemented};
    if (rt_->tls) tls = co_await io_->start_tls();
    if (!tls) {
      log::info("TLS handshake failed on implicit-TLS port from " + client_name());
      ok = false;
    }
  }
  if (ok && cfg_.limits.greet_pause.count() > 0) {
    // Early talkers (pregreet) are spam bots that do not wait for the banner.
    asio::steady_timer pause(ex, cfg_.limits.greet_pause);
    co_await pause.async_wait(asio::use_awaitable);
    if (io_->available() > 0) {
      log::info("reject: pregreet from " + client_name());
      co_await reply("554 5.5.0 Error: SMTP protocol synchronization (talked before greeting)");
      ok = false;
    }
  }
  if (ok) ok = co_await check_connect();
  if (ok) ok = co_await reply("220 " + cfg_.server.hostname + " ESMTP moat");

  while (ok) {
    auto ev = parser_.next();
    switch (ev.kind) {
      case smtp::Event::Kind::NeedMore:
        if (parser_.between_commands()) deadline_.after(cfg_.limits.command_timeout);
        ok = co_await fill();
        break;
      case smtp::Event::Kind::Command:
        ++n_commands_;
        ok = co_await on_command(ev.command);
        break;
      case smtp::Event::Kind::CommandError:
        ok = co_await protocol_error(ev.error.code);
        break;
      default:  // data events only arrive inside on_data/on_bdat
        ok = co_await protocol_error(Errc::BadSequence);
        break;
    }
  }
  deadline_.stop();
}

asio::awaitable<bool> Session::on_command(const smtp::Command& cmd) {
  using V = smtp::Verb;
  // RFC 2920: without EHLO there is no pipelining, and EHLO/HELO, DATA,
  // STARTTLS and QUIT must end a group. Data sent early is refused and the
  // connection dropped (Postfix's "SMTP protocol synchronization").
  bool sync_point = cmd.verb == V::Ehlo || cmd.verb == V::Helo || cmd.verb == V::Data ||
                    cmd.verb == V::Quit || cmd.verb == V::Auth;
  if (cmd.verb != V::StartTls && (sync_point || !extended_) && pipelined_input()) {
    log::info("improper command pipelining after " + std::string(cmd.verb == V::Data ? "DATA" : "command") +
              " from " + client_name());
    co_await reply("554 5.5.0 Error: SMTP protocol synchronization");
    co_return false;
  }
  switch (cmd.verb) {
    case V::Helo: co_return co_await on_helo(cmd, false);
    case V::Ehlo: co_return co_await on_helo(cmd, true);
    case V::StartTls: co_return co_await on_starttls();
    case V::Auth: co_return co_await on_auth(cmd);
    case V::Mail: co_return co_await on_mail(cmd);
    case V::Rcpt: co_return co_await on_rcpt(cmd);
    case V::Data: co_return co_await on_data();
    case V::Bdat: co_return co_await on_bdat(cmd);
    case V::Rset:
      reset_transaction();
      co_return co_await reply("250 2.0.0 Ok");
    case V::Noop: co_return co_await reply("250 2.0.0 Ok");
    case V::Quit:
      co_await reply("221 2.0.0 Bye");
      co_return false;
    case V::Vrfy: co_return co_await reply("252 2.5.2 Cannot VRFY user; try RCPT to attempt delivery");
    case V::Expn: co_return co_await protocol_error(Errc::UnknownCommand, "Error: EXPN not supported");
    case V::Help: co_return co_await reply("214 2.0.0 See RFC 5321");
    case V::Unknown: break;
  }
  co_return co_await protocol_error(Errc::UnknownCommand, "Error: command not recognized");
}

asio::awaitable<bool> Session::on_helo(const smtp::Command& cmd, bool extended) {
  if (cmd.argument.empty()) co_return co_await protocol_error(Errc::ParamSyntax, "Syntax: HELO/EHLO hostname");
  reset_transaction();
  greeted_ = true;
  extended_ = extended;
  auto& c = ctx_.envelope.client;
  c.helo = cmd.argument.substr(0, 255);
  if (bool passed = co_await apply_verdict_early(Phase::Helo); !passed) {
    greeted_ = false;
    co_return ++errors_ < cfg_.limits.hard_errors;
  }
  if (!extended) co_return co_await reply("250 " + cfg_.server.hostname);
  std::string r = "250-" + cfg_.server.hostname + "\n250-PIPELINING\n250-SIZE " +
                  std::to_string(cfg_.limits.message_size) + "\n";
  if (starttls_offered()) r += "250-STARTTLS\n";
  if (auth_offered()) r += "250-AUTH PLAIN LOGIN\n";
  r += "250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250-DSN\n250-SMTPUTF8\n250 CHUNKING";
  co_return co_await reply(r);
}

asio::awaitable<bool> Session::on_starttls() {
  if (!starttls_offered()) co_return co_await protocol_error(Errc::BadSequence, "Error: STARTTLS not available");
  if (in_mail_) co_return co_await protocol_error(Errc::BadSequence, "Error: MAIL transaction in progress");
  // STARTTLS injection (CVE-2011-0411): anything the client sent after the
  // command in plaintext is thrown away, never read as a TLS-protected command.
  if (pipelined_input()) {
    log::info("discarding plaintext pipelined after STARTTLS from " + client_name());
    parser_.discard_buffered();
  }
  if (bool sent = co_await reply("220 2.0.0 Ready to start TLS"); !sent) co_return false;
  // Drain what the kernel already holds too: it was sent before the handshake.
  auto st = co_await io_->start_tls();
  if (!st) {
    log::info("STARTTLS handshake failed from " + client_name() + ": " + st.error().detail);
    co_return false;
  }
  parser_.discard_buffered();
  greeted_ = extended_ = false;
  auth_user_.clear();
  reset_transaction();
  ctx_.envelope.client.helo.clear();
  ctx_.envelope.client.tls_version = io_->tls_version();
  ctx_.envelope.client.tls_cipher = io_->tls_cipher();
  co_return true;
}

// Sends a 334 challenge and reads the client's answer line (RFC 4954 §4).
asio::awaitable<Result<std::string>> Session::auth_challenge(std::string_view prompt) {
  if (bool sent = co_await reply("334 " + std::string(prompt)); !sent) co_return Error{Errc::IoError, "connection lost"};
  parser_.expect_raw_line();
  for (;;) {
    auto ev = parser_.next();
    if (ev.kind == smtp::Event::Kind::NeedMore) {
      if (parser_.between_commands()) deadline_.after(cfg_.limits.command_timeout);
      if (bool more = co_await fill(); !more) co_return Error{Errc::IoError, "connection lost"};
      continue;
    }
    if (ev.kind == smtp::Event::Kind::CommandError) co_return ev.error;
    if (sasl::is_cancel(ev.command.argument)) co_return Error{Errc::ParamSyntax, "Authentication aborted"};
    co_return std::move(ev.command.argument);
  }
}

// Runs the PLAIN or LOGIN exchange; the value is {user, password}.
asio::awaitable<Result<std::pair<std::string, std::string>>> Session::auth_exchange(const sasl::AuthRequest& req) {
  if (req.mechanism == "PLAIN") {
    std::string b64 = req.initial;
    if (!req.has_initial) {
      auto line = co_await auth_challenge("");
      if (!line) co_return line.error();
      b64 = std::move(*line);
    }
    auto creds = sasl::decode_plain(b64);
    if (!creds) co_return creds.error();
    // Acting as another user (authzid) is not supported.
    if (!creds->authzid.empty() && creds->authzid != creds->authcid) co_return Error{Errc::AuthFailed, ""};
    co_return std::pair{creds->authcid, creds->password};
  }
  if (req.mechanism == "LOGIN") {
    std::string user_b64 = req.initial;
    if (!req.has_initial) {
      auto line = co_await auth_challenge(sasl::kLoginUserPrompt);
      if (!line) co_return line.error();
      user_b64 = std::move(*line);
    }
    auto user = sasl::decode_login(user_b64);
    if (!user) co_return user.error();
    auto pass_b64 = co_await auth_challenge(sasl::kLoginPasswordPrompt);
    if (!pass_b64) co_return pass_b64.error();
    auto pass = sasl::decode_login(*pass_b64);
    if (!pass) co_return pass.error();
    co_return std::pair{std::move(*user), std::move(*pass)};
  }
  co_return Error{Errc::AuthMechUnsupported, ""};
}

asio::awaitable<bool> Session::on_auth(const smtp::Command& cmd) {
  if (!auth_offered()) {
    co_return co_await protocol_error(io_->tls_active() ? Errc::NotImplemented : Errc::EncryptionRequired,
                                      io_->tls_active() ? "Error: authentication not enabled" : "");
  }
  if (!greeted_) co_return co_await protocol_error(Errc::BadSequence, "Error: send HELO/EHLO first");
  if (!auth_user_.empty()) co_return co_await protocol_error(Errc::BadSequence, "Error: already authenticated");
  if (in_mail_) co_return co_await protocol_error(Errc::BadSequence, "Error: MAIL transaction in progress");

  auto req = sasl::parse_auth(cmd.argument);
  if (!req) co_return co_await protocol_error(Errc::ParamSyntax, "Syntax: AUTH mechanism");
  auto got = co_await auth_exchange(*req);
  if (!got) {
    if (got.error().code == Errc::IoError) co_return false;
    if (got.error().code == Errc::AuthFailed) co_return co_await auth_failed(req->mechanism);
    co_return co_await protocol_error(got.error().code, got.error().detail);
  }
  auto& [user, pass] = *got;
  auto res = co_await deps_.directory->authenticate(user, pass);
  if (!res) {
    log::warning("AUTH for " + client_name() + ": directory error: " + res.error().detail);
    co_return co_await reply(Errc::DirectoryUnavailable);
  }
  if (!*res) {
    co_return co_await auth_failed(req->mechanism);
  }
  auth_user_ = user;
  ctx_.envelope.client.auth_user = user;
  log::info(client_name() + ": sasl_method=" + req->mechanism + ", sasl_username=" + user);
  co_return co_await reply("235 2.7.0 Authentication successful");
}

asio::awaitable<bool> Session::auth_failed(std::string_view mechanism) {
  counters().auth_failed.inc();
  log::warning(client_name() + ": SASL " + std::string(mechanism) + " authentication failed");
  if (++auth_failures_ >= cfg_.limits.auth_failures) {
    co_await reply(Errc::AuthFailed);
    co_await reply("421 4.7.0 Too many failed authentication attempts");
    co_return false;
  }
  co_return co_await protocol_error(Errc::AuthFailed);
}

asio::awaitable<bool> Session::on_mail(const smtp::Command& cmd) {
  if (!greeted_) co_return co_await protocol_error(Errc::BadSequence, "Error: send HELO/EHLO first");
  if (in_mail_) co_return co_await protocol_error(Errc::BadSequence, "Error: nested MAIL command");
  if (listener_.mode != config::ListenerMode::Smtp && auth_user_.empty())
    co_return co_await protocol_error(io_->tls_active() ? Errc::AuthRequired : Errc::EncryptionRequired);
  // ESMTP parameters only after EHLO (RFC 5321 §4.1.1.11 / RFC 1869).
  if (!extended_ && !cmd.params.empty())
    co_return co_await protocol_error(Errc::NotImplemented, "MAIL parameters need EHLO");
  auto params = smtp::parse_mail_params(cmd.params);
  if (!params) co_return co_await protocol_error(params.error().code, params.error().detail);
  if (params->size.value_or(0) > cfg_.limits.message_size)
    co_return co_await protocol_error(Errc::MessageTooLarge);
  if (!cmd.path.empty()) {
    auto mb = smtp::parse_path(cmd.path, params->smtputf8);
    if (!mb) co_return co_await protocol_error(Errc::BadAddress, "Bad sender address syntax");
  }
  reset_transaction();
  auto& env = ctx_.envelope;
  env.sender = cmd.path;
  env.declared_size = params->size.value_or(0);
  env.body = params->body;
  env.smtputf8 = params->smtputf8;
  env.ret = params->ret;
  env.envid = params->envid;
  env.client.auth_user = auth_user_;
  env.client.protocol = std::string(extended_ ? "ESMTP" : "SMTP") + (io_->tls_active() ? "S" : "") +
                        (auth_user_.empty() ? "" : "A");
  if (bool passed = co_await apply_verdict_early(Phase::MailFrom); !passed) co_return ++errors_ < cfg_.limits.hard_errors;
  in_mail_ = true;
  co_return co_await reply("250 2.1.0 Ok");
}

Status Session::check_rcpt_domain(const smtp::Mailbox& mb) const {
  if (may_relay_anywhere()) return {};
  // Unauthenticated mail only for our relay domains, and only in plain forms
  // that every next hop reads the same way (SECURITY.md open-relay tricks).
  if (auto st = smtp::check_relay_safe(mb, ctx_.envelope.smtputf8); !st) return st;
  if (!cfg_.relay_domain(mb.domain)) return Error{Errc::RelayDenied, ""};
  return {};
}

asio::awaitable<Status> Session::verify_recipient(const config::RelayDomain& dom, const std::string& addr) {
  switch (dom.verify) {
    case config::VerifyMode::None: co_return Status{};
    case config::VerifyMode::Static: {
      std::string lower = addr;
      auto at = lower.rfind('@');
      for (std::size_t i = at; i < lower.size(); ++i) lower[i] = char(std::tolower(static_cast<unsigned char>(lower[i])));
      std::string whole_domain = lower.substr(at);
      for (const auto& r : dom.recipients)
        if (r == lower || r == whole_domain) co_return Status{};
      co_return Error{Errc::UnknownRecipient, ""};
    }
    case config::VerifyMode::Callout: {
      if (!deps_.callout) co_return Error{Errc::NextHopUnavailable, ""};
      auto r = co_await deps_.callout->verify(dom, addr);
      if (!r) co_return r.error();
      if (!*r) co_return Error{Errc::UnknownRecipient, ""};
      co_return Status{};
    }
  }
  co_return Status{};
}

// (A member, not a coroutine lambda: g++ 12 miscompiles capturing ones.)
asio::awaitable<bool> Session::reject_rcpt(Errc e, const std::string& path) {
  counters().rcpt_rejected.inc();
  std::string detail = "<" + path + ">: " + std::string(smtp_reply(e).text);
  log_reject("RCPT", format_reply(e, detail), path);
  if (is_temporary(e)) co_return co_await reply(e, detail);
  co_return co_await protocol_error(e, detail);
}

asio::awaitable<bool> Session::on_rcpt(const smtp::Command& cmd) {
  if (!in_mail_) co_return co_await protocol_error(Errc::BadSequence, "Error: need MAIL command");
  auto& env = ctx_.envelope;
  if (env.recipients.size() >= cfg_.limits.recipients) {
    // 452 per RFC 5321 §4.5.3.1.10: the client sends the rest later.
    co_return co_await reply(Errc::TooManyRecipients);
  }
  if (!extended_ && !cmd.params.empty())
    co_return co_await protocol_error(Errc::NotImplemented, "RCPT parameters need EHLO");
  auto params = smtp::parse_rcpt_params(cmd.params);
  if (!params) co_return co_await protocol_error(params.error().code, params.error().detail);
  auto mb = smtp::parse_path(cmd.path, env.smtputf8);
  if (!mb || cmd.path.empty()) co_return co_await protocol_error(Errc::BadAddress, "Bad recipient address syntax");

  // Local domains: the directory knows the users (550 unknown, 452 over quota).
  bool local = false;
  if (deps_.local) local = co_await deps_.local->is_local_domain(mb->domain);
  if (local) {
    std::string addr = mb->local + "@" + mb->domain;
    Status known = co_await deps_.local->verify_recipient(addr, env.declared_size);
    if (!known) co_return co_await reject_rcpt(known.error().code, cmd.path);
  }
  if (auto st = local ? Status{} : check_rcpt_domain(*mb); !st) co_return co_await reject_rcpt(st.error().code, cmd.path);
  if (const auto* dom = cfg_.relay_domain(mb->domain)) {
    std::string addr = mb->local + "@" + mb->domain;
    if (auto st = co_await verify_recipient(*dom, addr); !st) co_return co_await reject_rcpt(st.error().code, cmd.path);
  }
  env.recipients.push_back(Recipient{cmd.path, params->notify, params->orcpt});
  ctx_.current_rcpt = &env.recipients.back();
  const auto symbols_before = ctx_.symbols.size();
  bool ok = co_await apply_verdict_early(Phase::RcptTo);
  ctx_.current_rcpt = nullptr;
  if (!ok) {
    env.recipients.pop_back();
    // A refused recipient's symbols (GREYLIST, ...) must not judge the others or the message.
    ctx_.symbols.resize(symbols_before);
    // 451s for a greylisted list of recipients must not hang up the session (Postfix counts them as soft errors).
    co_return deferred_ || ++errors_ < cfg_.limits.hard_errors;
  }
  co_return co_await reply("250 2.1.5 Ok");
}

asio::awaitable<bool> Session::on_data() {
  if (!in_mail_) co_return co_await protocol_error(Errc::BadSequence, "Error: need MAIL command");
  if (ctx_.envelope.recipients.empty()) co_return co_await protocol_error(Errc::BadSequence, "Error: no valid recipients");
  if (bdat_used_) co_return co_await protocol_error(Errc::BadSequence, "Error: DATA after BDAT");
  ctx_.envelope.arrival = std::chrono::system_clock::now();
  auto w = deps_.spool->begin(ctx_.envelope);
  if (!w) co_return co_await reply(w.error().code);
  writer_ = std::move(*w);
  if (bool sent = co_await reply("354 End data with <CR><LF>.<CR><LF>"); !sent) co_return false;
  if (rt_->pipeline) rt_->pipeline->open_taps(ctx_);
  parser_.start_data();
  deadline_.after(cfg_.limits.data_timeout);  // one deadline for the whole DATA phase
  for (;;) {
    auto ev = parser_.next();
    switch (ev.kind) {
      case smtp::Event::Kind::NeedMore:
        if (bool more = co_await fill(); !more) co_return false;
        break;
      case smtp::Event::Kind::DataChunk:
        message_.append(ev.data);
        ctx_.feed(ev.data);
        break;
      case smtp::Event::Kind::DataEnd: co_return co_await finish_message(Status{});
      case smtp::Event::Kind::DataError: co_return co_await finish_message(ev.error);
      default: co_return false;
    }
  }
}

asio::awaitable<bool> Session::on_bdat(const smtp::Command& cmd) {
  if (!in_mail_ || ctx_.envelope.recipients.empty()) {
    // The chunk still has to be read past, or its bytes would run as commands.
    parser_.start_bdat(cmd.bdat_size, cmd.bdat_last);
    for (;;) {
      auto ev = parser_.next();
      if (ev.kind == smtp::Event::Kind::NeedMore) {
        if (bool more = co_await fill(); !more) co_return false;
      } else if (ev.kind == smtp::Event::Kind::BdatChunkEnd || ev.kind == smtp::Event::Kind::DataError) {
        break;
      }
    }
    co_return co_await protocol_error(Errc::BadSequence, in_mail_ ? "Error: no valid recipients" : "Error: need MAIL command");
  }
  if (!bdat_used_) {
    bdat_used_ = true;
    ctx_.envelope.arrival = std::chrono::system_clock::now();
    auto w = deps_.spool->begin(ctx_.envelope);
    if (!w) co_return co_await reply(w.error().code);
    writer_ = std::move(*w);
    if (rt_->pipeline) rt_->pipeline->open_taps(ctx_);
  }
  parser_.start_bdat(cmd.bdat_size, cmd.bdat_last);
  deadline_.after(cfg_.limits.data_timeout);
  Status chunk_status;
  for (;;) {
    auto ev = parser_.next();
    if (ev.kind == smtp::Event::Kind::NeedMore) {
      if (bool more = co_await fill(); !more) co_return false;
    } else if (ev.kind == smtp::Event::Kind::DataChunk) {
      if (chunk_status.ok()) {
        message_.append(ev.data);
        ctx_.feed(ev.data);
      }
    } else if (ev.kind == smtp::Event::Kind::DataError) {
      chunk_status = ev.error;
      if (!cmd.bdat_last) break;
    } else if (ev.kind == smtp::Event::Kind::BdatChunkEnd) {
      break;
    }
  }
  if (!chunk_status.ok() || cmd.bdat_last) co_return co_await finish_message(chunk_status);
  co_return co_await reply("250 2.0.0 " + std::to_string(cmd.bdat_size) + " octets received");
}

// End of DATA or the last BDAT chunk: scan, decide, spool durably, answer.
asio::awaitable<bool> Session::finish_message(Status data_status) {
  if (!data_status) {
    counters().rejected.inc();
    std::string text = format_reply(data_status.error().code);
    log_reject("END-OF-MESSAGE", text);
    co_return co_await end_transaction(std::move(text));
  }
  std::string_view msg = message_;
  ctx_.message = msg;
  ctx_.header = msg.substr(0, header_end(msg));
  ctx_.message_size = msg.size();
  ctx_.received_hops = count_received(ctx_.header) + 1;  // ours counts too

  filters::Verdict verdict;
  if (rt_->pipeline) verdict = co_await rt_->pipeline->run(Phase::EndOfData, ctx_);
  const std::string qid = writer_->id();
  const config::Actions actions = filters::actions_for(cfg_, ctx_.envelope);
  std::string auth_domain;
  if (deps_.quarantine) {
    auth_domain = quarantine::authenticated_domain(ctx_.auth, ctx_.header);
    filters::SenderList list = sender_list(auth_domain);
    filters::apply_sender_list(verdict, list, ctx_.symbols, actions);
  }
  const bool store_copy = deps_.quarantine &&
                          (verdict.action == Action::Quarantine ||
                           (verdict.action == Action::Reject && cfg_.quarantine.rejected_retention.count() > 0));
  std::string head = received_header(qid);
  if (!ctx_.auth.empty()) head += filters::authentication_results(cfg_.server.authserv_id, ctx_.auth);
  for (const auto& h : ctx_.headers) head += h;
  // Stored copies carry the verdict headers even when relayed mail would not.
  if (filters::wants_spam_headers(actions, verdict.action) ||
      (store_copy && actions.spam_headers != config::SpamHeaders::None))
    for (auto& line : filters::spam_headers(verdict, ctx_.symbols)) head += line + "\r\n";
  // The header section as relayed: results claiming our authserv-id were not
  // written by us (RFC 8601 §5), and Tag may prefix the Subject. Everything
  // else stays byte for byte as received.
  auto stripped = filters::strip_authentication_results(ctx_.header, cfg_.server.authserv_id);
  std::string_view header = stripped ? std::string_view(*stripped) : ctx_.header;
  std::optional<std::string> prefixed;
  if (verdict.action == Action::Tag) prefixed = filters::prefix_subject(header, actions.subject_prefix);
  if (prefixed) header = *prefixed;
  const std::string_view body = std::string_view(message_).substr(ctx_.header.size());

  switch (verdict.action) {
    case Action::Reject:
    case Action::TempFail: {
      const bool reject = verdict.action == Action::Reject;
      (reject ? counters().rejected : counters().tempfailed).inc();
      std::string detail = std::string(smtp_reply(verdict.reply).text) +
                           (verdict.reason.empty() ? "" : " (" + verdict.reason + ")");
      // The reference is the queue id: in the log line below and, when a
      // copy is kept, in `moatctl quarantine show`.
      if (reject) detail += "; ref " + qid;
      std::string text = format_reply(verdict.reply, detail);
      log::info(qid + ": reject: END-OF-MESSAGE from " + client_name() + ": " + text + "; from=<" +
                ctx_.envelope.sender + "> score=" + filters::format_score(verdict.score));
      if (reject && store_copy) {
        auto e = quarantine_entry(quarantine::Kind::Rejected, verdict, qid, auth_domain, header);
        if (Status st = co_await keep(e, head, header, body, false); !st)
          log::warning(qid + ": rejected copy not kept: " + st.error().detail);
      }
      co_return co_await end_transaction(std::move(text));
    }
    case Action::Discard:
      counters().discarded.inc();
      log::info(qid + ": discard: END-OF-MESSAGE from " + client_name() + ": " + verdict.reason);
      co_return co_await end_transaction("250 2.0.0 Ok: queued as " + qid);
    case Action::Quarantine:
      if (store_copy) {
        // 250 only once the file, its folder and its row are on disk.
        auto e = quarantine_entry(quarantine::Kind::Quarantined, verdict, qid, auth_domain, header);
        if (Status st = co_await keep(e, head, header, body, true); !st) {
          counters().tempfailed.inc();
          log::warning(qid + ": quarantine failed: " + st.error().detail);
          co_return co_await end_transaction(format_reply(st.error().code));
        }
        counters().quarantined.inc();
        log::info(qid + ": quarantine: END-OF-MESSAGE from " + client_name() + ": " + verdict.reason + "; from=<" +
                  ctx_.envelope.sender + "> score=" + filters::format_score(verdict.score));
        failpoint::hit("smtp.before_reply");
        co_return co_await end_transaction("250 2.0.0 Ok: queued as " + qid);
      }
      break;
    default: break;
  }

  Status st = writer_->append(head);
  if (st) st = writer_->append(header);
  if (st) st = writer_->append(body);
  if (!st) co_return co_await end_transaction(format_reply(st.error().code));
  auto committed = co_await deps_.spool->commit(std::move(writer_));
  if (!committed) {
    counters().tempfailed.inc();
    log::warning(qid + ": spool commit failed: " + committed.error().detail);
    co_return co_await end_transaction(format_reply(committed.error().code));
  }
  log::info(qid + ": client=" + client_name() + (auth_user_.empty() ? "" : ", sasl_username=" + auth_user_));
  if (verdict.action == Action::Quarantine && deps_.queue) {
    // Without a quarantine store (tests, fuzzing) a quarantine verdict holds
    // the message in the hold queue, where `moatctl queue release` frees it.
    (void)deps_.queue->hold(qid);
    counters().held.inc();
  } else {
    counters().accepted.inc();
  }
  // Between fsync and the reply: a crash here must not lose the message.
  failpoint::hit("smtp.before_reply");
  co_return co_await end_transaction("250 2.0.0 Ok: queued as " + qid);
}

// The allow/block list entry of the authenticated sender domain, from
// moatd's in-memory copy of the lists (gateway/sender_lists.hpp).
filters::SenderList Session::sender_list(const std::string& domain) const {
  if (domain.empty() || !deps_.sender_lists) return filters::SenderList::None;
  auto kind = deps_.sender_lists->lookup(domain);
  if (!kind) return filters::SenderList::None;
  return *kind == quarantine::ListKind::Block ? filters::SenderList::Block : filters::SenderList::Allow;
}

quarantine::Entry Session::quarantine_entry(quarantine::Kind kind, const filters::Verdict& v, const std::string& qid,
                                            std::string auth_domain, std::string_view header) const {
  using namespace std::chrono;
  quarantine::Entry e;
  e.id = qid;
  e.kind = kind;
  e.time = duration_cast<seconds>(ctx_.envelope.arrival.time_since_epoch()).count();
  auto keep_for = kind == quarantine::Kind::Rejected ? cfg_.quarantine.rejected_retention : cfg_.quarantine.retention;
  e.expires = duration_cast<seconds>(system_clock::now().time_since_epoch()).count() + keep_for.count();
  e.sender = ctx_.envelope.sender;
  for (const auto& r : ctx_.envelope.recipients) e.recipients.push_back(r.address);
  e.from = qadmin::field_value(header, "From");
  e.subject = qadmin::field_value(header, "Subject");
  e.score = v.score;
  for (const auto& s : ctx_.symbols)
    e.symbols += (e.symbols.empty() ? "" : " ") + s.name + "(" + filters::format_score(s.score) + ")";
  e.reason = v.reason;
  e.client = client_name();
  e.auth_domain = std::move(auth_domain);
  return e;
}

asio::awaitable<Status> Session::keep(const quarantine::Entry& entry, std::string_view head, std::string_view header,
                                      std::string_view body, bool durable) {
  quarantine::Entry e = entry;
  std::string file = qadmin::encode_file(ctx_.envelope, {head, header, body});
  e.size = file.size();
  auto* store = deps_.quarantine;
  Status st = co_await run_blocking(deps_.spool->blocking(),
                                    [store, &e, &file, durable] { return store->put(e, file, durable); });
  co_return st;
}

asio::awaitable<bool> Session::end_transaction(std::string reply_text) {
  reset_transaction();
  co_return co_await reply(reply_text);
}

}  // namespace

asio::awaitable<void> run_smtp_session(SessionDeps deps, std::unique_ptr<SessionIo> io,
                                       config::Listener listener, Peer peer) {
  auto ex = co_await asio::this_coro::executor;
  Session s(std::move(deps), std::move(io), std::move(listener), peer, ex);
  co_await s.run();
}

}  // namespace moat::gateway

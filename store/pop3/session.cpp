// See session.hpp. States (RFC 1939 §3):
//
//   AUTHORIZATION --USER/PASS or AUTH ok--> TRANSACTION --QUIT--> UPDATE
//        |  STLS: TLS, state reset                |  connection lost: nothing
//        +--QUIT--> closed                        v  is expunged (RFC 1939 §6)
//
// The maildrop is the INBOX as it was at login; messages that another
// session expunges meanwhile answer "-ERR [SYS/TEMP]" on RETR/TOP.
#include "store/pop3/session.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <vector>

#include "common/blocking.hpp"
#include "common/log.hpp"
#include "common/proto/dotstuff.hpp"
#include "common/proto/pop3/parser.hpp"
#include "common/proto/sasl.hpp"
#include "directory/directory.hpp"
#include "gateway/deadline.hpp"
#include "store/mailbox_store.hpp"

namespace moat::store::pop3 {

using namespace asio::experimental::awaitable_operators;
using proto::pop3::Verb;

std::string uidl(std::uint32_t uid, std::uint32_t uidvalidity) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08X%08X", uid, uidvalidity);
  return buf;
}

namespace {

constexpr std::size_t kRead = 4096;

class Session {
 public:
  Session(Deps deps, std::unique_ptr<gateway::SessionIo> io, asio::any_io_executor ex)
      : deps_(std::move(deps)), io_(std::move(io)), deadline_(ex, io_.get()) {}

  asio::awaitable<void> run() {
    co_await (dialogue() || deadline_.watch());
    io_->close();
  }

 private:
  struct Msg {
    MessageInfo info;
    bool deleted = false;
  };

  void set_deadline() { deadline_.after(deps_.command_timeout); }

  asio::awaitable<bool> send(std::string text) {
    auto st = co_await io_->write(text);
    co_return st.ok();
  }
  asio::awaitable<bool> ok(std::string_view text) { co_return co_await send("+OK " + std::string(text) + "\r\n"); }
  asio::awaitable<bool> err(std::string_view text) { co_return co_await send("-ERR " + std::string(text) + "\r\n"); }

  asio::awaitable<bool> fill() {
    char buf[kRead];
    auto got = co_await io_->read_some(buf, sizeof buf);
    if (!got) co_return false;
    parser_.feed(std::string_view(buf, *got));
    co_return true;
  }

  asio::awaitable<void> dialogue() {
    set_deadline();
    if (deps_.implicit_tls) {
      auto st = co_await io_->start_tls();
      if (!st) {
        done_ = true;
        co_return;
      }
    }
    bool alive = co_await ok("POP3 " + deps_.hostname + " ready");
    while (alive && !done_) {
      auto ev = parser_.next();
      if (ev.kind == proto::pop3::Event::Kind::NeedMore) {
        if (parser_.between_commands()) set_deadline();
        alive = co_await fill();
        continue;
      }
      set_deadline();
      if (ev.kind == proto::pop3::Event::Kind::Error) {
        // (no ?: inside a co_await expression: g++ 12 miscompiles it)
        std::string why = "syntax error: " + ev.error.detail;
        if (ev.error.code == Errc::LineTooLong) why = "line too long";
        if (ev.error.code == Errc::UnknownCommand) why = "unknown command";
        alive = co_await bad(why);
        continue;
      }
      if (ev.kind == proto::pop3::Event::Kind::RawLine) {
        alive = co_await bad("unexpected line");
        continue;
      }
      alive = co_await command(ev.command);
    }
    done_ = true;
    deadline_.stop();
  }

  asio::awaitable<bool> bad(std::string_view text) {
    if (++errors_ > deps_.max_errors) {
      co_await err("too many errors");
      co_return false;
    }
    co_return co_await err(text);
  }

  asio::awaitable<bool> command(const proto::pop3::Command& c) {
    if (c.verb == Verb::Capa) co_return co_await capa();
    if (c.verb == Verb::Quit) co_return co_await quit();
    if (c.verb == Verb::Noop && !user_.empty()) co_return co_await ok("");
    if (user_.empty()) {
      switch (c.verb) {
        case Verb::Stls: co_return co_await stls();
        case Verb::User: co_return co_await on_user(c);
        case Verb::Pass: co_return co_await on_pass(c);
        case Verb::Auth: co_return co_await on_auth(c);
        default: co_return co_await bad("not in TRANSACTION state (log in first)");
      }
    }
    switch (c.verb) {
      case Verb::Stat: co_return co_await stat();
      case Verb::List: co_return co_await list(c, false);
      case Verb::Uidl: co_return co_await list(c, true);
      case Verb::Retr: co_return co_await retr(c, false);
      case Verb::Top: co_return co_await retr(c, true);
      case Verb::Dele: co_return co_await dele(c);
      case Verb::Rset:
        for (auto& m : msgs_) m.deleted = false;
        co_return co_await ok(std::to_string(msgs_.size()) + " messages");
      default: co_return co_await bad("not in AUTHORIZATION state");
    }
  }

  bool auth_allowed() const { return io_->tls_active(); }

  asio::awaitable<bool> capa() {
    std::string s = "+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n";
    if (user_.empty()) {
      if (auth_allowed()) s += "USER\r\nSASL PLAIN\r\n";
      if (!io_->tls_active() && deps_.tls_available) s += "STLS\r\n";
    }
    s += "IMPLEMENTATION moat\r\n.\r\n";
    co_return co_await send(std::move(s));
  }

  asio::awaitable<bool> stls() {
    if (io_->tls_active() || !deps_.tls_available) co_return co_await bad("STLS not available");
    // Plaintext pipelined behind STLS is never read as protected input
    // (CVE-2011-0411 class); everything resets after the handshake.
    parser_.discard_buffered();
    if (bool sent = co_await ok("begin TLS negotiation"); !sent) co_return false;
    auto st = co_await io_->start_tls();
    if (!st) co_return false;
    parser_.discard_buffered();
    pending_user_.clear();
    co_return true;
  }

  asio::awaitable<bool> on_user(const proto::pop3::Command& c) {
    if (!auth_allowed()) co_return co_await err("[AUTH] TLS required first (STLS)");
    pending_user_ = c.args[0];
    co_return co_await ok("send PASS");
  }

  asio::awaitable<bool> on_pass(const proto::pop3::Command& c) {
    if (!auth_allowed()) co_return co_await err("[AUTH] TLS required first (STLS)");
    if (pending_user_.empty()) co_return co_await bad("USER first");
    std::string user = std::move(pending_user_);
    pending_user_.clear();
    co_return co_await login(std::move(user), c.args[0]);
  }

  asio::awaitable<bool> on_auth(const proto::pop3::Command& c) {
    if (c.args.empty()) co_return co_await send("+OK\r\nPLAIN\r\n.\r\n");
    if (!auth_allowed()) co_return co_await err("[AUTH] TLS required first (STLS)");
    std::string mech = c.args[0];
    for (auto& ch : mech) ch = char(std::toupper(static_cast<unsigned char>(ch)));
    if (mech != "PLAIN") co_return co_await err("unsupported mechanism");
    std::string response;
    if (c.args.size() == 2) {
      response = c.args[1];
    } else {
      if (bool sent = co_await send("+ \r\n"); !sent) co_return false;
      parser_.expect_raw_line();
      for (;;) {
        auto ev = parser_.next();
        if (ev.kind == proto::pop3::Event::Kind::NeedMore) {
          if (bool more = co_await fill(); !more) co_return false;
          continue;
        }
        if (ev.kind != proto::pop3::Event::Kind::RawLine) co_return co_await bad("bad SASL response");
        response = ev.line;
        break;
      }
      if (proto::sasl::is_cancel(response)) co_return co_await err("authentication cancelled");
    }
    auto creds = plain_login(response);
    if (!creds) co_return co_await failed();
    co_return co_await login(std::move(creds->user), std::move(creds->password));
  }

  asio::awaitable<bool> failed() {
    if (++auth_failures_ >= deps_.max_auth_failures) {
      co_await err("[AUTH] authentication failed; too many failures");
      co_return false;
    }
    co_return co_await err("[AUTH] authentication failed");
  }

  asio::awaitable<bool> login(std::string user, std::string password) {
    auto r = co_await deps_.directory->authenticate(user, password);
    if (!r) co_return co_await err("[SYS/TEMP] user database unavailable, try later");
    if (!*r) co_return co_await failed();
    auto* store = deps_.store;
    auto loaded = co_await run_blocking(*deps_.blocking, [store, &user]() -> Result<std::pair<MailboxStatus, std::vector<MessageInfo>>> {
      (void)store->create_user(user);  // INBOX exists from the first login on
      auto st = store->status(user, "INBOX");
      if (!st) return st.error();
      auto ms = store->messages(user, "INBOX");
      if (!ms) return ms.error();
      return std::make_pair(*st, std::move(*ms));
    });
    if (!loaded) co_return co_await err("[SYS/TEMP] maildrop unavailable");
    uidvalidity_ = loaded->first.uidvalidity;
    msgs_.clear();
    for (auto& m : loaded->second) msgs_.push_back(Msg{std::move(m), false});
    user_ = std::move(user);
    log::info("pop3 login user=" + user_ + " messages=" + std::to_string(msgs_.size()));
    co_return co_await ok("maildrop has " + std::to_string(msgs_.size()) + " messages");
  }

  Msg* message(const std::string& arg) {
    auto n = proto::pop3::parse_number(arg);
    if (!n || *n > msgs_.size()) return nullptr;
    Msg& m = msgs_[*n - 1];
    return m.deleted ? nullptr : &m;
  }

  asio::awaitable<bool> stat() {
    std::uint64_t n = 0, bytes = 0;
    for (const auto& m : msgs_)
      if (!m.deleted) ++n, bytes += m.info.size;
    co_return co_await ok(std::to_string(n) + " " + std::to_string(bytes));
  }

  asio::awaitable<bool> list(const proto::pop3::Command& c, bool uid) {
    auto value = [&](const Msg& m) { return uid ? uidl(m.info.uid, uidvalidity_) : std::to_string(m.info.size); };
    if (!c.args.empty()) {
      const Msg* m = message(c.args[0]);
      if (!m) co_return co_await err("no such message");
      co_return co_await ok(c.args[0] + " " + value(*m));
    }
    std::string s = "+OK\r\n";
    for (std::size_t i = 0; i < msgs_.size(); ++i)
      if (!msgs_[i].deleted) s += std::to_string(i + 1) + " " + value(msgs_[i]) + "\r\n";
    s += ".\r\n";
    co_return co_await send(std::move(s));
  }

  asio::awaitable<bool> retr(const proto::pop3::Command& c, bool top) {
    Msg* m = message(c.args[0]);
    if (!m) co_return co_await err("no such message");
    auto* store = deps_.store;
    const std::string user = user_;
    const std::uint32_t uid = m->info.uid;
    auto content = co_await run_blocking(*deps_.blocking, [store, &user, uid] { return store->fetch(user, "INBOX", uid); });
    if (!content) co_return co_await err("[SYS/TEMP] message not available (removed by another session?)");
    std::string_view body = *content;
    if (top) {
      const auto lines = *proto::pop3::parse_number(c.args[1], true);
      body = top_part(body, lines);
    }
    std::string out = "+OK " + (top ? std::string("top of message follows") : std::to_string(content->size()) + " octets") + "\r\n";
    proto::smtp::DotStuffer ds;
    ds.feed(body, out);
    ds.finish(out);
    co_return co_await send(std::move(out));
  }

  // Header, the empty line, and the first `lines` body lines (RFC 1939 TOP).
  static std::string_view top_part(std::string_view msg, std::uint32_t lines) {
    std::size_t end = msg.find("\r\n\r\n");
    if (end == std::string_view::npos) return msg;
    end += 4;
    for (std::uint32_t i = 0; i < lines && end < msg.size(); ++i) {
      const auto lf = msg.find('\n', end);
      end = lf == std::string_view::npos ? msg.size() : lf + 1;
    }
    return msg.substr(0, end);
  }

  asio::awaitable<bool> dele(const proto::pop3::Command& c) {
    Msg* m = message(c.args[0]);
    if (!m) co_return co_await err("no such message");
    m->deleted = true;
    co_return co_await ok("message " + c.args[0] + " deleted");
  }

  asio::awaitable<bool> quit() {
    if (user_.empty()) {
      co_await ok("bye");
      co_return false;
    }
    // UPDATE state: only here do DELE'd messages go (\Deleted, then an
    // expunge limited to exactly those UIDs, so IMAP's \Deleted marks on
    // other messages are left alone).
    UidRanges uids;
    for (const auto& m : msgs_)
      if (m.deleted) uids.emplace_back(m.info.uid, m.info.uid);
    if (!uids.empty()) {
      auto* store = deps_.store;
      const std::string user = user_;
      auto st = co_await run_blocking(*deps_.blocking, [store, &user, &uids]() -> Status {
        FlagUpdate add;
        add.mode = FlagUpdate::Mode::Add;
        add.flags = kDeleted;
        auto r = store->store_flags(user, "INBOX", uids, add);
        if (!r) return r.error();
        auto e = store->expunge(user, "INBOX", uids);
        if (!e) return e.error();
        return {};
      });
      if (!st) {
        co_await err("[SYS/TEMP] some deleted messages not removed");
        co_return false;
      }
    }
    co_await ok("bye");
    co_return false;
  }

  Deps deps_;
  std::unique_ptr<gateway::SessionIo> io_;
  gateway::Deadline deadline_;
  proto::pop3::Parser parser_;
  bool done_ = false;
  unsigned errors_ = 0;
  unsigned auth_failures_ = 0;
  std::string pending_user_;
  std::string user_;            // non-empty: TRANSACTION state
  std::uint32_t uidvalidity_ = 0;
  std::vector<Msg> msgs_;
};

}  // namespace

asio::awaitable<void> run_session(Deps deps, std::unique_ptr<gateway::SessionIo> io) {
  auto ex = co_await asio::this_coro::executor;
  Session s(std::move(deps), std::move(io), ex);
  co_await s.run();
}

}  // namespace moat::store::pop3

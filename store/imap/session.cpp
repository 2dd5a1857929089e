// See session.hpp. This file is the dialogue: reading commands, dispatch,
// CAPABILITY, STARTTLS and login. The other commands are in
// session_mailbox.cpp, session_selected.cpp and session_fetch.cpp (the class
// is in session_impl.hpp); SEARCH, LIST and the CONDSTORE/QRESYNC argument
// syntax in search.*, list.*, condstore.*.
// States (RFC 3501 §3):
//
//   not authenticated --LOGIN/AUTHENTICATE (TLS only)--> authenticated
//        | STARTTLS: handshake, buffered plaintext dropped     | SELECT/EXAMINE
//        v                                                     v
//   LOGOUT <-------------------------------------------- selected
//                                    CLOSE/UNSELECT: back to authenticated
//
// Selected state keeps the message list as the client knows it (sequence
// number = index + 1). sync() compares it with the store and reports
// EXPUNGE (highest first, so every number is valid when sent), EXISTS and
// FETCH FLAGS; it runs on NOOP, IDLE wake-ups and after every command that
// may see other sessions' changes.
#include "store/imap/session_impl.hpp"

namespace moat::store::imap::detail {

std::string flags_text(const MessageInfo& m) {
  std::string s = "(";
  auto add = [&](std::string_view f) {
    if (s.size() > 1) s += ' ';
    s += f;
  };
  if (m.flags & kSeen) add("\\Seen");
  if (m.flags & kAnswered) add("\\Answered");
  if (m.flags & kFlagged) add("\\Flagged");
  if (m.flags & kDeleted) add("\\Deleted");
  if (m.flags & kDraft) add("\\Draft");
  for (const auto& k : m.keywords) add(k);
  return s + ")";
}

// "\Seen" -> kSeen; keywords are atoms without "\"; nullopt for \Recent or junk.
bool parse_flag(const std::string& f, Flags& flags, std::vector<std::string>& keywords) {
  const std::string u = upper(f);
  if (u == "\\SEEN") flags |= kSeen;
  else if (u == "\\ANSWERED") flags |= kAnswered;
  else if (u == "\\FLAGGED") flags |= kFlagged;
  else if (u == "\\DELETED") flags |= kDeleted;
  else if (u == "\\DRAFT") flags |= kDraft;
  else if (!f.empty() && f[0] != '\\' && f.find_first_of("()[]{}%*\"") == std::string::npos) keywords.push_back(f);
  else return false;
  return true;
}

std::string imap_date(std::int64_t t) {
  static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t tt = std::time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday, months[tm.tm_mon],
                tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

// date-time "dd-Mon-yyyy hh:mm:ss +zzzz" (RFC 3501 §9) -> Unix seconds.
std::optional<std::int64_t> parse_date_time(const std::string& s) {
  int d = 0, y = 0, hh = 0, mm = 0, ss = 0, zone = 0;
  char mon[4] = {};
  char sign = '+';
  if (std::sscanf(s.c_str(), " %d-%3c-%d %d:%d:%d %c%4d", &d, mon, &y, &hh, &mm, &ss, &sign, &zone) != 8) return std::nullopt;
  const int m = month_index(std::string_view(mon, 3)) - 1;
  if (m < 0 || d < 1 || d > 31 || y < 1970 || hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  std::tm tm{};
  tm.tm_mday = d;
  tm.tm_mon = m;
  tm.tm_year = y - 1900;
  tm.tm_hour = hh;
  tm.tm_min = mm;
  tm.tm_sec = ss;
  const std::int64_t off = (zone / 100) * 3600 + (zone % 100) * 60;
  return std::int64_t(timegm(&tm)) - (sign == '-' ? -off : off);
}

asio::awaitable<void> Session::dialogue() {
  set_deadline();
  if (deps_.implicit_tls) {
    auto st = co_await io_->start_tls();
    if (!st) {
      done_ = true;
      co_return;
    }
  }
  bool alive = co_await send("* OK [CAPABILITY " + capabilities() + "] " + deps_.hostname + " moat IMAP ready\r\n");
  while (alive && !done_) {
    auto ev = parser_.next();
    using K = ip::Event::Kind;
    if (ev.kind == K::NeedMore) {
      if (parser_.between_commands()) set_deadline();
      alive = co_await fill();
      continue;
    }
    set_deadline();
    if (ev.kind == K::Continue) {
      alive = co_await send("+ Ready for literal data\r\n");
      continue;
    }
    if (ev.kind == K::Error) {
      alive = co_await on_error(ev);
      continue;
    }
    if (ev.kind == K::RawLine) {
      alive = co_await send("* BAD unexpected line\r\n");
      continue;
    }
    alive = co_await command(ev.command);
  }
  co_await flush();  // what was held, e.g. LOGOUT's BYE and OK
  done_ = true;
  deadline_.stop();
}

asio::awaitable<bool> Session::on_error(const ip::Event& ev) {
  const std::string tag = ev.tag.empty() ? "*" : ev.tag;
  if (ev.fatal) {
    co_await send("* BYE " + ev.text + "\r\n");
    co_return false;
  }
  if (ev.reply == ip::Event::Reply::TooBig) co_return co_await tagged(tag, "NO", "[TOOBIG] " + ev.text);
  if (ev.reply == ip::Event::Reply::BadTooBig) co_return co_await tagged(tag, "BAD", "[TOOBIG] " + ev.text);
  if (++errors_ > deps_.max_errors) {
    co_await send("* BYE too many errors\r\n");
    co_return false;
  }
  co_return co_await tagged(tag, "BAD", ev.text);
}

asio::awaitable<bool> Session::bad(const ip::Command& c, std::string_view text) {
  if (++errors_ > deps_.max_errors) {
    co_await send("* BYE too many errors\r\n");
    co_return false;
  }
  co_return co_await tagged(c.tag, "BAD", text);
}

std::string Session::capabilities() const {
  std::string caps =
      "IMAP4rev1 IMAP4rev2 LITERAL- SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE"
      " CONDSTORE QRESYNC ESEARCH SEARCHRES LIST-EXTENDED LIST-STATUS STATUS=SIZE BINARY";
  if (!io_->tls_active() && deps_.tls_available) caps += " STARTTLS";
  if (io_->tls_active()) caps += " AUTH=PLAIN";
  else caps += " LOGINDISABLED";
  return caps;
}

asio::awaitable<bool> Session::command(const ip::Command& c) {
  const auto& n = c.name;
  if (n == "CAPABILITY") {
    bool ok = co_await send("* CAPABILITY " + capabilities() + "\r\n");
    if (!ok) co_return false;
    co_return co_await tagged(c.tag, "OK", "CAPABILITY completed");
  }
  if (n == "NOOP") {
    bool ok = co_await sync();
    if (!ok) co_return false;
    co_return co_await tagged(c.tag, "OK", "NOOP completed");
  }
  if (n == "LOGOUT") {
    co_await send("* BYE logging out\r\n");
    co_await tagged(c.tag, "OK", "LOGOUT completed");
    co_return false;
  }
  if (n == "ID") {
    bool ok = co_await send("* ID (\"name\" \"moat\")\r\n");
    if (!ok) co_return false;
    co_return co_await tagged(c.tag, "OK", "ID completed");
  }
  if (user_.empty()) {
    if (n == "STARTTLS") co_return co_await starttls(c);
    if (n == "LOGIN") co_return co_await login_cmd(c);
    if (n == "AUTHENTICATE") co_return co_await authenticate(c);
    co_return co_await bad(c, "log in first");
  }
  if (n == "ENABLE") co_return co_await enable(c);
  if (n == "NAMESPACE") {
    bool ok = co_await send("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
    if (!ok) co_return false;
    co_return co_await tagged(c.tag, "OK", "NAMESPACE completed");
  }
  if (n == "SELECT" || n == "EXAMINE") co_return co_await select(c, n == "EXAMINE");
  if (n == "LIST" || n == "LSUB") co_return co_await list(c, n == "LSUB");
  if (n == "STATUS") co_return co_await status(c);
  if (n == "CREATE" || n == "DELETE" || n == "SUBSCRIBE" || n == "UNSUBSCRIBE" || n == "RENAME")
    co_return co_await manage(c);
  if (n == "APPEND") co_return co_await append(c);
  if (n == "IDLE") co_return co_await idle(c);
  if (box_.empty()) co_return co_await bad(c, "no mailbox selected");
  if (n == "CLOSE" || n == "UNSELECT") co_return co_await close(c, n == "CLOSE");
  if (n == "EXPUNGE") co_return co_await expunge(c, nullptr);
  const bool uid = n == "UID";
  std::string sub = n;
  std::size_t first = 0;
  if (uid) {
    if (c.args.empty() || c.args[0].is_list()) co_return co_await bad(c, "UID what?");
    sub = upper(c.args[0].text);
    first = 1;
  }
  if (sub == "FETCH") co_return co_await fetch(c, first, uid);
  if (sub == "STORE") co_return co_await store(c, first, uid);
  if (sub == "SEARCH") co_return co_await search(c, first, uid);
  if (sub == "COPY" || sub == "MOVE") co_return co_await copy(c, first, uid, sub == "MOVE");
  if (uid && sub == "EXPUNGE") {
    if (c.args.size() != 2 || c.args[1].is_list()) co_return co_await bad(c, "UID EXPUNGE needs a set");
    auto picked = pick(c.args[1].text, true);
    if (!picked) co_return co_await bad(c, "bad UID set");
    co_return co_await expunge(c, &*picked);
  }
  co_return co_await bad(c, "unknown command");
}

asio::awaitable<bool> Session::starttls(const ip::Command& c) {
  if (io_->tls_active() || !deps_.tls_available) co_return co_await bad(c, "STARTTLS not available");
  // Plaintext pipelined behind STARTTLS is dropped (CVE-2011-0411 class).
  parser_.discard_buffered();
  bool ok = co_await tagged(c.tag, "OK", "Begin TLS negotiation now");
  if (ok) ok = co_await flush();
  if (!ok) co_return false;
  auto st = co_await io_->start_tls();
  if (!st) co_return false;
  parser_.discard_buffered();
  co_return true;
}

asio::awaitable<bool> Session::login_cmd(const ip::Command& c) {
  if (!io_->tls_active()) co_return co_await tagged(c.tag, "NO", "[PRIVACYREQUIRED] TLS required (STARTTLS)");
  if (c.args.size() != 2 || !c.args[0].is_astring() || !c.args[1].is_astring())
    co_return co_await bad(c, "LOGIN user password");
  co_return co_await login(c, c.args[0].text, c.args[1].text);
}

asio::awaitable<bool> Session::authenticate(const ip::Command& c) {
  if (!io_->tls_active()) co_return co_await tagged(c.tag, "NO", "[PRIVACYREQUIRED] TLS required (STARTTLS)");
  if (c.args.empty() || c.args.size() > 2) co_return co_await bad(c, "AUTHENTICATE mechanism [initial-response]");
  if (upper(c.args[0].text) != "PLAIN") co_return co_await tagged(c.tag, "NO", "unsupported mechanism");
  std::string response;
  if (c.args.size() == 2) {
    response = c.args[1].text;  // SASL-IR
  } else {
    bool sent = co_await send("+ \r\n");
    if (!sent) co_return false;
    parser_.expect_raw_line();
    for (;;) {
      auto ev = parser_.next();
      if (ev.kind == ip::Event::Kind::NeedMore) {
        bool more = co_await fill();
        if (!more) co_return false;
        continue;
      }
      if (ev.kind != ip::Event::Kind::RawLine) co_return co_await bad(c, "bad SASL response");
      response = ev.text;
      break;
    }
    if (proto::sasl::is_cancel(response)) co_return co_await bad(c, "authentication cancelled");
  }
  auto creds = plain_login(response);
  if (!creds) co_return co_await auth_failed(c);
  co_return co_await login(c, std::move(creds->user), std::move(creds->password));
}

asio::awaitable<bool> Session::auth_failed(const ip::Command& c) {
  if (++auth_failures_ >= deps_.max_auth_failures) {
    co_await tagged(c.tag, "NO", "[AUTHENTICATIONFAILED] authentication failed");
    co_await send("* BYE too many authentication failures\r\n");
    co_return false;
  }
  co_return co_await tagged(c.tag, "NO", "[AUTHENTICATIONFAILED] authentication failed");
}

asio::awaitable<bool> Session::login(const ip::Command& c, std::string user, std::string password) {
  auto r = co_await deps_.directory->authenticate(user, password);
  if (!r) co_return co_await tagged(c.tag, "NO", "[UNAVAILABLE] user database unavailable");
  if (!*r) co_return co_await auth_failed(c);
  auto* st = deps_.store;
  co_await blocking([st, &user] { (void)st->create_user(user); });
  user_ = std::move(user);
  log::info("imap login user=" + user_);
  co_return co_await tagged(c.tag, "OK", "[CAPABILITY " + capabilities() + "] logged in");
}

}  // namespace moat::store::imap::detail

namespace moat::store::imap {

asio::awaitable<void> run_session(Deps deps, std::unique_ptr<gateway::SessionIo> io) {
  auto ex = co_await asio::this_coro::executor;
  detail::Session s(std::move(deps), std::move(io), ex);
  co_await s.run();
}

}  // namespace moat::store::imap

// See session.hpp. States (RFC 3501 §3):
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
#include "store/imap/session.hpp"

#include <algorithm>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cctype>
#include <ctime>
#include <map>
#include <optional>
#include <vector>

#include "common/blocking.hpp"
#include "common/log.hpp"
#include "common/proto/imap/mutf7.hpp"
#include "common/proto/imap/parser.hpp"
#include "common/proto/imap/seqset.hpp"
#include "common/proto/imap/structure.hpp"
#include "common/proto/mime/mime.hpp"
#include "common/proto/sasl.hpp"
#include "directory/directory.hpp"
#include "store/mailbox_store.hpp"

namespace moat::store::imap {

using namespace asio::experimental::awaitable_operators;
namespace ip = proto::imap;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kRead = 16 * 1024;

std::string upper(std::string s) {
  for (auto& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

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
  static const char* months[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
  int d = 0, y = 0, hh = 0, mm = 0, ss = 0, zone = 0;
  char mon[4] = {};
  char sign = '+';
  if (std::sscanf(s.c_str(), " %d-%3c-%d %d:%d:%d %c%4d", &d, mon, &y, &hh, &mm, &ss, &sign, &zone) != 8) return std::nullopt;
  int m = -1;
  for (int i = 0; i < 12; ++i)
    if (std::tolower(mon[0]) == months[i][0] && std::tolower(mon[1]) == months[i][1] && std::tolower(mon[2]) == months[i][2]) m = i;
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

// LIST pattern match: "*" matches anything, "%" anything but the delimiter.
bool match(std::string_view pat, std::string_view name) {
  if (pat.empty()) return name.empty();
  if (pat[0] == '*' || pat[0] == '%') {
    for (std::size_t i = 0; i <= name.size(); ++i) {
      if (match(pat.substr(1), name.substr(i))) return true;
      if (i < name.size() && pat[0] == '%' && name[i] == '/') return false;
    }
    return false;
  }
  if (name.empty()) return false;
  const bool same = pat[0] == name[0] ||
                    std::tolower(static_cast<unsigned char>(pat[0])) == std::tolower(static_cast<unsigned char>(name[0]));
  return same && match(pat.substr(1), name.substr(1));
}

struct Notifier {
  explicit Notifier(asio::any_io_executor ex) : timer(ex) { timer.expires_at(Clock::time_point::max()); }
  asio::steady_timer timer;
  bool pending = false;
};

class Session {
 public:
  Session(Deps deps, std::unique_ptr<gateway::SessionIo> io, asio::any_io_executor ex)
      : deps_(std::move(deps)), io_(std::move(io)), ex_(ex), timer_(ex), parser_(parser_options()) {}

  asio::awaitable<void> run() {
    co_await (dialogue() || watchdog());
    watch_.reset();
    io_->close();
  }

 private:
  ip::ParserOptions parser_options() const {
    ip::ParserOptions o;
    o.max_append = deps_.max_append;
    return o;
  }

  // ------------------------------------------------------------ I/O ---
  asio::awaitable<void> watchdog() {
    while (!done_) {
      boost::system::error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (done_) break;
      if (Clock::now() >= deadline_) {
        io_->cancel();
        deadline_ = Clock::time_point::max();
        timer_.expires_at(deadline_);
      }
    }
  }
  void set_deadline() {
    deadline_ = Clock::now() + deps_.command_timeout;
    timer_.expires_at(deadline_);
  }
  asio::awaitable<bool> send(std::string text) {
    auto st = co_await io_->write(text);
    co_return st.ok();
  }
  asio::awaitable<bool> fill() {
    char buf[kRead];
    auto got = co_await io_->read_some(buf, sizeof buf);
    if (!got) co_return false;
    parser_.feed(std::string_view(buf, *got));
    co_return true;
  }
  asio::awaitable<bool> tagged(const std::string& tag, std::string_view status, std::string_view text) {
    co_return co_await send(tag + " " + std::string(status) + " " + std::string(text) + "\r\n");
  }

  // Runs blocking store work on the pool.
  template <class F>
  asio::awaitable<std::invoke_result_t<F>> blocking(F f) {
    co_return co_await run_blocking(*deps_.blocking, std::move(f));
  }

  // -------------------------------------------------------- dialogue ---
  asio::awaitable<void> dialogue() {
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
    done_ = true;
    timer_.cancel();
  }

  asio::awaitable<bool> on_error(const ip::Event& ev) {
    const std::string tag = ev.tag.empty() ? "*" : ev.tag;
    if (ev.fatal) {
      co_await send("* BYE " + ev.text + "\r\n");
      co_return false;
    }
    if (ev.reply == ip::Event::Reply::TooBig) co_return co_await tagged(tag, "NO", "[TOOBIG] " + ev.text);
    if (++errors_ > deps_.max_errors) {
      co_await send("* BYE too many errors\r\n");
      co_return false;
    }
    co_return co_await tagged(tag, "BAD", ev.text);
  }

  asio::awaitable<bool> bad(const ip::Command& c, std::string_view text) {
    if (++errors_ > deps_.max_errors) {
      co_await send("* BYE too many errors\r\n");
      co_return false;
    }
    co_return co_await tagged(c.tag, "BAD", text);
  }

  std::string capabilities() const {
    std::string caps = "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE";
    if (!io_->tls_active() && deps_.tls_available) caps += " STARTTLS";
    if (io_->tls_active()) caps += " AUTH=PLAIN";
    else caps += " LOGINDISABLED";
    return caps;
  }

  asio::awaitable<bool> command(const ip::Command& c) {
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
    if (n == "ENABLE") {
      bool ok = co_await send("* ENABLED\r\n");
      if (!ok) co_return false;
      co_return co_await tagged(c.tag, "OK", "ENABLE completed");
    }
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
      if (c.args.size() != 2) co_return co_await bad(c, "UID EXPUNGE needs a set");
      auto set = ip::SeqSet::parse(c.args[1].text);
      if (!set) co_return co_await bad(c, "bad UID set");
      co_return co_await expunge(c, &*set);
    }
    co_return co_await bad(c, "unknown command");
  }

  // ---------------------------------------------------- authentication ---
  asio::awaitable<bool> starttls(const ip::Command& c) {
    if (io_->tls_active() || !deps_.tls_available) co_return co_await bad(c, "STARTTLS not available");
    // Plaintext pipelined behind STARTTLS is dropped (CVE-2011-0411 class).
    parser_.discard_buffered();
    bool ok = co_await tagged(c.tag, "OK", "Begin TLS negotiation now");
    if (!ok) co_return false;
    auto st = co_await io_->start_tls();
    if (!st) co_return false;
    parser_.discard_buffered();
    co_return true;
  }

  asio::awaitable<bool> login_cmd(const ip::Command& c) {
    if (!io_->tls_active()) co_return co_await tagged(c.tag, "NO", "[PRIVACYREQUIRED] TLS required (STARTTLS)");
    if (c.args.size() != 2 || !c.args[0].is_astring() || !c.args[1].is_astring())
      co_return co_await bad(c, "LOGIN user password");
    co_return co_await login(c, c.args[0].text, c.args[1].text);
  }

  asio::awaitable<bool> authenticate(const ip::Command& c) {
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
    auto creds = proto::sasl::decode_plain(response);
    if (!creds || (!creds->authzid.empty() && creds->authzid != creds->authcid)) co_return co_await auth_failed(c);
    co_return co_await login(c, creds->authcid, creds->password);
  }

  asio::awaitable<bool> auth_failed(const ip::Command& c) {
    if (++auth_failures_ >= deps_.max_auth_failures) {
      co_await tagged(c.tag, "NO", "[AUTHENTICATIONFAILED] authentication failed");
      co_await send("* BYE too many authentication failures\r\n");
      co_return false;
    }
    co_return co_await tagged(c.tag, "NO", "[AUTHENTICATIONFAILED] authentication failed");
  }

  asio::awaitable<bool> login(const ip::Command& c, std::string user, std::string password) {
    auto r = co_await deps_.directory->authenticate(user, password);
    if (!r) co_return co_await tagged(c.tag, "NO", "[UNAVAILABLE] user database unavailable");
    if (!*r) co_return co_await auth_failed(c);
    auto* st = deps_.store;
    co_await blocking([st, &user] { (void)st->create_user(user); });
    user_ = std::move(user);
    log::info("imap login user=" + user_);
    co_return co_await tagged(c.tag, "OK", "[CAPABILITY " + capabilities() + "] logged in");
  }

  // ------------------------------------------------------- mailboxes ---
  // Mailbox argument (modified UTF-7 from IMAP4rev1 clients) -> checked UTF-8.
  std::optional<std::string> mailbox_arg(const ip::Arg& a) {
    if (!a.is_astring()) return std::nullopt;
    auto utf8 = ip::mutf7_decode(a.text);
    if (!utf8) return std::nullopt;
    auto checked = ip::check_mailbox_name(*utf8);
    if (!checked) return std::nullopt;
    return *checked;
  }
  static std::string mailbox_out(const std::string& utf8) {
    auto m = ip::mutf7_encode(utf8);
    std::string out;
    ip::append_string(out, m ? *m : utf8);
    return out;
  }

  asio::awaitable<bool> no_from(const ip::Command& c, const Error& e) {
    if (e.code == Errc::NotFound) co_return co_await tagged(c.tag, "NO", "[NONEXISTENT] no such mailbox");
    if (e.code == Errc::Invalid) co_return co_await tagged(c.tag, "NO", "[CANNOT] " + e.detail);
    if (e.code == Errc::DiskFull) co_return co_await tagged(c.tag, "NO", "[OVERQUOTA] " + e.detail);
    co_return co_await tagged(c.tag, "NO", "[UNAVAILABLE] " + e.detail);
  }

  asio::awaitable<bool> select(const ip::Command& c, bool read_only) {
    if (c.args.size() != 1) co_return co_await bad(c, "SELECT mailbox");
    auto name = mailbox_arg(c.args[0]);
    if (!name) co_return co_await bad(c, "bad mailbox name");
    box_.clear();
    msgs_.clear();
    watch_.reset();
    auto* st = deps_.store;
    const std::string user = user_;
    const std::string box = *name;
    auto r = co_await blocking([st, &user, &box]() -> Result<std::pair<MailboxStatus, std::vector<MessageInfo>>> {
      auto s = st->status(user, box);
      if (!s) return s.error();
      auto m = st->messages(user, box);
      if (!m) return m.error();
      return std::make_pair(*s, std::move(*m));
    });
    if (!r) co_return co_await no_from(c, r.error());
    box_ = box;
    read_only_ = read_only;
    uidvalidity_ = r->first.uidvalidity;
    uidnext_ = r->first.uidnext;
    msgs_ = std::move(r->second);
    start_watch();
    std::string out = "* " + std::to_string(msgs_.size()) + " EXISTS\r\n* 0 RECENT\r\n";
    out += "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n";
    out += "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] flags\r\n";
    for (std::size_t i = 0; i < msgs_.size(); ++i)
      if (!(msgs_[i].flags & kSeen)) {
        out += "* OK [UNSEEN " + std::to_string(i + 1) + "] first unseen\r\n";
        break;
      }
    out += "* OK [UIDVALIDITY " + std::to_string(uidvalidity_) + "] UIDs valid\r\n";
    out += "* OK [UIDNEXT " + std::to_string(uidnext_) + "] predicted next UID\r\n";
    out += c.tag + " OK [" + std::string(read_only ? "READ-ONLY" : "READ-WRITE") + "] " + c.name + " completed\r\n";
    co_return co_await send(std::move(out));
  }

  void start_watch() {
    auto n = std::make_shared<Notifier>(ex_);
    notifier_ = n;
    asio::any_io_executor ex = ex_;
    watch_ = deps_.store->watch(user_, box_, [n, ex](const ChangeEvent&) {
      // Runs on the changing thread: hand over to the session's strand.
      asio::post(ex, [n] {
        n->pending = true;
        n->timer.cancel();
      });
    });
  }

  asio::awaitable<bool> list(const ip::Command& c, bool lsub) {
    if (c.args.size() != 2 || !c.args[0].is_astring() || !c.args[1].is_astring())
      co_return co_await bad(c, "LIST reference pattern");
    if (c.args[1].text.empty()) {
      bool ok = co_await send("* LIST (\\Noselect) \"/\" \"\"\r\n");
      if (!ok) co_return false;
      co_return co_await tagged(c.tag, "OK", "LIST completed");
    }
    auto pattern = ip::mutf7_decode(c.args[0].text + c.args[1].text);
    if (!pattern) co_return co_await bad(c, "bad pattern");
    auto* st = deps_.store;
    const std::string user = user_;
    auto boxes = co_await blocking([st, &user] { return st->list(user); });
    if (!boxes) co_return co_await no_from(c, boxes.error());
    std::string out;
    for (const auto& b : *boxes) {
      if (lsub && !b.subscribed) continue;
      if (!match(*pattern, b.name)) continue;
      const bool children = std::any_of(boxes->begin(), boxes->end(), [&](const MailboxInfo& o) {
        return o.name.size() > b.name.size() + 1 && o.name.compare(0, b.name.size(), b.name) == 0 && o.name[b.name.size()] == '/';
      });
      std::string attrs = children ? "\\HasChildren" : "\\HasNoChildren";
      const auto use = special_use_name(b.special_use);
      if (!use.empty()) attrs += " " + std::string(use);
      out += "* " + std::string(lsub ? "LSUB" : "LIST") + " (" + attrs + ") \"/\" " + mailbox_out(b.name) + "\r\n";
    }
    out += c.tag + " OK " + c.name + " completed\r\n";
    co_return co_await send(std::move(out));
  }

  asio::awaitable<bool> status(const ip::Command& c) {
    if (c.args.size() != 2 || !c.args[1].is_list()) co_return co_await bad(c, "STATUS mailbox (items)");
    auto name = mailbox_arg(c.args[0]);
    if (!name) co_return co_await bad(c, "bad mailbox name");
    auto* st = deps_.store;
    const std::string user = user_;
    const std::string box = *name;
    auto s = co_await blocking([st, &user, &box] { return st->status(user, box); });
    if (!s) co_return co_await no_from(c, s.error());
    std::string items;
    for (const auto& a : c.args[1].list) {
      const std::string item = upper(a.text);
      std::uint64_t v = 0;
      if (item == "MESSAGES") v = s->messages;
      else if (item == "UIDNEXT") v = s->uidnext;
      else if (item == "UIDVALIDITY") v = s->uidvalidity;
      else if (item == "UNSEEN") v = s->unseen;
      else if (item == "RECENT") v = 0;
      else if (item == "SIZE") v = s->size;
      else if (item == "DELETED") v = s->deleted;
      else co_return co_await bad(c, "unknown STATUS item");
      items += (items.empty() ? "" : " ") + item + " " + std::to_string(v);
    }
    bool ok = co_await send("* STATUS " + mailbox_out(box) + " (" + items + ")\r\n");
    if (!ok) co_return false;
    co_return co_await tagged(c.tag, "OK", "STATUS completed");
  }

  asio::awaitable<bool> manage(const ip::Command& c) {
    const bool rename = c.name == "RENAME";
    if (c.args.size() != (rename ? 2u : 1u)) co_return co_await bad(c, "wrong arguments");
    auto name = mailbox_arg(c.args[0]);
    std::optional<std::string> to;
    if (rename) to = mailbox_arg(c.args[1]);
    if (!name || (rename && !to)) co_return co_await bad(c, "bad mailbox name");
    auto* st = deps_.store;
    const std::string user = user_, box = *name, dest = to.value_or("");
    const std::string op = c.name;
    auto r = co_await blocking([st, &user, &box, &dest, &op]() -> Status {
      if (op == "CREATE") return st->create(user, box);
      if (op == "DELETE") return st->remove(user, box);
      if (op == "RENAME") return st->rename(user, box, dest);
      return st->set_subscribed(user, box, op == "SUBSCRIBE");
    });
    if (!r) co_return co_await no_from(c, r.error());
    co_return co_await tagged(c.tag, "OK", c.name + " completed");
  }

  asio::awaitable<bool> append(const ip::Command& c) {
    // APPEND mailbox [(flags)] [date-time] literal
    if (c.args.size() < 2 || c.args.size() > 4 || c.args.back().type != ip::Arg::Type::Literal)
      co_return co_await bad(c, "APPEND mailbox [(flags)] [date-time] {size}");
    auto name = mailbox_arg(c.args[0]);
    if (!name) co_return co_await bad(c, "bad mailbox name");
    AppendRequest req;
    for (std::size_t i = 1; i + 1 < c.args.size(); ++i) {
      const auto& a = c.args[i];
      if (a.is_list()) {
        for (const auto& f : a.list)
          if (!parse_flag(f.text, req.flags, req.keywords)) co_return co_await bad(c, "bad flag");
      } else {
        auto t = parse_date_time(a.text);
        if (!t) co_return co_await bad(c, "bad date-time");
        req.internaldate = *t;
      }
    }
    const std::string& content = c.args.back().text;
    req.content = content;
    const auto msg = mime::parse(content);
    req.envelope = ip::envelope(msg);
    req.bodystructure = ip::body_structure(msg, content, true);
    auto* st = deps_.store;
    const std::string user = user_, box = *name;
    auto r = co_await blocking([st, &user, &box, &req] { return st->append(user, box, req); });
    if (!r) {
      if (r.error().code == Errc::NotFound) co_return co_await tagged(c.tag, "NO", "[TRYCREATE] no such mailbox");
      co_return co_await no_from(c, r.error());
    }
    auto s = co_await blocking([st, &user, &box] { return st->status(user, box); });
    const std::uint32_t validity = s ? s->uidvalidity : 0;
    bool ok = co_await sync();
    if (!ok) co_return false;
    co_return co_await tagged(c.tag, "OK",
                              "[APPENDUID " + std::to_string(validity) + " " + std::to_string(*r) + "] APPEND completed");
  }

  // ------------------------------------------------------ selected ---
  // The client's view against the store: EXPUNGE, EXISTS, FETCH FLAGS.
  asio::awaitable<bool> sync() {
    if (box_.empty()) co_return true;
    auto* st = deps_.store;
    const std::string user = user_, box = box_;
    auto now = co_await blocking([st, &user, &box] { return st->messages(user, box); });
    if (!now) {
      co_await send("* BYE mailbox no longer available\r\n");
      co_return false;
    }
    std::map<std::uint32_t, const MessageInfo*> current;
    for (const auto& m : *now) current[m.uid] = &m;
    std::string out;
    for (std::size_t i = msgs_.size(); i-- > 0;)
      if (!current.count(msgs_[i].uid)) {
        out += "* " + std::to_string(i + 1) + " EXPUNGE\r\n";
        msgs_.erase(msgs_.begin() + std::ptrdiff_t(i));
      }
    for (std::size_t i = 0; i < msgs_.size(); ++i) {
      const MessageInfo* m = current[msgs_[i].uid];
      if (m->flags != msgs_[i].flags || m->keywords != msgs_[i].keywords) {
        msgs_[i] = *m;
        out += "* " + std::to_string(i + 1) + " FETCH (UID " + std::to_string(m->uid) + " FLAGS " + flags_text(*m) + ")\r\n";
      }
    }
    const std::uint32_t last = msgs_.empty() ? 0 : msgs_.back().uid;
    const std::size_t before = msgs_.size();
    for (const auto& m : *now)
      if (m.uid > last) msgs_.push_back(m);
    if (msgs_.size() != before) out += "* " + std::to_string(msgs_.size()) + " EXISTS\r\n";
    if (out.empty()) co_return true;
    co_return co_await send(std::move(out));
  }

  // Indices (0-based) of messages in a sequence or UID set, ascending.
  std::vector<std::size_t> resolve(const ip::SeqSet& set, bool uid) const {
    std::vector<std::size_t> out;
    if (msgs_.empty()) return out;
    const auto ranges = set.resolve(uid ? msgs_.back().uid : std::uint32_t(msgs_.size()));
    for (std::size_t i = 0; i < msgs_.size(); ++i)
      if (ip::contains(ranges, uid ? msgs_[i].uid : std::uint32_t(i + 1))) out.push_back(i);
    return out;
  }

  asio::awaitable<bool> idle(const ip::Command& c) {
    bool ok = co_await send("+ idling\r\n");
    if (!ok) co_return false;
    idling_ = true;
    parser_.expect_raw_line();
    // The reader waits for DONE while the pusher reports changes as the
    // store's watch() hook signals them (RFC 2177).
    auto results = co_await (idle_reader() && idle_pusher());
    idling_ = false;
    if (!std::get<0>(results)) co_return false;
    co_return co_await tagged(c.tag, "OK", "IDLE terminated");
  }

  asio::awaitable<bool> idle_reader() {
    bool result = false;
    for (;;) {
      auto ev = parser_.next();
      if (ev.kind == ip::Event::Kind::NeedMore) {
        set_deadline();
        bool more = co_await fill();
        if (!more) break;
        continue;
      }
      result = ev.kind == ip::Event::Kind::RawLine && upper(ev.text) == "DONE";
      break;
    }
    idling_ = false;
    if (auto n = notifier_.lock()) n->timer.cancel();
    co_return result;
  }

  asio::awaitable<bool> idle_pusher() {
    bool ok = co_await sync();
    while (ok && idling_) {
      auto n = notifier_.lock();
      if (!n) break;
      if (!n->pending) {
        boost::system::error_code ec;
        n->timer.expires_at(Clock::time_point::max());
        co_await n->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      if (!idling_) break;
      n->pending = false;
      ok = co_await sync();
    }
    co_return ok;
  }

  asio::awaitable<bool> close(const ip::Command& c, bool expunge_first) {
    if (expunge_first && !read_only_) {
      auto* st = deps_.store;
      const std::string user = user_, box = box_;
      co_await blocking([st, &user, &box] { (void)st->expunge(user, box); });
    }
    box_.clear();
    msgs_.clear();
    watch_.reset();
    co_return co_await tagged(c.tag, "OK", c.name + " completed");
  }

  asio::awaitable<bool> expunge(const ip::Command& c, const ip::SeqSet* uids) {
    if (read_only_) co_return co_await tagged(c.tag, "NO", "[READ-ONLY] mailbox is read-only");
    std::optional<UidRanges> ranges;
    if (uids) {
      UidRanges r;
      for (const auto& x : uids->resolve(msgs_.empty() ? 0 : msgs_.back().uid)) r.emplace_back(x.lo, x.hi);
      ranges = std::move(r);
    }
    auto* st = deps_.store;
    const std::string user = user_, box = box_;
    auto r = co_await blocking([st, &user, &box, &ranges] { return st->expunge(user, box, ranges); });
    if (!r) co_return co_await no_from(c, r.error());
    bool ok = co_await sync();
    if (!ok) co_return false;
    co_return co_await tagged(c.tag, "OK", "EXPUNGE completed");
  }

  asio::awaitable<bool> fetch(const ip::Command& c, std::size_t first, bool uid);
  asio::awaitable<bool> store(const ip::Command& c, std::size_t first, bool uid);
  asio::awaitable<bool> search(const ip::Command& c, std::size_t first, bool uid);
  asio::awaitable<bool> copy(const ip::Command& c, std::size_t first, bool uid, bool move);

  Deps deps_;
  std::unique_ptr<gateway::SessionIo> io_;
  asio::any_io_executor ex_;
  asio::steady_timer timer_;
  Clock::time_point deadline_ = Clock::time_point::max();
  ip::Parser parser_;
  bool done_ = false;
  bool idling_ = false;
  unsigned errors_ = 0;
  unsigned auth_failures_ = 0;
  std::string user_;
  std::string box_;
  bool read_only_ = false;
  std::uint32_t uidvalidity_ = 0;
  std::uint32_t uidnext_ = 0;
  std::vector<MessageInfo> msgs_;
  std::unique_ptr<Subscription> watch_;
  std::weak_ptr<Notifier> notifier_;
};

// ---------------------------------------------------------------- FETCH ---

struct FetchItem {
  enum class Kind { Uid, Flags, InternalDate, Size, Envelope, BodyStructure, Body, Section } kind;
  std::string label;        // as echoed in the response ("BODY[HEADER]<0>")
  std::string section;      // upper-cased section text: "", "HEADER", "TEXT", "HEADER.FIELDS (A B)", "1"
  bool peek = false;
  std::optional<std::pair<std::uint64_t, std::uint64_t>> partial;
};

bool parse_item(const std::string& raw, std::vector<FetchItem>& out) {
  const std::string u = upper(raw);
  using K = FetchItem::Kind;
  if (u == "UID") out.push_back({K::Uid, "UID", "", false, {}});
  else if (u == "FLAGS") out.push_back({K::Flags, "FLAGS", "", false, {}});
  else if (u == "INTERNALDATE") out.push_back({K::InternalDate, "INTERNALDATE", "", false, {}});
  else if (u == "RFC822.SIZE") out.push_back({K::Size, "RFC822.SIZE", "", false, {}});
  else if (u == "ENVELOPE") out.push_back({K::Envelope, "ENVELOPE", "", false, {}});
  else if (u == "BODYSTRUCTURE") out.push_back({K::BodyStructure, "BODYSTRUCTURE", "", false, {}});
  else if (u == "BODY") out.push_back({K::Body, "BODY", "", false, {}});
  else if (u == "RFC822") out.push_back({K::Section, "RFC822", "", false, {}});
  else if (u == "RFC822.HEADER") out.push_back({K::Section, "RFC822.HEADER", "HEADER", true, {}});
  else if (u == "RFC822.TEXT") out.push_back({K::Section, "RFC822.TEXT", "TEXT", false, {}});
  else if (u == "ALL" || u == "FAST" || u == "FULL") {
    parse_item("FLAGS", out);
    parse_item("INTERNALDATE", out);
    parse_item("RFC822.SIZE", out);
    if (u != "FAST") parse_item("ENVELOPE", out);
    if (u == "FULL") parse_item("BODY", out);
  } else if (u.starts_with("BODY[") || u.starts_with("BODY.PEEK[")) {
    const bool peek = u.starts_with("BODY.PEEK[");
    const auto open = u.find('['), close = u.rfind(']');
    if (close == std::string::npos || close < open) return false;
    FetchItem it{K::Section, "", u.substr(open + 1, close - open - 1), peek, {}};
    std::string rest = u.substr(close + 1);
    it.label = "BODY[" + raw.substr(open + 1, close - open - 1) + "]";
    if (!rest.empty()) {
      std::uint64_t a = 0, b = 0;
      if (std::sscanf(rest.c_str(), "<%lu.%lu>", &a, &b) != 2 || b == 0) return false;
      it.partial = std::make_pair(a, b);
      it.label += "<" + std::to_string(a) + ">";
    }
    out.push_back(std::move(it));
  } else {
    return false;
  }
  return true;
}

// The bytes of a section of `msg` (RFC 3501 §6.4.5): "", HEADER, TEXT,
// HEADER.FIELDS[.NOT] (names), MIME, and part numbers "1.2" with those.
std::optional<std::string> section_bytes(const std::string& msg, const std::string& section) {
  auto parsed = mime::parse(msg);
  std::size_t part = 0;
  std::string rest = section;
  // part number path
  while (!rest.empty() && std::isdigit(static_cast<unsigned char>(rest[0]))) {
    std::size_t n = 0, i = 0;
    while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) n = n * 10 + std::size_t(rest[i++] - '0');
    const auto* p = &parsed.parts[part];
    if (p->is_message() && !p->children.empty()) p = &parsed.parts[p->children[0]];
    if (p->is_multipart()) {
      if (n == 0 || n > p->children.size()) return std::nullopt;
      part = p->children[n - 1];
    } else if (n != 1) {
      return std::nullopt;
    }
    rest = i < rest.size() && rest[i] == '.' ? rest.substr(i + 1) : rest.substr(i);
  }
  const auto& p = parsed.parts[part];
  if (rest.empty()) {
    if (section.empty()) return msg;
    return msg.substr(p.body_begin, p.body_end - p.body_begin);
  }
  const mime::Part* hp = &p;
  if (part != 0 && p.is_message() && !p.children.empty()) hp = &parsed.parts[p.children[0]];
  if (rest == "MIME") return msg.substr(p.header_begin, p.body_begin - p.header_begin);
  if (rest == "TEXT") return msg.substr(hp->body_begin, hp->body_end - hp->body_begin);
  if (rest == "HEADER") return msg.substr(hp->header_begin, hp->body_begin - hp->header_begin);
  if (rest.starts_with("HEADER.FIELDS")) {
    const bool negate = rest.starts_with("HEADER.FIELDS.NOT");
    const auto open = rest.find('('), close = rest.find(')');
    if (open == std::string::npos || close == std::string::npos) return std::nullopt;
    std::vector<std::string> names;
    std::string names_text = rest.substr(open + 1, close - open - 1);
    for (std::size_t i = 0; i < names_text.size();) {
      auto sp = names_text.find(' ', i);
      if (sp == std::string::npos) sp = names_text.size();
      std::string nm = names_text.substr(i, sp - i);
      if (nm.size() >= 2 && nm.front() == '"') nm = nm.substr(1, nm.size() - 2);
      if (!nm.empty()) names.push_back(nm);
      i = sp + 1;
    }
    std::string out;
    for (const auto& f : hp->fields) {
      const bool listed = std::find(names.begin(), names.end(), upper(f.name)) != names.end();
      if (listed != negate) out += msg.substr(f.begin, f.end - f.begin);
    }
    return out + "\r\n";
  }
  return std::nullopt;
}

asio::awaitable<bool> Session::fetch(const ip::Command& c, std::size_t first, bool uid) {
  if (c.args.size() != first + 2) co_return co_await bad(c, "FETCH set items");
  auto set = ip::SeqSet::parse(c.args[first].text);
  if (!set) co_return co_await bad(c, "bad sequence set");
  std::vector<FetchItem> items;
  const auto& spec = c.args[first + 1];
  bool ok_items = true;
  if (spec.is_list()) {
    for (const auto& a : spec.list) ok_items = ok_items && !a.is_list() && parse_item(a.text, items);
  } else {
    ok_items = parse_item(spec.text, items);
  }
  if (!ok_items || items.empty()) co_return co_await bad(c, "bad FETCH items");
  if (uid && std::none_of(items.begin(), items.end(), [](const FetchItem& i) { return i.kind == FetchItem::Kind::Uid; }))
    items.insert(items.begin(), FetchItem{FetchItem::Kind::Uid, "UID", "", false, {}});
  const bool needs_body = std::any_of(items.begin(), items.end(), [](const FetchItem& i) {
    return i.kind == FetchItem::Kind::Section || i.kind == FetchItem::Kind::Body ||
           i.kind == FetchItem::Kind::Envelope || i.kind == FetchItem::Kind::BodyStructure;
  });
  const bool sets_seen = !read_only_ && std::any_of(items.begin(), items.end(), [](const FetchItem& i) {
    return i.kind == FetchItem::Kind::Section && !i.peek;
  });
  auto* st = deps_.store;
  const std::string user = user_, box = box_;
  for (std::size_t idx : resolve(*set, uid)) {
    MessageInfo& m = msgs_[idx];
    std::string content;
    if (needs_body) {
      const std::uint32_t u = m.uid;
      auto r = co_await blocking([st, &user, &box, u] { return st->fetch(user, box, u); });
      if (!r) continue;  // expunged meanwhile: reported by the next sync
      content = std::move(*r);
    }
    if (sets_seen && !(m.flags & kSeen)) {
      FlagUpdate add;
      add.mode = FlagUpdate::Mode::Add;
      add.flags = kSeen;
      const UidRanges one{{m.uid, m.uid}};
      auto r = co_await blocking([st, &user, &box, &one, &add] { return st->store_flags(user, box, one, add); });
      if (r) m.flags |= kSeen;
      if (std::none_of(items.begin(), items.end(), [](const FetchItem& i) { return i.kind == FetchItem::Kind::Flags; }))
        items.push_back(FetchItem{FetchItem::Kind::Flags, "FLAGS", "", false, {}});
    }
    std::string out = "* " + std::to_string(idx + 1) + " FETCH (";
    bool firstitem = true;
    std::optional<mime::Message> parsed;
    for (const auto& it : items) {
      if (!firstitem) out += ' ';
      firstitem = false;
      out += it.label + " ";
      switch (it.kind) {
        case FetchItem::Kind::Uid: out += std::to_string(m.uid); break;
        case FetchItem::Kind::Flags: out += flags_text(m); break;
        case FetchItem::Kind::InternalDate: out += imap_date(m.internaldate); break;
        case FetchItem::Kind::Size: out += std::to_string(m.size); break;
        case FetchItem::Kind::Envelope:
        case FetchItem::Kind::BodyStructure:
        case FetchItem::Kind::Body: {
          if (it.kind == FetchItem::Kind::Envelope && !m.envelope.empty()) {
            out += m.envelope;
            break;
          }
          if (it.kind == FetchItem::Kind::BodyStructure && !m.bodystructure.empty()) {
            out += m.bodystructure;
            break;
          }
          if (!parsed) parsed = mime::parse(content);
          if (it.kind == FetchItem::Kind::Envelope) out += ip::envelope(*parsed);
          else out += ip::body_structure(*parsed, content, it.kind == FetchItem::Kind::BodyStructure);
          break;
        }
        case FetchItem::Kind::Section: {
          auto bytes = section_bytes(content, it.section);
          std::string data = bytes ? std::move(*bytes) : std::string();
          if (it.partial) {
            const auto [off, len] = *it.partial;
            data = off >= data.size() ? std::string() : data.substr(std::size_t(off), std::size_t(len));
          }
          out += "{" + std::to_string(data.size()) + "}\r\n" + data;
          break;
        }
      }
    }
    out += ")\r\n";
    bool ok = co_await send(std::move(out));
    if (!ok) co_return false;
  }
  bool ok = co_await sync();
  if (!ok) co_return false;
  const std::string done = c.name == "UID" ? "UID FETCH completed" : "FETCH completed";
  co_return co_await tagged(c.tag, "OK", done);
}

// ---------------------------------------------------------------- STORE ---

asio::awaitable<bool> Session::store(const ip::Command& c, std::size_t first, bool uid) {
  if (c.args.size() != first + 3) co_return co_await bad(c, "STORE set item flags");
  if (read_only_) co_return co_await tagged(c.tag, "NO", "[READ-ONLY] mailbox is read-only");
  auto set = ip::SeqSet::parse(c.args[first].text);
  if (!set) co_return co_await bad(c, "bad sequence set");
  std::string item = upper(c.args[first + 1].text);
  const bool silent = item.ends_with(".SILENT");
  if (silent) item.resize(item.size() - 7);
  FlagUpdate up;
  if (item == "FLAGS") up.mode = FlagUpdate::Mode::Replace;
  else if (item == "+FLAGS") up.mode = FlagUpdate::Mode::Add;
  else if (item == "-FLAGS") up.mode = FlagUpdate::Mode::Remove;
  else co_return co_await bad(c, "bad STORE item");
  const auto& fl = c.args[first + 2];
  std::vector<ip::Arg> flags = fl.is_list() ? fl.list : std::vector<ip::Arg>{fl};
  for (const auto& f : flags)
    if (f.is_list() || !parse_flag(f.text, up.flags, up.keywords)) co_return co_await bad(c, "bad flag");
  UidRanges uids;
  for (std::size_t i : resolve(*set, uid)) uids.emplace_back(msgs_[i].uid, msgs_[i].uid);
  auto* st = deps_.store;
  const std::string user = user_, box = box_;
  if (!uids.empty()) {
    auto r = co_await blocking([st, &user, &box, &uids, &up] { return st->store_flags(user, box, uids, up); });
    if (!r) co_return co_await no_from(c, r.error());
    if (silent) {
      // Our own change is not echoed; other sessions learn of it in sync().
      for (const auto& ch : r->changed)
        for (auto& m : msgs_)
          if (m.uid == ch.uid) m = ch;
    }
  }
  bool ok = co_await sync();
  if (!ok) co_return false;
  co_return co_await tagged(c.tag, "OK", "STORE completed");
}

// --------------------------------------------------------------- SEARCH ---

asio::awaitable<bool> Session::search(const ip::Command& c, std::size_t first, bool uid) {
  // A conjunction of simple keys; enough for what clients send most.
  std::vector<bool> hit(msgs_.size(), true);
  std::size_t i = first;
  if (i + 1 < c.args.size() && upper(c.args[i].text) == "CHARSET") i += 2;
  for (; i < c.args.size(); ++i) {
    const auto& a = c.args[i];
    const std::string k = a.is_list() ? std::string("(") : upper(a.text);
    std::function<bool(const MessageInfo&, std::size_t)> pred;
    if (k == "ALL") pred = [](const MessageInfo&, std::size_t) { return true; };
    else if (k == "SEEN") pred = [](const MessageInfo& m, std::size_t) { return (m.flags & kSeen) != 0; };
    else if (k == "UNSEEN") pred = [](const MessageInfo& m, std::size_t) { return (m.flags & kSeen) == 0; };
    else if (k == "DELETED") pred = [](const MessageInfo& m, std::size_t) { return (m.flags & kDeleted) != 0; };
    else if (k == "UNDELETED") pred = [](const MessageInfo& m, std::size_t) { return (m.flags & kDeleted) == 0; };
    else if (k == "FLAGGED") pred = [](const MessageInfo& m, std::size_t) { return (m.flags & kFlagged) != 0; };
    else if (k == "UNFLAGGED") pred = [](const MessageInfo& m, std::size_t) { return (m.flags & kFlagged) == 0; };
    else if (k == "ANSWERED") pred = [](const MessageInfo& m, std::size_t) { return (m.flags & kAnswered) != 0; };
    else if (k == "UNANSWERED") pred = [](const MessageInfo& m, std::size_t) { return (m.flags & kAnswered) == 0; };
    else if ((k == "LARGER" || k == "SMALLER") && i + 1 < c.args.size()) {
      const std::uint64_t n = std::strtoull(c.args[++i].text.c_str(), nullptr, 10);
      const bool larger = k == "LARGER";
      pred = [n, larger](const MessageInfo& m, std::size_t) { return larger ? m.size > n : m.size < n; };
    } else if (k == "UID" && i + 1 < c.args.size()) {
      auto s = ip::SeqSet::parse(c.args[++i].text);
      if (!s) co_return co_await bad(c, "bad UID set");
      const auto r = s->resolve(msgs_.empty() ? 0 : msgs_.back().uid);
      pred = [r](const MessageInfo& m, std::size_t) { return ip::contains(r, m.uid); };
    } else if (auto s = ip::SeqSet::parse(k); s) {
      const auto r = s->resolve(std::uint32_t(msgs_.size()));
      pred = [r](const MessageInfo&, std::size_t idx) { return ip::contains(r, std::uint32_t(idx + 1)); };
    } else {
      co_return co_await bad(c, "unsupported SEARCH key");
    }
    for (std::size_t m = 0; m < msgs_.size(); ++m) hit[m] = hit[m] && pred(msgs_[m], m);
  }
  std::string out = "* SEARCH";
  for (std::size_t m = 0; m < msgs_.size(); ++m)
    if (hit[m]) out += " " + std::to_string(uid ? msgs_[m].uid : m + 1);
  bool ok = co_await send(out + "\r\n");
  if (!ok) co_return false;
  co_return co_await tagged(c.tag, "OK", "SEARCH completed");
}

// ----------------------------------------------------------- COPY/MOVE ---

asio::awaitable<bool> Session::copy(const ip::Command& c, std::size_t first, bool uid, bool move) {
  if (c.args.size() != first + 2) co_return co_await bad(c, "COPY set mailbox");
  auto set = ip::SeqSet::parse(c.args[first].text);
  if (!set) co_return co_await bad(c, "bad sequence set");
  auto dest = mailbox_arg(c.args[first + 1]);
  if (!dest) co_return co_await bad(c, "bad mailbox name");
  if (move && read_only_) co_return co_await tagged(c.tag, "NO", "[READ-ONLY] mailbox is read-only");
  UidRanges uids;
  for (std::size_t i : resolve(*set, uid)) uids.emplace_back(msgs_[i].uid, msgs_[i].uid);
  if (uids.empty()) co_return co_await tagged(c.tag, "OK", "nothing to do");
  auto* st = deps_.store;
  const std::string user = user_, box = box_, to = *dest;
  auto r = co_await blocking([st, &user, &box, &uids, &to, move] {
    return move ? st->move(user, box, uids, to) : st->copy(user, box, uids, to);
  });
  if (!r) {
    if (r.error().code == Errc::NotFound) co_return co_await tagged(c.tag, "NO", "[TRYCREATE] no such mailbox");
    co_return co_await no_from(c, r.error());
  }
  std::vector<std::uint32_t> src, dst;
  for (const auto& [a, b] : r->uids) src.push_back(a), dst.push_back(b);
  const std::string code = "[COPYUID " + std::to_string(r->dest_uidvalidity) + " " + ip::format_compact(src) + " " +
                           ip::format_compact(dst) + "]";
  if (move) {
    bool sent = co_await send("* OK " + code + " moved\r\n");
    if (!sent) co_return false;
  }
  bool ok = co_await sync();
  if (!ok) co_return false;
  const std::string done = move ? std::string("MOVE completed") : code + " COPY completed";
  co_return co_await tagged(c.tag, "OK", done);
}

}  // namespace

asio::awaitable<void> run_session(Deps deps, std::unique_ptr<gateway::SessionIo> io) {
  auto ex = co_await asio::this_coro::executor;
  Session s(std::move(deps), std::move(io), ex);
  co_await s.run();
}

}  // namespace moat::store::imap

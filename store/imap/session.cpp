// See session.hpp. SEARCH, LIST and the CONDSTORE/QRESYNC argument syntax
// live in search.*, list.*, condstore.*; this file is the dialogue.
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
#include "common/text.hpp"
#include "directory/directory.hpp"
#include "gateway/deadline.hpp"
#include "store/imap/condstore.hpp"
#include "store/imap/list.hpp"
#include "store/imap/search.hpp"
#include "store/mailbox_store.hpp"

namespace moat::store::imap {

using namespace asio::experimental::awaitable_operators;
namespace ip = proto::imap;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kRead = 16 * 1024;
constexpr std::size_t kReadIdle = 1024;  // between commands: most command lines fit

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

struct FetchItem {
  enum class Kind { Uid, Flags, InternalDate, Size, Envelope, BodyStructure, Body, Section, ModSeq } kind;
  std::string label;        // as echoed in the response ("BODY[HEADER]<0>")
  std::string section;      // upper-cased section text: "", "HEADER", "TEXT", "HEADER.FIELDS (A B)", "1"
  bool peek = false;
  std::optional<std::pair<std::uint64_t, std::uint64_t>> partial;
};
// One window of a FETCH: picked[begin, end) and the UIDs whose bytes it
// needs; want[i] belongs to picked[begin + slot[i]].
struct FetchWindow {
  std::size_t begin = 0, end = 0;
  std::vector<std::uint32_t> want;
  std::vector<std::size_t> slot;
};
// Per message of a window: its bytes, an error (expunged meanwhile), or
// nothing when no item needs them.
using FetchBodies = std::vector<std::optional<Result<std::string>>>;
struct FetchLoad {
  FetchBodies bodies;
  std::optional<MailboxStatus> version;
};
// What a FETCH command carries from window to window.
struct FetchRun {
  std::vector<FetchItem> items;
  const std::vector<std::size_t>& picked;
  bool sets_seen = false;
  std::string out;
};

struct Notifier {
  explicit Notifier(asio::any_io_executor ex) : timer(ex) { timer.expires_at(Clock::time_point::max()); }
  asio::steady_timer timer;
  bool pending = false;
};

class Session {
 public:
  Session(Deps deps, std::unique_ptr<gateway::SessionIo> io, asio::any_io_executor ex)
      : deps_(std::move(deps)),
        io_(std::move(io)),
        ex_(ex),
        deadline_(ex, io_.get()),
        parser_(parser_options()) {}

  asio::awaitable<void> run() {
    co_await (dialogue() || deadline_.watch());
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
  void set_deadline() { deadline_.after(deps_.command_timeout); }
  asio::awaitable<bool> send(std::string text) {
    if (!pending_.empty()) {  // FETCH responses held back to share this write
      pending_ += text;
      text = std::move(pending_);
      pending_.clear();
      pending_.shrink_to_fit();
    }
    auto st = co_await io_->write(text);
    co_return st.ok();
  }
  asio::awaitable<bool> fill() {
    // On the heap and sized by state: an idle session waits here for its
    // next command, and a 16 KiB array in this frame was a sixth of what an
    // idle logged-in connection cost (bench/imap). Literals get big reads.
    const std::size_t n = parser_.between_commands() ? kReadIdle : kRead;
    std::unique_ptr<char[]> buf(new char[n]);
    auto got = co_await io_->read_some(buf.get(), n);
    if (!got) co_return false;
    parser_.feed(std::string_view(buf.get(), *got));
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
    deadline_.stop();
  }

  asio::awaitable<bool> on_error(const ip::Event& ev) {
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

  asio::awaitable<bool> bad(const ip::Command& c, std::string_view text) {
    if (++errors_ > deps_.max_errors) {
      co_await send("* BYE too many errors\r\n");
      co_return false;
    }
    co_return co_await tagged(c.tag, "BAD", text);
  }

  std::string capabilities() const {
    std::string caps =
        "IMAP4rev1 IMAP4rev2 LITERAL- SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE"
        " CONDSTORE QRESYNC ESEARCH SEARCHRES LIST-EXTENDED LIST-STATUS STATUS=SIZE";
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
    auto creds = plain_login(response);
    if (!creds) co_return co_await auth_failed(c);
    co_return co_await login(c, std::move(creds->user), std::move(creds->password));
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
  // Mailbox argument -> checked UTF-8: modified UTF-7 from IMAP4rev1
  // clients, UTF-8 as it is once IMAP4rev2 is enabled (RFC 9051 §5.1).
  std::optional<std::string> mailbox_arg(const ip::Arg& a) const {
    if (!a.is_astring()) return std::nullopt;
    auto utf8 = rev2_ ? Result<std::string>(a.text) : ip::mutf7_decode(a.text);
    if (!utf8 || !ip::valid_utf8(*utf8)) return std::nullopt;
    auto checked = ip::check_mailbox_name(*utf8);
    if (!checked) return std::nullopt;
    return *checked;
  }
  std::string mailbox_out(const std::string& utf8) const {
    auto m = rev2_ ? Result<std::string>(utf8) : ip::mutf7_encode(utf8);
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

  // RFC 5161 ENABLE: CONDSTORE, QRESYNC (which implies CONDSTORE) and
  // IMAP4rev2; anything else is ignored. ENABLED names what this command
  // turned on.
  asio::awaitable<bool> enable(const ip::Command& c) {
    if (c.args.empty()) co_return co_await bad(c, "ENABLE capability...");
    std::string enabled;
    for (const auto& a : c.args) {
      const std::string u = a.is_list() ? std::string() : upper(a.text);
      bool* flag = u == "CONDSTORE" ? &condstore_ : u == "QRESYNC" ? &qresync_ : u == "IMAP4REV2" ? &rev2_ : nullptr;
      if (!flag || *flag) continue;
      *flag = true;
      enabled += " " + u;
    }
    if (qresync_ && !condstore_) condstore_ = true;
    bool ok = co_await send("* ENABLED" + enabled + "\r\n");
    if (!ok) co_return false;
    co_return co_await tagged(c.tag, "OK", "ENABLE completed");
  }

  struct Opened {
    MailboxStatus status;
    std::vector<MessageInfo> messages;
    std::optional<Changes> changes;  // QRESYNC with a matching UIDVALIDITY
  };

  asio::awaitable<bool> select(const ip::Command& c, bool read_only) {
    if (c.args.empty() || c.args.size() > 2) co_return co_await bad(c, "SELECT mailbox [(parameters)]");
    auto name = mailbox_arg(c.args[0]);
    if (!name) co_return co_await bad(c, "bad mailbox name");
    SelectParams params;
    if (c.args.size() == 2) {
      auto p = parse_select_params(c.args[1]);
      if (!p) co_return co_await bad(c, p.error().detail);
      // RFC 7162 §3.2.5: QRESYNC parameters only after ENABLE QRESYNC
      if (p->qresync && !qresync_) co_return co_await bad(c, "ENABLE QRESYNC first");
      params = std::move(*p);
    }
    if (params.condstore) condstore_ = true;
    std::string out;
    // RFC 7162 §3.2.11 / RFC 9051 §6.3.2: the old mailbox is closed first
    if (!box_.empty()) out += "* OK [CLOSED] previous mailbox closed\r\n";
    box_.clear();
    msgs_.clear();
    saved_.clear();
    watch_.reset();
    auto* st = deps_.store;
    const std::string user = user_;
    const std::string box = *name;
    const std::optional<QresyncParams> q = params.qresync;
    auto r = co_await blocking([st, &user, &box, &q]() -> Result<Opened> {
      Opened o;
      auto s = st->status(user, box);
      if (!s) return s.error();
      o.status = *s;
      auto m = st->messages(user, box);
      if (!m) return m.error();
      o.messages = std::move(*m);
      if (q && q->uidvalidity == o.status.uidvalidity) {
        auto ch = st->changes_since(user, box, q->modseq);
        if (!ch) return ch.error();
        o.changes = std::move(*ch);
      }
      return o;
    });
    if (!r) {
      if (!out.empty()) co_await send(out);
      co_return co_await no_from(c, r.error());
    }
    box_ = box;
    read_only_ = read_only;
    uidvalidity_ = r->status.uidvalidity;
    uidnext_ = r->status.uidnext;
    msgs_ = std::move(r->messages);
    start_watch();
    out += "* " + std::to_string(msgs_.size()) + " EXISTS\r\n";
    if (!rev2_) out += "* 0 RECENT\r\n";  // RFC 9051 appendix E: no \Recent in IMAP4rev2
    out += "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n";
    out += "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] flags\r\n";
    for (std::size_t i = 0; i < msgs_.size() && !rev2_; ++i)
      if (!(msgs_[i].flags & kSeen)) {
        out += "* OK [UNSEEN " + std::to_string(i + 1) + "] first unseen\r\n";
        break;
      }
    out += "* OK [UIDVALIDITY " + std::to_string(uidvalidity_) + "] UIDs valid\r\n";
    out += "* OK [UIDNEXT " + std::to_string(uidnext_) + "] predicted next UID\r\n";
    // Every mailbox keeps mod-sequences, so HIGHESTMODSEQ always and never
    // NOMODSEQ (RFC 7162 §3.1.2.1).
    out += "* OK [HIGHESTMODSEQ " + std::to_string(r->status.highest_modseq) + "] highest\r\n";
    if (r->changes) out += qresync_report(*r->changes, *params.qresync);
    out += c.tag + " OK [" + std::string(read_only ? "READ-ONLY" : "READ-WRITE") + "] " + c.name + " completed\r\n";
    co_return co_await send(std::move(out));
  }

  // SELECT (QRESYNC ...) with the client's UIDVALIDITY: VANISHED (EARLIER)
  // for expunged known UIDs, then FETCH for known messages changed since
  // its modseq (RFC 7162 §3.2.5.2). New messages it learns from EXISTS.
  std::string qresync_report(const Changes& ch, const QresyncParams& q) const {
    const std::uint32_t star = msgs_.empty() ? 0 : msgs_.back().uid;
    const auto known = q.known_uids ? q.known_uids->resolve(star) : std::vector<ip::SeqRange>{{1, UINT32_MAX}};
    std::vector<std::uint32_t> gone;
    for (auto u : ch.vanished)
      if (ip::contains(known, u)) gone.push_back(u);
    std::string out = vanished_response(gone, true);
    std::map<std::uint32_t, std::size_t> seq;
    for (std::size_t i = 0; i < msgs_.size(); ++i) seq[msgs_[i].uid] = i + 1;
    for (const auto& m : ch.changed) {
      auto it = seq.find(m.uid);
      if (it == seq.end() || !ip::contains(known, m.uid)) continue;
      const MessageInfo& cur = msgs_[it->second - 1];
      out += "* " + std::to_string(it->second) + " FETCH (UID " + std::to_string(cur.uid) + " FLAGS " + flags_text(cur) +
             " MODSEQ (" + std::to_string(cur.modseq) + "))\r\n";
    }
    return out;
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

  // LIST, LIST-EXTENDED (RFC 5258) with RETURN (STATUS ...) (RFC 5819), LSUB.
  asio::awaitable<bool> list(const ip::Command& c, bool lsub) {
    Result<ListRequest> req = lsub ? Result<ListRequest>(ListRequest{}) : parse_list(c.args);
    if (lsub) {
      if (c.args.size() != 2 || c.args[0].is_list() || c.args[1].is_list()) co_return co_await bad(c, "LSUB reference pattern");
      req->reference = c.args[0].text;
      req->patterns.push_back(c.args[1].text);
    }
    if (!req) co_return co_await bad(c, req.error().detail);
    for (const auto& item : req->status_items)
      if (!status_value(MailboxStatus{}, item)) co_return co_await bad(c, "unknown STATUS item");
    if (!req->extended && req->patterns.size() == 1 && req->patterns[0].empty()) {
      // the hierarchy delimiter and root (RFC 9051 §6.3.9)
      co_return co_await send("* " + std::string(lsub ? "LSUB" : "LIST") + " (\\Noselect) \"/\" \"\"\r\n" + c.tag + " OK " +
                              c.name + " completed\r\n");
    }
    std::vector<std::string> patterns;
    for (const auto& p : req->patterns) {
      auto decoded = rev2_ ? Result<std::string>(req->reference + p) : ip::mutf7_decode(req->reference + p);
      if (!decoded) co_return co_await bad(c, "bad pattern");
      patterns.push_back(std::move(*decoded));
    }
    auto* st = deps_.store;
    const std::string user = user_;
    auto boxes = co_await blocking([st, &user] { return st->list(user); });
    if (!boxes) co_return co_await no_from(c, boxes.error());
    const auto entries = list_mailboxes(*req, patterns, *boxes, lsub, rev2_);
    std::map<std::string, MailboxStatus> statuses;
    if (req->ret_status) {
      auto r = co_await blocking([st, &user, &entries] {
        std::map<std::string, MailboxStatus> m;
        for (const auto& e : entries)
          if (e.selectable)
            if (auto s = st->status(user, e.name)) m[e.name] = *s;
        return m;
      });
      statuses = std::move(r);
    }
    std::string out;
    for (const auto& e : entries) {
      out += "* " + std::string(lsub ? "LSUB" : "LIST") + " (" + e.attributes + ") \"/\" " + mailbox_out(e.name) + e.extra + "\r\n";
      if (auto it = statuses.find(e.name); it != statuses.end())
        out += "* STATUS " + mailbox_out(e.name) + " (" + status_items(it->second, req->status_items) + ")\r\n";
    }
    out += c.tag + " OK " + c.name + " completed\r\n";
    co_return co_await send(std::move(out));
  }

  // One STATUS item (RFC 9051 §6.3.11, RFC 8438 SIZE, RFC 7162 HIGHESTMODSEQ).
  std::optional<std::uint64_t> status_value(const MailboxStatus& s, const std::string& item) const {
    if (item == "MESSAGES") return s.messages;
    if (item == "UIDNEXT") return s.uidnext;
    if (item == "UIDVALIDITY") return s.uidvalidity;
    if (item == "UNSEEN") return s.unseen;
    if (item == "RECENT" && !rev2_) return 0;
    if (item == "SIZE") return s.size;
    if (item == "DELETED") return s.deleted;
    if (item == "HIGHESTMODSEQ") return s.highest_modseq;
    return std::nullopt;
  }
  std::string status_items(const MailboxStatus& s, const std::vector<std::string>& items) const {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : " ") + item + " " + std::to_string(status_value(s, item).value_or(0));
    return out;
  }

  asio::awaitable<bool> status(const ip::Command& c) {
    if (c.args.size() != 2 || !c.args[1].is_list()) co_return co_await bad(c, "STATUS mailbox (items)");
    auto name = mailbox_arg(c.args[0]);
    if (!name) co_return co_await bad(c, "bad mailbox name");
    std::vector<std::string> items;
    for (const auto& a : c.args[1].list) {
      items.push_back(a.is_list() ? std::string() : upper(a.text));
      if (!status_value(MailboxStatus{}, items.back())) co_return co_await bad(c, "unknown STATUS item");
      if (items.back() == "HIGHESTMODSEQ") condstore_ = true;  // a CONDSTORE enabling command (RFC 7162 §3.1)
    }
    auto* st = deps_.store;
    const std::string user = user_;
    const std::string box = *name;
    auto s = co_await blocking([st, &user, &box] { return st->status(user, box); });
    if (!s) co_return co_await no_from(c, s.error());
    bool ok = co_await send("* STATUS " + mailbox_out(box) + " (" + status_items(*s, items) + ")\r\n");
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
  // The client's view against the store: EXPUNGE (or VANISHED once QRESYNC
  // is on), EXISTS, FETCH FLAGS (with MODSEQ once CONDSTORE is on).
  // `expunges` is false during FETCH, STORE and SEARCH, where an EXPUNGE
  // would shift the numbers the client is reading (RFC 9051 §7.5.1); the
  // expunged messages then stay in the view until a later command.
  asio::awaitable<bool> sync(bool expunges = true) {
    if (box_.empty()) co_return true;
    auto* st = deps_.store;
    const std::string user = user_, box = box_;
    // Same MODSEQ, UIDNEXT and count as at the last look: nothing to report,
    // and no copy of the whole message list (which made every command,
    // FETCH of one message included, cost as much as the mailbox is long).
    const std::optional<MailboxStatus> seen = seen_box_ == box_ ? seen_version_ : std::nullopt;
    std::optional<MailboxStatus> version;
    bool unchanged = false;
    const auto same = [](const MailboxStatus& a, const MailboxStatus& b) {
      return a.uidvalidity == b.uidvalidity && a.uidnext == b.uidnext && a.highest_modseq == b.highest_modseq &&
             a.messages == b.messages;
    };
    const auto fresh = std::exchange(fresh_version_, std::nullopt);  // read by this command's FETCH
    if (fresh && seen && same(*fresh, *seen)) co_return true;
    auto now = co_await blocking([st, &user, &box, &seen, &version, &unchanged]() -> Result<std::vector<MessageInfo>> {
      if (auto v = st->version(user, box); v) {
        unchanged = seen && v->uidvalidity == seen->uidvalidity && v->uidnext == seen->uidnext &&
                    v->highest_modseq == seen->highest_modseq && v->messages == seen->messages;
        version = *v;
      }
      if (unchanged) return std::vector<MessageInfo>{};
      return st->messages(user, box);
    });
    if (now && unchanged) co_return true;
    if (!now) {
      co_await send("* BYE mailbox no longer available\r\n");
      co_return false;
    }
    seen_box_ = box_;
    seen_version_ = version;
    std::map<std::uint32_t, const MessageInfo*> current;
    for (const auto& m : *now) current[m.uid] = &m;
    std::string out;
    std::vector<std::uint32_t> vanished;
    for (std::size_t i = msgs_.size(); i-- > 0;) {
      if (current.count(msgs_[i].uid)) continue;
      if (!expunges) {
        seen_version_.reset();  // still to report: the next sync must look again
        continue;
      }
      if (qresync_) vanished.insert(vanished.begin(), msgs_[i].uid);
      else out += "* " + std::to_string(i + 1) + " EXPUNGE\r\n";
      msgs_.erase(msgs_.begin() + std::ptrdiff_t(i));
    }
    out += vanished_response(vanished, false);
    for (std::size_t i = 0; i < msgs_.size(); ++i) {
      auto it = current.find(msgs_[i].uid);
      if (it == current.end()) continue;  // expunged, reported by a later sync
      const MessageInfo* m = it->second;
      const bool changed = m->flags != msgs_[i].flags || m->keywords != msgs_[i].keywords ||
                           (condstore_ && m->modseq != msgs_[i].modseq);
      if (!changed) continue;
      msgs_[i] = *m;
      out += "* " + std::to_string(i + 1) + " FETCH (UID " + std::to_string(m->uid) + " FLAGS " + flags_text(*m) +
             modseq_text(*m) + ")\r\n";
    }
    const std::uint32_t last = msgs_.empty() ? 0 : msgs_.back().uid;
    const std::size_t before = msgs_.size();
    for (const auto& m : *now)
      if (m.uid > last) msgs_.push_back(m);
    if (msgs_.size() != before) out += "* " + std::to_string(msgs_.size()) + " EXISTS\r\n";
    if (out.empty()) co_return true;
    co_return co_await send(std::move(out));
  }

  std::string modseq_text(const MessageInfo& m) const {
    return condstore_ ? " MODSEQ (" + std::to_string(m.modseq) + ")" : std::string();
  }

  // Indices (0-based) of the messages a sequence set, UID set or "$" (RFC
  // 5182 SEARCHRES: the saved result, whether numbers or UIDs) names,
  // ascending; nullopt for bad syntax.
  std::optional<std::vector<std::size_t>> pick(const std::string& text, bool uid) const {
    std::vector<std::size_t> out;
    if (text == "$") {
      for (std::size_t i = 0; i < msgs_.size(); ++i)
        if (std::binary_search(saved_.begin(), saved_.end(), msgs_[i].uid)) out.push_back(i);
      return out;
    }
    auto set = ip::SeqSet::parse(text);
    if (!set) return std::nullopt;
    if (msgs_.empty()) return out;
    const auto ranges = set->resolve(uid ? msgs_.back().uid : std::uint32_t(msgs_.size()));
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
    saved_.clear();
    watch_.reset();
    co_return co_await tagged(c.tag, "OK", c.name + " completed");
  }

  // EXPUNGE, and UID EXPUNGE (RFC 4315) limited to `picked`. With CONDSTORE
  // the tagged OK carries the new HIGHESTMODSEQ (RFC 7162 §3.2.10).
  asio::awaitable<bool> expunge(const ip::Command& c, const std::vector<std::size_t>* picked) {
    if (read_only_) co_return co_await tagged(c.tag, "NO", "[READ-ONLY] mailbox is read-only");
    std::optional<UidRanges> ranges;
    if (picked) {
      UidRanges r;
      for (auto i : *picked) r.emplace_back(msgs_[i].uid, msgs_[i].uid);
      ranges = std::move(r);
    }
    auto* st = deps_.store;
    const std::string user = user_, box = box_;
    auto r = co_await blocking([st, &user, &box, &ranges]() -> Result<std::uint64_t> {
      if (!ranges || !ranges->empty()) {
        auto e = st->expunge(user, box, ranges);
        if (!e) return e.error();
      }
      auto s = st->status(user, box);
      if (!s) return s.error();
      return s->highest_modseq;
    });
    if (!r) co_return co_await no_from(c, r.error());
    bool ok = co_await sync();
    if (!ok) co_return false;
    const std::string code = condstore_ ? "[HIGHESTMODSEQ " + std::to_string(*r) + "] " : "";
    co_return co_await tagged(c.tag, "OK", code + "EXPUNGE completed");
  }

  asio::awaitable<bool> fetch(const ip::Command& c, std::size_t first, bool uid);
  std::vector<FetchWindow> plan_windows(const std::vector<FetchItem>& items, const std::vector<std::size_t>& picked) const;
  asio::awaitable<FetchLoad> load_window(const FetchWindow& w);
  asio::awaitable<bool> render_window(FetchRun& run, const FetchWindow& w, FetchBodies& bodies);
  void render_message(std::string& out, const std::vector<FetchItem>& items, std::size_t idx,
                      const std::string& content) const;
  asio::awaitable<bool> changed_since(const std::string& set, bool uid, std::uint64_t since, bool vanished,
                                      std::vector<std::size_t>& picked);
  asio::awaitable<bool> store(const ip::Command& c, std::size_t first, bool uid);
  asio::awaitable<bool> search(const ip::Command& c, std::size_t first, bool uid);
  asio::awaitable<bool> copy(const ip::Command& c, std::size_t first, bool uid, bool move);

  Deps deps_;
  std::unique_ptr<gateway::SessionIo> io_;
  asio::any_io_executor ex_;
  gateway::Deadline deadline_;
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
  std::vector<std::uint32_t> saved_;   // SEARCH RETURN (SAVE) result, UIDs ascending (RFC 5182)
  bool condstore_ = false;             // RFC 7162: MODSEQ in FETCH responses
  bool qresync_ = false;               // RFC 7162: VANISHED instead of EXPUNGE
  bool rev2_ = false;                  // ENABLE IMAP4rev2 (RFC 9051 appendix E)
  std::string pending_;                         // output held back by FETCH for the next send()
  std::optional<MailboxStatus> fresh_version_;  // the store's version as FETCH last read it
  std::string seen_box_;                        // sync(): the mailbox version msgs_ was last compared at
  std::optional<MailboxStatus> seen_version_;
  std::unique_ptr<Subscription> watch_;
  std::weak_ptr<Notifier> notifier_;
};

// ---------------------------------------------------------------- FETCH ---

bool parse_item(const std::string& raw, std::vector<FetchItem>& out) {
  const std::string u = upper(raw);
  using K = FetchItem::Kind;
  if (u == "UID") out.push_back({K::Uid, "UID", "", false, {}});
  else if (u == "FLAGS") out.push_back({K::Flags, "FLAGS", "", false, {}});
  else if (u == "INTERNALDATE") out.push_back({K::InternalDate, "INTERNALDATE", "", false, {}});
  else if (u == "RFC822.SIZE") out.push_back({K::Size, "RFC822.SIZE", "", false, {}});
  else if (u == "MODSEQ") out.push_back({K::ModSeq, "MODSEQ", "", false, {}});  // RFC 7162 §3.1.4
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

// FETCH batching: messages per trip to the store, body bytes per trip,
// and response bytes per write.
constexpr std::size_t kFetchBatch = 64;
constexpr std::uint64_t kFetchBatchBytes = 1u << 20;
constexpr std::size_t kFetchFlush = 64 * 1024;

// Whether the message's bytes are needed: sections and BODY always,
// ENVELOPE and BODYSTRUCTURE only when the index has no cached string.
bool needs_content(const std::vector<FetchItem>& items, const MessageInfo& m) {
  return std::any_of(items.begin(), items.end(), [&m](const FetchItem& i) {
    using K = FetchItem::Kind;
    return i.kind == K::Section || i.kind == K::Body || (i.kind == K::Envelope && m.envelope.empty()) ||
           (i.kind == K::BodyStructure && m.bodystructure.empty());
  });
}

asio::awaitable<bool> Session::fetch(const ip::Command& c, std::size_t first, bool uid) {
  if (c.args.size() != first + 2 && c.args.size() != first + 3) co_return co_await bad(c, "FETCH set items [(modifiers)]");
  if (c.args[first].is_list()) co_return co_await bad(c, "bad sequence set");
  auto picked_or = pick(c.args[first].text, uid);
  if (!picked_or) co_return co_await bad(c, "bad sequence set");
  FetchModifiers mods;
  if (c.args.size() == first + 3) {
    auto m = parse_fetch_modifiers(c.args[first + 2]);
    if (!m) co_return co_await bad(c, m.error().detail);
    // RFC 7162 §3.2.6: VANISHED only in UID FETCH, after ENABLE QRESYNC
    if (m->vanished && (!uid || !qresync_)) co_return co_await bad(c, "VANISHED needs UID FETCH and QRESYNC");
    mods = *m;
  }
  std::vector<FetchItem> items;
  const auto& spec = c.args[first + 1];
  bool ok_items = true;
  if (spec.is_list()) {
    for (const auto& a : spec.list) ok_items = ok_items && !a.is_list() && parse_item(a.text, items);
  } else {
    ok_items = parse_item(spec.text, items);
  }
  if (!ok_items || items.empty()) co_return co_await bad(c, "bad FETCH items");
  const auto has = [&items](FetchItem::Kind k) {
    return std::any_of(items.begin(), items.end(), [k](const FetchItem& i) { return i.kind == k; });
  };
  // MODSEQ and CHANGEDSINCE are CONDSTORE enabling (RFC 7162 §3.1); with
  // CHANGEDSINCE the MODSEQ item is implied.
  if (has(FetchItem::Kind::ModSeq) || mods.changed_since) condstore_ = true;
  if (mods.changed_since && !has(FetchItem::Kind::ModSeq)) items.push_back(FetchItem{FetchItem::Kind::ModSeq, "MODSEQ", "", false, {}});
  std::vector<std::size_t> picked = std::move(*picked_or);
  if (mods.changed_since) {
    bool ok = co_await changed_since(c.args[first].text, uid, *mods.changed_since, mods.vanished, picked);
    if (!ok) co_return false;
  }
  if (uid && std::none_of(items.begin(), items.end(), [](const FetchItem& i) { return i.kind == FetchItem::Kind::Uid; }))
    items.insert(items.begin(), FetchItem{FetchItem::Kind::Uid, "UID", "", false, {}});
  const bool sets_seen = !read_only_ && std::any_of(items.begin(), items.end(), [](const FetchItem& i) {
    return i.kind == FetchItem::Kind::Section && !i.peek;
  });
  FetchRun run{std::move(items), picked, sets_seen, {}};
  const auto windows = plan_windows(run.items, picked);
  // Bodies come from the store a window at a time (one trip to the blocking
  // pool per window, not per message), and the next window is read while
  // this one is written: the pool thread reads and decompresses while the
  // session's thread encrypts and sends (FETCH 1:* was one after the other).
  // Responses leave in writes of about kFetchFlush bytes.
  FetchLoad cur;
  if (!windows.empty()) cur = co_await load_window(windows[0]);
  for (std::size_t w = 0; w < windows.size(); ++w) {
    fresh_version_ = cur.version;
    bool sent = false;
    if (w + 1 < windows.size()) {
      auto [ok, next] = co_await (render_window(run, windows[w], cur.bodies) && load_window(windows[w + 1]));
      sent = ok;
      cur = std::move(next);
    } else {
      sent = co_await render_window(run, windows[w], cur.bodies);
    }
    if (!sent) co_return false;
  }
  // The last responses leave in one write with what follows (sync()'s
  // untagged ones, the tagged OK): a small second write would wait for the
  // client's delayed ACK (Nagle), about 40 ms for every one-message FETCH.
  pending_ = std::move(run.out);
  bool ok = co_await sync(uid);
  if (!ok) co_return false;
  const std::string done = c.name == "UID" ? "UID FETCH completed" : "FETCH completed";
  co_return co_await tagged(c.tag, "OK", done);
}

// Splits the picked messages into windows of at most kFetchBatch messages
// and kFetchBatchBytes, listing the UIDs whose bytes each needs.
std::vector<FetchWindow> Session::plan_windows(const std::vector<FetchItem>& items,
                                               const std::vector<std::size_t>& picked) const {
  std::vector<FetchWindow> out;
  for (std::size_t k = 0; k < picked.size();) {
    FetchWindow w;
    w.begin = k;
    std::uint64_t bytes = 0;
    for (; k < picked.size() && k - w.begin < kFetchBatch && bytes < kFetchBatchBytes; ++k) {
      const MessageInfo& m = msgs_[picked[k]];
      if (!needs_content(items, m)) continue;
      w.want.push_back(m.uid);
      w.slot.push_back(k - w.begin);
      bytes += m.size;
    }
    w.end = k;
    out.push_back(std::move(w));
  }
  return out;
}

// The bytes of one window's messages (nullopt where none are needed), and
// the mailbox version read with them, so the sync() after the last window
// needs no trip of its own when nothing changed.
asio::awaitable<FetchLoad> Session::load_window(const FetchWindow& w) {
  FetchLoad load;
  load.bodies.resize(w.end - w.begin);
  if (w.want.empty()) co_return load;
  auto* st = deps_.store;
  const std::string user = user_, box = box_;
  const std::vector<std::uint32_t>* want = &w.want;
  std::optional<MailboxStatus> ver;
  auto got = co_await blocking([st, &user, &box, want, &ver] {
    auto bodies = st->fetch_many(user, box, *want);
    if (auto v = st->version(user, box); v) ver = *v;
    return bodies;
  });
  load.version = ver;
  for (std::size_t i = 0; i < got.size() && i < w.slot.size(); ++i) load.bodies[w.slot[i]] = std::move(got[i]);
  co_return load;
}

// The FETCH responses of one window into run.out, written out whenever it
// holds kFetchFlush bytes (but not after the command's last message: that
// goes with the tagged reply).
asio::awaitable<bool> Session::render_window(FetchRun& run, const FetchWindow& w, FetchBodies& bodies) {
  auto* st = deps_.store;
  const std::string user = user_, box = box_;
  auto& items = run.items;
  const auto has = [&items](FetchItem::Kind k) {
    return std::any_of(items.begin(), items.end(), [k](const FetchItem& i) { return i.kind == k; });
  };
  std::string& out = run.out;
  for (std::size_t k = w.begin; k < w.end; ++k) {
    const std::size_t idx = run.picked[k];
    std::string content;
    if (auto& body = bodies[k - w.begin]; body) {
      if (!*body) continue;  // expunged meanwhile: reported by the next sync
      content = std::move(**body);
    }
    MessageInfo& m = msgs_[idx];
    if (run.sets_seen && !(m.flags & kSeen)) {
      FlagUpdate add;
      add.mode = FlagUpdate::Mode::Add;
      add.flags = kSeen;
      const UidRanges one{{m.uid, m.uid}};
      auto r = co_await blocking([st, &user, &box, &one, &add] { return st->store_flags(user, box, one, add); });
      if (r) m.flags |= kSeen;
      if (r && !r->changed.empty()) m.modseq = r->changed.front().modseq;
      if (!has(FetchItem::Kind::Flags)) items.push_back(FetchItem{FetchItem::Kind::Flags, "FLAGS", "", false, {}});
      // the flag change moved its MODSEQ: say so (RFC 7162 §3.2.4)
      if (condstore_ && !has(FetchItem::Kind::ModSeq)) items.push_back(FetchItem{FetchItem::Kind::ModSeq, "MODSEQ", "", false, {}});
    }
    render_message(out, items, idx, content);
    if (out.size() >= kFetchFlush && k + 1 < run.picked.size()) {
      bool sent = co_await send(std::move(out));
      if (!sent) co_return false;
      out.clear();
    }
  }
  co_return true;
}

// "* n FETCH (...)\r\n" for msgs_[idx]; `content` is the message when an
// item needed it.
void Session::render_message(std::string& out, const std::vector<FetchItem>& items, std::size_t idx,
                             const std::string& content) const {
  const MessageInfo& m = msgs_[idx];
  out += "* " + std::to_string(idx + 1) + " FETCH (";
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
      case FetchItem::Kind::ModSeq: out += "(" + std::to_string(m.modseq) + ")"; break;
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
        if (it.section.empty() && !it.partial) {
          // BODY[] and RFC822: the stored bytes as they are, no MIME parse.
          out += "{" + std::to_string(content.size()) + "}\r\n";
          out += content;
          break;
        }
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
}

// FETCH (CHANGEDSINCE n [VANISHED]) (RFC 7162 §3.1.4.1, §3.2.6): the view's
// MODSEQs brought up to date, then only the messages changed after n; with
// VANISHED, first the UIDs in the set that were expunged after n.
asio::awaitable<bool> Session::changed_since(const std::string& set, bool uid, std::uint64_t since, bool vanished,
                                             std::vector<std::size_t>& picked) {
  bool ok = co_await sync(uid);
  if (!ok) co_return false;
  picked = pick(set, uid).value_or(std::vector<std::size_t>{});  // the view may have shrunk
  std::erase_if(picked, [this, since](std::size_t i) { return msgs_[i].modseq <= since; });
  if (!vanished) co_return true;
  auto* st = deps_.store;
  const std::string user = user_, box = box_;
  auto ch = co_await blocking([st, &user, &box, since] { return st->changes_since(user, box, since); });
  if (!ch) co_return true;  // nothing known to report; the FETCH itself goes on
  auto ranges = ip::SeqSet::parse(set);
  if (!ranges) co_return true;  // "$": only known messages, none of them vanished
  const std::uint32_t star = std::max(msgs_.empty() ? 0u : msgs_.back().uid, ch->vanished.empty() ? 0u : ch->vanished.back());
  const auto resolved = ranges->resolve(star);
  std::vector<std::uint32_t> gone;
  for (auto u : ch->vanished)
    if (ip::contains(resolved, u)) gone.push_back(u);
  const std::string text = vanished_response(gone, true);
  if (text.empty()) co_return true;
  co_return co_await send(text);
}

// ---------------------------------------------------------------- STORE ---

// STORE / UID STORE, with CONDSTORE's (UNCHANGEDSINCE n): messages changed
// after n are left alone and named in [MODIFIED ...] (RFC 7162 §3.1.3).
asio::awaitable<bool> Session::store(const ip::Command& c, std::size_t first, bool uid) {
  const bool conditional = c.args.size() == first + 4;
  if (c.args.size() != first + 3 && !conditional) co_return co_await bad(c, "STORE set [(UNCHANGEDSINCE n)] item flags");
  if (read_only_) co_return co_await tagged(c.tag, "NO", "[READ-ONLY] mailbox is read-only");
  if (c.args[first].is_list()) co_return co_await bad(c, "bad sequence set");
  auto picked = pick(c.args[first].text, uid);
  if (!picked) co_return co_await bad(c, "bad sequence set");
  FlagUpdate up;
  std::size_t at = first + 1;
  if (conditional) {
    auto since = parse_store_modifiers(c.args[at++]);
    if (!since) co_return co_await bad(c, since.error().detail);
    up.unchanged_since = *since;
    condstore_ = true;
  }
  std::string item = c.args[at].is_list() ? std::string() : upper(c.args[at].text);
  const bool silent = item.ends_with(".SILENT");
  if (silent) item.resize(item.size() - 7);
  if (item == "FLAGS") up.mode = FlagUpdate::Mode::Replace;
  else if (item == "+FLAGS") up.mode = FlagUpdate::Mode::Add;
  else if (item == "-FLAGS") up.mode = FlagUpdate::Mode::Remove;
  else co_return co_await bad(c, "bad STORE item");
  const auto& fl = c.args[at + 1];
  std::vector<ip::Arg> flags = fl.is_list() ? fl.list : std::vector<ip::Arg>{fl};
  for (const auto& f : flags)
    if (f.is_list() || !parse_flag(f.text, up.flags, up.keywords)) co_return co_await bad(c, "bad flag");
  UidRanges uids;
  for (std::size_t i : *picked) uids.emplace_back(msgs_[i].uid, msgs_[i].uid);
  auto* st = deps_.store;
  const std::string user = user_, box = box_;
  std::vector<std::uint32_t> modified;
  if (!uids.empty()) {
    auto r = co_await blocking([st, &user, &box, &uids, &up] { return st->store_flags(user, box, uids, up); });
    if (!r) co_return co_await no_from(c, r.error());
    modified = r->modified;
    std::string out;
    if (silent) {
      // Our own change is not echoed; other sessions learn of it in sync().
      // With CONDSTORE the new MODSEQ still is (RFC 7162 §3.1.3).
      for (const auto& ch : r->changed)
        for (std::size_t i = 0; i < msgs_.size(); ++i) {
          if (msgs_[i].uid != ch.uid) continue;
          msgs_[i] = ch;
          if (condstore_)
            out += "* " + std::to_string(i + 1) + " FETCH (UID " + std::to_string(ch.uid) + modseq_text(ch) + ")\r\n";
        }
    }
    if (!out.empty()) {
      bool sent = co_await send(std::move(out));
      if (!sent) co_return false;
    }
  }
  bool ok = co_await sync(uid);
  if (!ok) co_return false;
  if (modified.empty()) co_return co_await tagged(c.tag, "OK", "STORE completed");
  // [MODIFIED set]: UIDs for UID STORE, else sequence numbers
  std::vector<std::uint32_t> ids;
  for (std::size_t i = 0; i < msgs_.size(); ++i)
    if (std::binary_search(modified.begin(), modified.end(), msgs_[i].uid)) ids.push_back(uid ? msgs_[i].uid : std::uint32_t(i + 1));
  co_return co_await tagged(c.tag, "OK", "[MODIFIED " + ip::format_compact(ids) + "] conditional STORE failed");
}

// --------------------------------------------------------------- SEARCH ---

// SEARCH / UID SEARCH (search.hpp); ESEARCH form with RETURN or IMAP4rev2.
asio::awaitable<bool> Session::search(const ip::Command& c, std::size_t first, bool uid) {
  const SearchScope scope{std::uint32_t(msgs_.size()), msgs_.empty() ? 0 : msgs_.back().uid, &saved_};
  auto parsed = Search::parse(c.args, first, scope);
  if (!parsed) {
    if (parsed.error().code == Errc::NotImplemented)
      co_return co_await tagged(c.tag, "NO", "[BADCHARSET (UTF-8 US-ASCII)] " + parsed.error().detail);
    co_return co_await bad(c, parsed.error().detail);
  }
  Search query = std::move(*parsed);
  if (rev2_) query.force_esearch();  // RFC 9051 §6.4.4: IMAP4rev2 answers SEARCH with ESEARCH
  if (query.uses_modseq()) condstore_ = true;
  bool ok = co_await sync(uid);
  if (!ok) co_return false;
  // Flags, dates, sizes and sets from the index; SENT* and SUBJECT from the
  // cached ENVELOPE where there is one; the rest reads the messages.
  std::vector<bool> hit(msgs_.size(), false);
  std::vector<std::size_t> to_read;
  for (std::size_t i = 0; i < msgs_.size(); ++i) {
    if (query.needs_content() && !query.from_envelope(msgs_[i])) to_read.push_back(i);
    else hit[i] = query.matches(msgs_[i], std::uint32_t(i + 1), nullptr, {});
  }
  if (!to_read.empty()) {
    auto* st = deps_.store;
    const std::string user = user_, box = box_;
    const std::vector<MessageInfo>* msgs = &msgs_;
    const std::vector<std::size_t>* todo = &to_read;
    const Search* q = &query;
    auto found = co_await blocking([st, &user, &box, msgs, todo, q] {
      std::vector<bool> h(todo->size(), false);
      // Read in windows (one index lock per window, as FETCH does).
      constexpr std::size_t kWindow = 64;
      std::vector<std::uint32_t> uids;
      for (std::size_t at = 0; at < todo->size(); at += kWindow) {
        const std::size_t end = std::min(todo->size(), at + kWindow);
        uids.clear();
        for (std::size_t k = at; k < end; ++k) uids.push_back((*msgs)[(*todo)[k]].uid);
        auto contents = st->fetch_many(user, box, uids);
        for (std::size_t k = at; k < end; ++k) {
          if (!contents[k - at]) continue;
          std::string_view content = *contents[k - at];
          if (!q->needs_body()) content = header_block(content);  // no MIME walk of the body
          const auto message = mime::parse(content);
          const std::size_t i = (*todo)[k];
          h[k] = q->matches((*msgs)[i], std::uint32_t(i + 1), &message, content);
        }
      }
      return h;
    });
    for (std::size_t k = 0; k < to_read.size(); ++k) hit[to_read[k]] = found[k];
  }
  std::vector<std::uint32_t> numbers, hit_uids;
  std::uint64_t top = 0;
  for (std::size_t i = 0; i < msgs_.size(); ++i) {
    if (!hit[i]) continue;
    numbers.push_back(uid ? msgs_[i].uid : std::uint32_t(i + 1));
    hit_uids.push_back(msgs_[i].uid);
    top = std::max(top, msgs_[i].modseq);
  }
  const auto& ret = query.ret();
  if (ret.save) saved_ = saved_result(ret, hit_uids);
  const std::optional<std::uint64_t> modseq = query.uses_modseq() ? std::optional<std::uint64_t>(top) : std::nullopt;
  std::string out = ret.esearch ? esearch_response(c.tag, uid, ret, numbers, modseq) : search_response(numbers, modseq);
  out += c.tag + " OK " + (uid ? "UID SEARCH" : "SEARCH") + " completed\r\n";
  co_return co_await send(std::move(out));
}

// ----------------------------------------------------------- COPY/MOVE ---

asio::awaitable<bool> Session::copy(const ip::Command& c, std::size_t first, bool uid, bool move) {
  if (c.args.size() != first + 2) co_return co_await bad(c, "COPY set mailbox");
  if (c.args[first].is_list()) co_return co_await bad(c, "bad sequence set");
  auto picked = pick(c.args[first].text, uid);
  if (!picked) co_return co_await bad(c, "bad sequence set");
  auto dest = mailbox_arg(c.args[first + 1]);
  if (!dest) co_return co_await bad(c, "bad mailbox name");
  if (move && read_only_) co_return co_await tagged(c.tag, "NO", "[READ-ONLY] mailbox is read-only");
  UidRanges uids;
  for (std::size_t i : *picked) uids.emplace_back(msgs_[i].uid, msgs_[i].uid);
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

// Private to the IMAP session's files: the Session class (one member
// function per command, defined in session*.cpp by command group) and what
// they share. See session.hpp for the RFCs and session.cpp for the states.
#pragma once

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
#include "common/proto/imap/binary.hpp"
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

namespace moat::store::imap::detail {

using namespace asio::experimental::awaitable_operators;
namespace ip = proto::imap;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kRead = 16 * 1024;
constexpr std::size_t kReadIdle = 1024;  // between commands: most command lines fit
constexpr std::size_t kCork = 64 * 1024;  // held output written once it reaches this

std::string flags_text(const MessageInfo& m);
bool parse_flag(const std::string& f, Flags& flags, std::vector<std::string>& keywords);
std::string imap_date(std::int64_t t);
std::optional<std::int64_t> parse_date_time(const std::string& s);

struct FetchItem {
  // Binary / BinarySize: BINARY[part] and BINARY.SIZE[part] (RFC 3516, RFC 9051 §6.4.5)
  enum class Kind { Uid, Flags, InternalDate, Size, Envelope, BodyStructure, Body, Section, Binary, BinarySize, ModSeq } kind;
  std::string label;        // as echoed in the response ("BODY[HEADER]<0>", "BINARY[2]<0>")
  std::string section;      // upper-cased section text: "", "HEADER", "TEXT", "HEADER.FIELDS (A B)", "1"; BINARY: part numbers only
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
  bool unknown_cte = false;  // a BINARY item named a part whose transfer encoding is unknown
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
  // Responses are held (corked) while commands run and written when the
  // session next waits for the client (fill(), so a response is never held
  // while the client waits for it), when they pass kCork bytes, or at the
  // end. Pipelined commands (read in one go) then share one write, and a
  // command's responses leave with its tagged reply: a small second write
  // would wait for the client's delayed ACK (Nagle), about 40 ms for every
  // one-message FETCH. During IDLE every response goes at once.
  asio::awaitable<bool> send(std::string text) {
    if (pending_.empty()) pending_ = std::move(text);
    else pending_ += text;
    if (pending_.size() < kCork && !idling_) co_return true;
    co_return co_await flush();
  }
  asio::awaitable<bool> flush() {
    if (pending_.empty()) co_return true;
    std::string out;
    out.swap(pending_);
    auto st = co_await io_->write(out);
    co_return st.ok();
  }
  asio::awaitable<bool> fill() {
    const bool flushed = co_await flush();
    if (!flushed) co_return false;
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
  asio::awaitable<void> dialogue();

  asio::awaitable<bool> on_error(const ip::Event& ev);

  asio::awaitable<bool> bad(const ip::Command& c, std::string_view text);

  std::string capabilities() const;

  asio::awaitable<bool> command(const ip::Command& c);

  // ---------------------------------------------------- authentication ---
  asio::awaitable<bool> starttls(const ip::Command& c);

  asio::awaitable<bool> login_cmd(const ip::Command& c);

  asio::awaitable<bool> authenticate(const ip::Command& c);

  asio::awaitable<bool> auth_failed(const ip::Command& c);

  asio::awaitable<bool> login(const ip::Command& c, std::string user, std::string password);

  // ------------------------------------------------------- mailboxes ---
  // Mailbox argument -> checked UTF-8: modified UTF-7 from IMAP4rev1
  // clients, UTF-8 as it is once IMAP4rev2 is enabled (RFC 9051 §5.1).
  std::optional<std::string> mailbox_arg(const ip::Arg& a) const;
  std::string mailbox_out(const std::string& utf8) const;

  asio::awaitable<bool> no_from(const ip::Command& c, const Error& e);

  // RFC 5161 ENABLE: CONDSTORE, QRESYNC (which implies CONDSTORE) and
  // IMAP4rev2; anything else is ignored. ENABLED names what this command
  // turned on.
  asio::awaitable<bool> enable(const ip::Command& c);

  struct Opened {
    MailboxStatus status;
    std::vector<MessageInfo> messages;
    std::optional<Changes> changes;  // QRESYNC with a matching UIDVALIDITY
  };

  asio::awaitable<bool> select(const ip::Command& c, bool read_only);

  // SELECT (QRESYNC ...) with the client's UIDVALIDITY: VANISHED (EARLIER)
  // for expunged known UIDs, then FETCH for known messages changed since
  // its modseq (RFC 7162 §3.2.5.2). New messages it learns from EXISTS.
  std::string qresync_report(const Changes& ch, const QresyncParams& q) const;

  void start_watch();

  // LIST, LIST-EXTENDED (RFC 5258) with RETURN (STATUS ...) (RFC 5819), LSUB.
  asio::awaitable<bool> list(const ip::Command& c, bool lsub);

  // One STATUS item (RFC 9051 §6.3.11, RFC 8438 SIZE, RFC 7162 HIGHESTMODSEQ).
  std::optional<std::uint64_t> status_value(const MailboxStatus& s, const std::string& item) const;
  std::string status_items(const MailboxStatus& s, const std::vector<std::string>& items) const;

  asio::awaitable<bool> status(const ip::Command& c);

  asio::awaitable<bool> manage(const ip::Command& c);

  asio::awaitable<bool> append(const ip::Command& c);

  // ------------------------------------------------------ selected ---
  // The client's view against the store: EXPUNGE, EXISTS, FETCH FLAGS.
  // The client's view against the store: EXPUNGE (or VANISHED once QRESYNC
  // is on), EXISTS, FETCH FLAGS (with MODSEQ once CONDSTORE is on).
  // `expunges` is false during FETCH, STORE and SEARCH, where an EXPUNGE
  // would shift the numbers the client is reading (RFC 9051 §7.5.1); the
  // expunged messages then stay in the view until a later command.
  asio::awaitable<bool> sync(bool expunges = true);

  std::string modseq_text(const MessageInfo& m) const;

  // Indices (0-based) of the messages a sequence set, UID set or "$" (RFC
  // 5182 SEARCHRES: the saved result, whether numbers or UIDs) names,
  // ascending; nullopt for bad syntax.
  std::optional<std::vector<std::size_t>> pick(const std::string& text, bool uid) const;

  asio::awaitable<bool> idle(const ip::Command& c);

  asio::awaitable<bool> idle_reader();

  asio::awaitable<bool> idle_pusher();

  asio::awaitable<bool> close(const ip::Command& c, bool expunge_first);

  // EXPUNGE, and UID EXPUNGE (RFC 4315) limited to `picked`. With CONDSTORE
  // the tagged OK carries the new HIGHESTMODSEQ (RFC 7162 §3.2.10).
  asio::awaitable<bool> expunge(const ip::Command& c, const std::vector<std::size_t>* picked);

  asio::awaitable<bool> fetch(const ip::Command& c, std::size_t first, bool uid);
  std::vector<FetchWindow> plan_windows(const std::vector<FetchItem>& items, const std::vector<std::size_t>& picked) const;
  asio::awaitable<FetchLoad> load_window(const FetchWindow& w);
  asio::awaitable<bool> render_window(FetchRun& run, const FetchWindow& w, FetchBodies& bodies);
  // `parsed`: the MIME parse of `content`, made on first need and shared by the items.
  void render_message(std::string& out, const std::vector<FetchItem>& items, std::size_t idx,
                      const std::string& content, std::optional<mime::Message>& parsed) const;
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
  std::string pending_;                         // output held by send() for the next flush()
  std::optional<MailboxStatus> fresh_version_;  // the store's version as FETCH last read it
  std::string seen_box_;                        // sync(): the mailbox version msgs_ was last compared at
  std::optional<MailboxStatus> seen_version_;
  std::unique_ptr<Subscription> watch_;
  std::weak_ptr<Notifier> notifier_;
};

}  // namespace moat::store::imap::detail

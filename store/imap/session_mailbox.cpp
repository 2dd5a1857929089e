// IMAP session, mailbox commands (RFC 9051 §6.3): ENABLE, SELECT/EXAMINE
// (CONDSTORE/QRESYNC), LIST/LSUB, STATUS, CREATE/DELETE/RENAME/(UN)SUBSCRIBE,
// APPEND. Part of session.cpp's Session (session_impl.hpp).
#include "store/imap/session_impl.hpp"

namespace moat::store::imap::detail {

std::optional<std::string> Session::mailbox_arg(const ip::Arg& a) const {
  if (!a.is_astring()) return std::nullopt;
  auto utf8 = rev2_ ? Result<std::string>(a.text) : ip::mutf7_decode(a.text);
  if (!utf8 || !ip::valid_utf8(*utf8)) return std::nullopt;
  auto checked = ip::check_mailbox_name(*utf8);
  if (!checked) return std::nullopt;
  return *checked;
}

std::string Session::mailbox_out(const std::string& utf8) const {
  auto m = rev2_ ? Result<std::string>(utf8) : ip::mutf7_encode(utf8);
  std::string out;
  ip::append_string(out, m ? *m : utf8);
  return out;
}

asio::awaitable<bool> Session::no_from(const ip::Command& c, const Error& e) {
  if (e.code == Errc::NotFound) co_return co_await tagged(c.tag, "NO", "[NONEXISTENT] no such mailbox");
  if (e.code == Errc::Invalid) co_return co_await tagged(c.tag, "NO", "[CANNOT] " + e.detail);
  if (e.code == Errc::DiskFull) co_return co_await tagged(c.tag, "NO", "[OVERQUOTA] " + e.detail);
  co_return co_await tagged(c.tag, "NO", "[UNAVAILABLE] " + e.detail);
}

asio::awaitable<bool> Session::enable(const ip::Command& c) {
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

asio::awaitable<bool> Session::select(const ip::Command& c, bool read_only) {
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

std::string Session::qresync_report(const Changes& ch, const QresyncParams& q) const {
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

void Session::start_watch() {
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

asio::awaitable<bool> Session::list(const ip::Command& c, bool lsub) {
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

std::optional<std::uint64_t> Session::status_value(const MailboxStatus& s, const std::string& item) const {
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

std::string Session::status_items(const MailboxStatus& s, const std::vector<std::string>& items) const {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : " ") + item + " " + std::to_string(status_value(s, item).value_or(0));
  return out;
}

asio::awaitable<bool> Session::status(const ip::Command& c) {
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

asio::awaitable<bool> Session::manage(const ip::Command& c) {
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

asio::awaitable<bool> Session::append(const ip::Command& c) {
  // APPEND mailbox [(flags)] [date-time] literal
  if (c.args.size() < 2 || c.args.size() > 4 || c.args.back().type != ip::Arg::Type::Literal)
    co_return co_await bad(c, "APPEND mailbox [(flags)] [date-time] {size}");
  if (c.args[0].literal8) co_return co_await bad(c, "literal8 is only for the message");
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

}  // namespace moat::store::imap::detail

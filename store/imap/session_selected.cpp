// IMAP session, selected state: sync() (EXPUNGE/EXISTS/FETCH FLAGS to the
// client), sequence sets, IDLE (RFC 2177), CLOSE/UNSELECT, EXPUNGE; STORE,
// SEARCH, COPY/MOVE (RFC 9051 §6.4, RFC 6851). Part of session.cpp's Session.
#include "store/imap/session_impl.hpp"

namespace moat::store::imap::detail {

asio::awaitable<bool> Session::sync(bool expunges) {
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

std::string Session::modseq_text(const MessageInfo& m) const {
  return condstore_ ? " MODSEQ (" + std::to_string(m.modseq) + ")" : std::string();
}

std::optional<std::vector<std::size_t>> Session::pick(const std::string& text, bool uid) const {
  std::vector<std::size_t> out;
  if (text == "$") {
    for (std::size_t i = 0; i < msgs_.size(); ++i)
      if (std::binary_search(saved_.begin(), saved_.end(), msgs_[i].uid)) out.push_back(i);
    return out;
  }
  auto set = ip::SeqSet::parse(text);
  if (!set) return std::nullopt;
  if (msgs_.empty()) return out;
  // The ranges come sorted and merged, and msgs_ is in ascending UID order:
  // each range is found by binary search and walked, so "UID FETCH n" costs
  // O(log n) instead of a test of every message in the mailbox.
  const auto ranges = set->resolve(uid ? msgs_.back().uid : std::uint32_t(msgs_.size()));
  for (const auto& r : ranges) {
    if (!uid) {
      for (std::size_t i = r.lo - 1; i < std::min<std::size_t>(r.hi, msgs_.size()); ++i) out.push_back(i);
      continue;
    }
    auto it = std::lower_bound(msgs_.begin(), msgs_.end(), r.lo,
                               [](const MessageInfo& m, std::uint32_t u) { return m.uid < u; });
    for (; it != msgs_.end() && it->uid <= r.hi; ++it) out.push_back(std::size_t(it - msgs_.begin()));
  }
  return out;
}

asio::awaitable<bool> Session::idle(const ip::Command& c) {
  bool ok = co_await send("+ idling\r\n");
  if (ok) ok = co_await flush();  // before the reader and pusher share the stream (one write at a time)
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

asio::awaitable<bool> Session::idle_reader() {
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

asio::awaitable<bool> Session::idle_pusher() {
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

asio::awaitable<bool> Session::close(const ip::Command& c, bool expunge_first) {
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

asio::awaitable<bool> Session::expunge(const ip::Command& c, const std::vector<std::size_t>* picked) {
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

}  // namespace moat::store::imap::detail

// IMAP session, FETCH (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162
// CHANGEDSINCE/VANISHED): items, sections, windows read while the previous
// one is written. Part of session.cpp's Session (session_impl.hpp).
#include "store/imap/session_impl.hpp"

namespace moat::store::imap::detail {

namespace {

// "<offset.count>" after a section (RFC 9051 §6.4.5), echoed as "<offset>".
bool parse_partial(const std::string& rest, FetchItem& it) {
  std::uint64_t a = 0, b = 0;
  if (std::sscanf(rest.c_str(), "<%lu.%lu>", &a, &b) != 2 || b == 0) return false;
  it.partial = std::make_pair(a, b);
  it.label += "<" + std::to_string(a) + ">";
  return true;
}

// BINARY[part]<partial>, BINARY.PEEK[part]<partial>, BINARY.SIZE[part]
// (RFC 3516 §4.2-4.3); BINARY.PEEK answers as BINARY.
bool parse_binary_item(const std::string& u, std::vector<FetchItem>& out) {
  const bool size = u.starts_with("BINARY.SIZE[");
  const auto open = u.find('['), close = u.find(']');
  if (close == std::string::npos || close < open) return false;
  const std::string section = u.substr(open + 1, close - open - 1);
  if (!ip::valid_part_path(section)) return false;
  FetchItem it{size ? FetchItem::Kind::BinarySize : FetchItem::Kind::Binary,
               (size ? "BINARY.SIZE[" : "BINARY[") + section + "]", section, u.starts_with("BINARY.PEEK["), {}};
  const std::string rest = u.substr(close + 1);
  if (!rest.empty() && (size || !parse_partial(rest, it))) return false;
  out.push_back(std::move(it));
  return true;
}

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
    if (!rest.empty() && !parse_partial(rest, it)) return false;
    out.push_back(std::move(it));
  } else if (u.starts_with("BINARY[") || u.starts_with("BINARY.PEEK[") || u.starts_with("BINARY.SIZE[")) {
    return parse_binary_item(u, out);
  } else {
    return false;
  }
  return true;
}

// The bytes of a section of `msg` (RFC 3501 §6.4.5): "", HEADER, TEXT,
// HEADER.FIELDS[.NOT] (names), MIME, and part numbers "1.2" with those.
std::optional<std::string> section_bytes(const std::string& msg, const mime::Message& parsed,
                                        const std::string& section) {
  std::string rest = section;
  const auto found = ip::find_part(parsed, rest);
  if (!found) return std::nullopt;
  const std::size_t part = *found;
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

// `msg` parsed once for all the items of one message that need it.
const mime::Message& parsed_once(std::optional<mime::Message>& parsed, const std::string& msg) {
  if (!parsed) parsed = mime::parse(msg);
  return *parsed;
}

// BINARY[section] of `msg`; BINARY[] (the whole message) needs no parse.
ip::BinaryData binary_of(const std::string& msg, const std::string& section, std::optional<mime::Message>& parsed) {
  if (section.empty()) return {msg, false};
  return ip::binary_section(msg, parsed_once(parsed, msg), section);
}

// Whether any BINARY item of `items` names a part of `msg` with an unknown
// transfer encoding.
bool unknown_cte(const std::vector<FetchItem>& items, const std::string& msg, std::optional<mime::Message>& parsed) {
  return std::any_of(items.begin(), items.end(), [&](const FetchItem& i) {
    return (i.kind == FetchItem::Kind::Binary || i.kind == FetchItem::Kind::BinarySize) &&
           binary_of(msg, i.section, parsed).unknown_cte;
  });
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
    return i.kind == K::Section || i.kind == K::Body || i.kind == K::Binary || i.kind == K::BinarySize ||
           (i.kind == K::Envelope && m.envelope.empty()) ||
           (i.kind == K::BodyStructure && m.bodystructure.empty());
  });
}

}  // namespace

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
    return (i.kind == FetchItem::Kind::Section || i.kind == FetchItem::Kind::Binary) && !i.peek;
  });
  FetchRun run{std::move(items), picked, sets_seen, {}, false};
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
  // untagged ones, the tagged OK): send() holds them (see there, Nagle).
  bool ok = co_await send(std::move(run.out));
  if (!ok) co_return false;
  ok = co_await sync(uid);
  if (!ok) co_return false;
  if (run.unknown_cte)  // RFC 3516 §4.3: the other messages were answered
    co_return co_await tagged(c.tag, "NO", "[UNKNOWN-CTE] a part's Content-Transfer-Encoding is unknown");
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
// needs no trip of its own when nothing changed. First tried right here
// without blocking (open files, page cache only: fetch_batch's nowait, the
// pattern nginx, Samba and QEMU use for reads that are usually cached),
// which saves the trip to the blocking pool and back, two thread wake-ups
// and most of a FETCH's cost for a small message; whatever could block goes
// to the pool.
asio::awaitable<FetchLoad> Session::load_window(const FetchWindow& w) {
  FetchLoad load;
  load.bodies.resize(w.end - w.begin);
  if (w.want.empty()) co_return load;
  auto* st = deps_.store;
  auto batch = st->fetch_batch(user_, box_, w.want, true);
  if (!batch) {
    const std::string user = user_, box = box_;
    const std::vector<std::uint32_t>* want = &w.want;
    // without nowait fetch_batch always answers
    batch = co_await blocking([st, &user, &box, want] { return st->fetch_batch(user, box, *want, false); });
  }
  load.version = batch->version;
  auto& got = batch->bodies;
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
    std::optional<mime::Message> parsed;
    // checked before \Seen is set: this message gets no FETCH response at all
    if (unknown_cte(items, content, parsed)) {
      run.unknown_cte = true;
      continue;
    }
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
    render_message(out, items, idx, content, parsed);
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
                             const std::string& content, std::optional<mime::Message>& parsed) const {
  const MessageInfo& m = msgs_[idx];
  out += "* " + std::to_string(idx + 1) + " FETCH (";
  bool firstitem = true;
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
        const auto& tree = parsed_once(parsed, content);
        if (it.kind == FetchItem::Kind::Envelope) out += ip::envelope(tree);
        else out += ip::body_structure(tree, content, it.kind == FetchItem::Kind::BodyStructure);
        break;
      }
      case FetchItem::Kind::Section: {
        if (it.section.empty() && !it.partial) {
          // BODY[] and RFC822: the stored bytes as they are, no MIME parse.
          out += "{" + std::to_string(content.size()) + "}\r\n";
          out += content;
          break;
        }
        auto bytes = section_bytes(content, parsed_once(parsed, content), it.section);
        std::string data = bytes ? std::move(*bytes) : std::string();
        if (it.partial) {
          const auto [off, len] = *it.partial;
          data = off >= data.size() ? std::string() : data.substr(std::size_t(off), std::size_t(len));
        }
        out += "{" + std::to_string(data.size()) + "}\r\n" + data;
        break;
      }
      case FetchItem::Kind::Binary: {
        std::string data = binary_of(content, it.section, parsed).data;
        if (it.partial) {
          const auto [off, len] = *it.partial;
          data = off >= data.size() ? std::string() : data.substr(std::size_t(off), std::size_t(len));
        }
        out += ip::literal_of(data);
        break;
      }
      case FetchItem::Kind::BinarySize:
        out += std::to_string(binary_of(content, it.section, parsed).data.size());
        break;
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

}  // namespace moat::store::imap::detail

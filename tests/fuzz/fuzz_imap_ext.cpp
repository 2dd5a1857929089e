// Fuzz target: the IMAP extension arguments after the command parser:
// SEARCH keys with RETURN options (RFC 9051 §6.4.4, RFC 4731, RFC 5182,
// RFC 7162 MODSEQ) evaluated on three fixed messages, LIST-EXTENDED /
// LIST-STATUS (RFC 5258, RFC 5819) answered for a fixed mailbox tree, and the
// CONDSTORE/QRESYNC SELECT, FETCH and STORE modifiers (RFC 7162).
// Oracles: no crash or sanitizer report; LIST answers each name once and only
// names that match a pattern or carry CHILDINFO; the ESEARCH text agrees with
// the hit count; SENT*/SUBJECT answered from the cached ENVELOPE agree with
// the message; a VANISHED set written from a QRESYNC known-uids set parses back.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/proto/imap/parser.hpp"
#include "common/proto/imap/structure.hpp"
#include "common/proto/mime/mime.hpp"
#include "store/imap/condstore.hpp"
#include "store/imap/list.hpp"
#include "store/imap/search.hpp"

using namespace moat;
using namespace moat::store;
using namespace moat::store::imap;
namespace ip = moat::proto::imap;

namespace {

const char* kMessages[] = {
    "From: Alice <alice@x.test>\r\nSubject: report\r\nDate: Mon, 01 Jan 2024 10:00:00 +0100\r\n\r\nquick fox\r\n",
    ("From: b@y.test\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
     "--b\r\nContent-Transfer-Encoding: base64\r\n\r\nbGF6eSBkb2c=\r\n--b--\r\n"),
    "Subject: x\r\n\r\n",
};

std::vector<MessageInfo> infos() {
  std::vector<MessageInfo> v(3);
  for (std::uint32_t i = 0; i < 3; ++i) {
    v[i].uid = 2 * i + 3;
    v[i].flags = Flags(i * 5);
    v[i].size = 100 * i;
    v[i].internaldate = 1700000000 + std::int64_t(i) * 86400 * 40;
    v[i].modseq = 4 * i + 1;
  }
  v[1].keywords = {"$Work"};
  return v;
}

std::vector<MailboxInfo> boxes() {
  std::vector<MailboxInfo> v;
  for (const char* n : {"INBOX", "Sent", "Work", "Work/Old", "Work/New/Deep", "a/b/c/d"}) {
    MailboxInfo b;
    b.name = n;
    b.subscribed = v.size() % 2 == 0;
    b.special_use = v.size() == 1 ? SpecialUse::Sent : SpecialUse::None;
    v.push_back(b);
  }
  return v;
}

void search(const ip::Command& c, std::size_t first) {
  static const auto msgs = infos();
  const std::vector<std::uint32_t> saved = {5, 9};
  auto s = Search::parse(c.args, first, SearchScope{3, 7, &saved});
  if (!s) return;
  std::vector<std::uint32_t> hits;
  static const std::vector<mime::Message> parsed = [] {
    std::vector<mime::Message> v;
    for (const char* m : kMessages) v.push_back(mime::parse(m));
    return v;
  }();
  static const std::vector<mime::Message> heads = [] {
    std::vector<mime::Message> v;
    for (const char* m : kMessages) v.push_back(mime::parse(header_block(m)));
    return v;
  }();
  static const std::vector<std::string> envelopes = [] {
    std::vector<std::string> v;
    for (const auto& m : parsed) v.push_back(ip::envelope(m));
    return v;
  }();
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    const bool hit = s->matches(msgs[i], std::uint32_t(i + 1), &parsed[i], kMessages[i]);
    if (hit) hits.push_back(std::uint32_t(i + 1));
    // Without BODY/TEXT the session hands over the header block alone: it
    // must answer exactly as the whole message does.
    if (!s->needs_body() && hit != s->matches(msgs[i], std::uint32_t(i + 1), &heads[i], header_block(kMessages[i])))
      std::abort();
    // With the ENVELOPE cached, SENT*/SUBJECT may be answered from it
    // without the message: the answer must be the message's.
    MessageInfo cached = msgs[i];
    cached.envelope = envelopes[i];
    if (s->from_envelope(cached) && hit != s->matches(cached, std::uint32_t(i + 1), nullptr, {})) std::abort();
  }
  SearchReturn all_count = s->ret();
  all_count.count = true;
  const std::string text = esearch_response(c.tag, false, all_count, hits, std::nullopt);
  if (text.find(" COUNT " + std::to_string(hits.size())) == std::string::npos) std::abort();
  (void)saved_result(s->ret(), hits);
}

void list(const ip::Command& c) {
  auto req = parse_list(c.args);
  if (!req) return;
  std::vector<std::string> patterns;
  for (const auto& p : req->patterns) patterns.push_back(req->reference + p);
  std::set<std::string> seen;
  for (const auto& e : list_mailboxes(*req, patterns, boxes(), false, c.tag.size() % 2 == 0)) {
    if (!seen.insert(e.name).second) std::abort();
    bool matched = false;
    for (const auto& p : patterns) matched = matched || list_match(p, e.name);
    if (!matched) std::abort();
  }
}

void condstore(const ip::Command& c) {
  for (const auto& a : c.args) {
    if (!a.is_list()) continue;
    if (auto p = parse_select_params(a); p && p->qresync && p->qresync->known_uids) {
      std::vector<std::uint32_t> uids;
      for (const auto& r : p->qresync->known_uids->resolve(50))
        for (std::uint32_t u = r.lo; u <= r.hi && uids.size() < 64; ++u) uids.push_back(u);
      const std::string text = vanished_response(uids, true);
      if (!uids.empty() && !ip::SeqSet::parse(text.substr(21, text.size() - 23))) std::abort();
    }
    (void)parse_fetch_modifiers(a);
    (void)parse_store_modifiers(a);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  ip::ParserOptions o;
  o.max_line = 2048;
  o.max_literal = 256;
  o.max_append = 1024;
  o.max_depth = 8;
  o.max_args = 200;
  ip::Parser p(o);
  p.feed(std::string_view(reinterpret_cast<const char*>(data), size));
  for (int n = 0; n < 32; ++n) {
    ip::Event e = p.next();
    if (e.kind == ip::Event::Kind::NeedMore || e.fatal) break;
    if (e.kind != ip::Event::Kind::Command) continue;
    const auto& c = e.command;
    const bool uid = c.name == "UID" && !c.args.empty();
    if (c.name == "SEARCH") search(c, 0);
    else if (uid && c.args[0].text == "SEARCH") search(c, 1);
    else if (c.name == "LIST") list(c);
    else condstore(c);
  }
  return 0;
}

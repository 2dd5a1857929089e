// See search.hpp (RFC 9051 §6.4.4, RFC 4731, RFC 5182, RFC 7162 §3.1.5).
// Text keys match case-insensitively (ASCII folding, as RFC 9051 §6.4.4
// asks at least) against RFC 2047-decoded header values and the decoded
// text of the message's text parts.
#include "store/imap/search.hpp"
#include "common/text.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>

#include "common/proto/imap/structure.hpp"
#include "common/proto/mime/mime.hpp"

namespace moat::store::imap {
namespace {

namespace ip = proto::imap;
using K = SearchKey::Kind;

bool icontains(std::string_view hay, std::string_view needle) {
  if (needle.empty()) return true;
  auto eq = [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  };
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), eq) != hay.end();
}

std::int64_t days_from_civil(int y, int m, int d) {  // H. Hinnant's algorithm, proleptic Gregorian
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = unsigned(y - era * 400);
  const unsigned doy = unsigned((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1);
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return std::int64_t(era) * 146097 + std::int64_t(doe) - 719468;
}

int month_index(std::string_view m) {
  static const char* names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
  const std::string u = upper(m);
  for (int i = 0; i < 12; ++i)
    if (u == names[i]) return i + 1;
  return 0;
}

std::optional<std::int64_t> civil(int d, std::string_view mon, int y) {
  const int m = month_index(mon);
  if (m == 0 || d < 1 || d > 31 || y < 1 || y > 9999) return std::nullopt;
  return days_from_civil(y, m, d);
}

std::optional<std::uint64_t> number(const ip::Arg& a) {
  if (a.is_list() || a.text.empty() || a.text.size() > 20) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : a.text) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto d = std::uint64_t(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

const std::pair<std::string_view, Flags> kFlagKeys[] = {
    {"ANSWERED", kAnswered}, {"DELETED", kDeleted}, {"DRAFT", kDraft}, {"FLAGGED", kFlagged}, {"SEEN", kSeen}};

class KeyParser {
 public:
  KeyParser(const std::vector<ip::Arg>& args, const SearchScope& scope) : args_(args), scope_(scope) {}

  // One key at args_[i]; advances i.
  Result<SearchKey> key(std::size_t& i, std::size_t depth) {
    if (depth > Search::kMaxDepth) return bad("search keys nested too deeply");
    if (i >= args_.size()) return bad("missing search key");
    const ip::Arg& a = args_[i++];
    if (a.is_list()) return list(a.list, depth);
    if (a.is_string()) return bad("search key expected");
    const std::string k = upper(a.text);
    SearchKey out;
    if (k == "ALL" || k == "OLD") return out;                       // no \Recent here
    if (k == "NEW" || k == "RECENT") return SearchKey{K::None, 0, {}, {}, 0, {}, {}};
    for (const auto& [name, flag] : kFlagKeys) {
      if (k == name) return SearchKey{K::Flag, flag, {}, {}, 0, {}, {}};
      if (k == "UN" + std::string(name)) return SearchKey{K::NoFlag, flag, {}, {}, 0, {}, {}};
    }
    if (k == "KEYWORD" || k == "UNKEYWORD") return text_key(k == "KEYWORD" ? K::Keyword : K::NoKeyword, i);
    if (k == "LARGER" || k == "SMALLER") return number_key(k == "LARGER" ? K::Larger : K::Smaller, i);
    if (k == "MODSEQ") return modseq(i);
    if (k == "BEFORE" || k == "ON" || k == "SINCE") return date(k == "BEFORE" ? K::Before : k == "ON" ? K::On : K::Since, i);
    if (k == "SENTBEFORE" || k == "SENTON" || k == "SENTSINCE")
      return date(k == "SENTBEFORE" ? K::SentBefore : k == "SENTON" ? K::SentOn : K::SentSince, i);
    if (k == "FROM" || k == "TO" || k == "CC" || k == "BCC" || k == "SUBJECT") {
      auto r = text_key(K::Header, i);
      if (r) r->field = k;
      return r;
    }
    if (k == "HEADER") {
      if (i >= args_.size() || args_[i].is_list()) return bad("HEADER field-name string");
      std::string field = args_[i++].text;
      auto r = text_key(K::Header, i);
      if (r) r->field = std::move(field);
      return r;
    }
    if (k == "BODY" || k == "TEXT") return text_key(k == "BODY" ? K::Body : K::Text, i);
    if (k == "NOT") {
      auto inner = key(i, depth + 1);
      if (!inner) return inner;
      SearchKey n{K::Not, 0, {}, {}, 0, {}, {}};
      n.kids.push_back(std::move(*inner));
      return n;
    }
    if (k == "OR") {
      auto l = key(i, depth + 1);
      if (!l) return l;
      auto r = key(i, depth + 1);
      if (!r) return r;
      SearchKey n{K::Or, 0, {}, {}, 0, {}, {}};
      n.kids.push_back(std::move(*l));
      n.kids.push_back(std::move(*r));
      return n;
    }
    if (k == "UID") {
      if (i >= args_.size() || args_[i].is_list()) return bad("UID set");
      return set(args_[i++].text, true);
    }
    return set(a.text, false);
  }

  Result<SearchKey> list(const std::vector<ip::Arg>& items, std::size_t depth) {
    if (items.empty()) return bad("empty search key list");
    KeyParser sub(items, scope_);
    SearchKey n{K::And, 0, {}, {}, 0, {}, {}};
    for (std::size_t j = 0; j < items.size();) {
      auto k = sub.key(j, depth + 1);
      if (!k) return k;
      n.kids.push_back(std::move(*k));
    }
    needs_content_ = needs_content_ || sub.needs_content_;
    needs_body_ = needs_body_ || sub.needs_body_;
    uses_modseq_ = uses_modseq_ || sub.uses_modseq_;
    return n;
  }

  bool needs_content_ = false;
  bool needs_body_ = false;
  bool uses_modseq_ = false;

 private:
  static Error bad(std::string text) { return Error{Errc::ParamSyntax, std::move(text)}; }

  Result<SearchKey> text_key(K kind, std::size_t& i) {
    if (i >= args_.size() || args_[i].is_list()) return bad("search key needs a string");
    SearchKey n{kind, 0, {}, args_[i++].text, 0, {}, {}};
    if (kind != K::Keyword && kind != K::NoKeyword) needs_content_ = true;
    if (kind == K::Body || kind == K::Text) needs_body_ = true;
    return n;
  }

  Result<SearchKey> number_key(K kind, std::size_t& i) {
    auto v = i < args_.size() ? number(args_[i]) : std::nullopt;
    if (!v) return bad("search key needs a number");
    ++i;
    return SearchKey{kind, 0, {}, {}, *v, {}, {}};
  }

  // MODSEQ [entry-name entry-type-req] mod-sequence-valzer (RFC 7162 §3.1.5).
  // Per-flag entries are not kept apart, so the entry name only has to be well formed.
  Result<SearchKey> modseq(std::size_t& i) {
    if (i < args_.size() && args_[i].is_string()) {
      if (i + 1 >= args_.size()) return bad("MODSEQ entry-name entry-type value");
      const std::string type = upper(args_[i + 1].text);
      if (type != "PRIV" && type != "SHARED" && type != "ALL") return bad("bad MODSEQ entry type");
      i += 2;
    }
    uses_modseq_ = true;
    return number_key(K::ModSeq, i);
  }

  Result<SearchKey> date(K kind, std::size_t& i) {
    if (i >= args_.size() || args_[i].is_list()) return bad("search key needs a date");
    auto d = parse_search_date(args_[i++].text);
    if (!d) return bad("bad date");
    if (kind == K::SentBefore || kind == K::SentOn || kind == K::SentSince) needs_content_ = true;
    return SearchKey{kind, 0, {}, {}, std::uint64_t(*d), {}, {}};
  }

  Result<SearchKey> set(const std::string& text, bool uid) {
    if (text == "$") {
      // RFC 5182: the UIDs the last SEARCH RETURN (SAVE) kept, whatever they are now
      SearchKey n{K::Uid, 0, {}, {}, 0, {}, {}};
      if (scope_.saved)
        for (auto u : *scope_.saved) n.ranges.push_back({u, u});
      return n;
    }
    auto s = ip::SeqSet::parse(text);
    if (!s) return bad(uid ? "bad UID set" : "unknown search key");
    SearchKey n{uid ? K::Uid : K::Seq, 0, {}, {}, 0, {}, {}};
    n.ranges = s->resolve(uid ? scope_.max_uid : scope_.messages);
    return n;
  }

  const std::vector<ip::Arg>& args_;
  const SearchScope& scope_;
};

Result<SearchReturn> parse_return(const ip::Arg& opts) {
  SearchReturn r;
  r.esearch = true;
  if (!opts.is_list()) return Error{Errc::ParamSyntax, "RETURN (options)"};
  for (const auto& o : opts.list) {
    const std::string u = o.is_list() ? std::string() : upper(o.text);
    if (u == "MIN") r.min = true;
    else if (u == "MAX") r.max = true;
    else if (u == "COUNT") r.count = true;
    else if (u == "ALL") r.all = true;
    else if (u == "SAVE") r.save = true;
    else return Error{Errc::ParamSyntax, "unknown RETURN option"};
  }
  if (!r.min && !r.max && !r.count && !r.all && !r.save) r.all = true;  // RETURN () is RETURN (ALL)
  return r;
}

std::string header_text(const mime::Message& msg, const std::string& field) {
  std::string all;
  for (const auto& v : msg.headers(field)) all += v + "\n";
  return all;
}

std::string body_text(const mime::Message& msg, std::string_view content) {
  std::string all;
  for (std::size_t idx : msg.text_parts()) all += mime::part_text(content, msg.parts[idx]).data + "\n";
  if (msg.text_parts().empty() && !msg.parts.empty()) {
    const auto& root = msg.parts.front();
    all.assign(content.substr(root.body_begin, root.body_end - root.body_begin));
  }
  return all;
}

struct Eval {
  const MessageInfo& m;
  std::uint32_t seq;
  const mime::Message* parsed;
  std::string_view content;
  // Decoded and ASCII-lowered once per message however many keys read them
  // (OR/NOT trees can name BODY or TEXT many times); a key is then a plain
  // find() (memchr-driven) instead of a folding compare at every byte: SEARCH
  // BODY over a mailbox spent most of its time there (bench/imap).
  mutable std::optional<std::string> body_cache, header_cache;
  mutable std::optional<std::int64_t> sent_cache;

  std::int64_t sent_day() const {
    if (!sent_cache) {
      auto d = parsed ? parse_header_date(parsed->date()) : std::nullopt;
      sent_cache = d ? *d : INT64_MIN;
    }
    return *sent_cache;
  }
  const std::string& body() const {
    if (!body_cache) body_cache = lower(body_text(*parsed, content));
    return *body_cache;
  }
  const std::string& header() const {
    if (!header_cache) header_cache = lower(mime::decode_header(content.substr(0, parsed->parts.front().body_begin)).data);
    return *header_cache;
  }

  bool operator()(const SearchKey& k) const {
    const auto day = std::int64_t(k.number);
    const std::int64_t internal_day = m.internaldate >= 0 ? m.internaldate / 86400 : (m.internaldate - 86399) / 86400;
    switch (k.kind) {
      case K::All: return true;
      case K::None: return false;
      case K::Flag: return (m.flags & k.flag) != 0;
      case K::NoFlag: return (m.flags & k.flag) == 0;
      case K::Keyword:
      case K::NoKeyword: {
        const bool has = std::any_of(m.keywords.begin(), m.keywords.end(),
                                     [&](const std::string& w) { return upper(w) == upper(k.text); });
        return has == (k.kind == K::Keyword);
      }
      case K::Larger: return m.size > k.number;
      case K::Smaller: return m.size < k.number;
      case K::Seq: return ip::contains(k.ranges, seq);
      case K::Uid: return ip::contains(k.ranges, m.uid);
      case K::Before: return internal_day < day;
      case K::On: return internal_day == day;
      case K::Since: return internal_day >= day;
      case K::SentBefore: return sent_day() != INT64_MIN && sent_day() < day;
      case K::SentOn: return sent_day() == day;
      case K::SentSince: return sent_day() != INT64_MIN && sent_day() >= day;
      case K::Header: return parsed && icontains(header_text(*parsed, k.field), k.text) &&
                             (!k.text.empty() || !parsed->headers(k.field).empty());
      case K::Body: return parsed && body().find(lower(k.text)) != std::string::npos;
      case K::Text: return parsed && (header().find(lower(k.text)) != std::string::npos ||
                                      body().find(lower(k.text)) != std::string::npos);
      case K::ModSeq: return m.modseq >= k.number;
      case K::Not: return !(*this)(k.kids.front());
      case K::Or: return (*this)(k.kids[0]) || (*this)(k.kids[1]);
      case K::And:
        return std::all_of(k.kids.begin(), k.kids.end(), [this](const SearchKey& c) { return (*this)(c); });
    }
    return false;
  }
};

}  // namespace

std::optional<std::int64_t> parse_search_date(std::string_view s) {
  // date = date-text / DQUOTE date-text DQUOTE; date-text = date-day "-" date-month "-" date-year
  int d = 0, y = 0, used = 0;
  char mon[4] = {};
  const std::string text(s);
  if (std::sscanf(text.c_str(), "%2d-%3[A-Za-z]-%4d%n", &d, mon, &y, &used) != 3 || std::size_t(used) != text.size())
    return std::nullopt;
  return civil(d, mon, y);
}

// The header of a message with the blank line that ends it (all of it when
// there is no body).
std::string_view header_block(std::string_view m) {
  if (m.starts_with("\r\n")) return m.substr(0, 2);
  if (m.starts_with("\n")) return m.substr(0, 1);
  const auto crlf = m.find("\r\n\r\n");
  const auto lf = m.find("\n\n");
  std::size_t end = m.size();
  if (crlf != std::string_view::npos) end = crlf + 4;
  if (lf != std::string_view::npos && lf + 2 < end) end = lf + 2;
  return m.substr(0, end);
}

std::optional<std::int64_t> parse_header_date(std::string_view s) {
  // [day-of-week ","] day month year time zone (RFC 5322 §3.3); only the date counts.
  const std::string text(s);
  const char* p = text.c_str();
  if (const auto comma = text.find(','); comma != std::string::npos && comma < 12) p += comma + 1;
  int d = 0, y = 0;
  char mon[4] = {};
  if (std::sscanf(p, " %2d %3[A-Za-z] %4d", &d, mon, &y) != 3) return std::nullopt;
  if (y < 50) y += 2000;                       // obs-year (RFC 5322 §4.3)
  else if (y < 1000) y += 1900;
  return civil(d, mon, y);
}

Result<Search> Search::parse(const std::vector<ip::Arg>& args, std::size_t first, const SearchScope& scope) {
  Search s;
  std::size_t i = first;
  if (i + 1 < args.size() && !args[i].is_list() && upper(args[i].text) == "RETURN") {
    auto r = parse_return(args[i + 1]);
    if (!r) return r.error();
    s.ret_ = *r;
    i += 2;
  }
  if (i + 1 < args.size() && !args[i].is_list() && !args[i].is_string() && upper(args[i].text) == "CHARSET") {
    const std::string cs = upper(args[i + 1].text);
    if (cs != "UTF-8" && cs != "US-ASCII") return Error{Errc::NotImplemented, "unsupported charset"};
    i += 2;
  }
  if (i >= args.size()) return Error{Errc::ParamSyntax, "SEARCH needs a key"};
  KeyParser kp(args, scope);
  SearchKey root{K::And, 0, {}, {}, 0, {}, {}};
  while (i < args.size()) {
    auto k = kp.key(i, 0);
    if (!k) return k.error();
    root.kids.push_back(std::move(*k));
  }
  s.root_ = std::move(root);
  s.needs_content_ = kp.needs_content_;
  s.needs_body_ = kp.needs_body_;
  s.uses_modseq_ = kp.uses_modseq_;
  return s;
}

bool Search::matches(const MessageInfo& m, std::uint32_t seq, const mime::Message* parsed, std::string_view content) const {
  return Eval{m, seq, parsed, content, {}, {}, {}}(root_);
}

std::string search_response(const std::vector<std::uint32_t>& hits, std::optional<std::uint64_t> modseq) {
  std::string out = "* SEARCH";
  for (auto n : hits) out += " " + std::to_string(n);
  if (modseq && !hits.empty()) out += " (MODSEQ " + std::to_string(*modseq) + ")";
  return out + "\r\n";
}

std::string esearch_response(std::string_view tag, bool uid, const SearchReturn& ret,
                             const std::vector<std::uint32_t>& hits, std::optional<std::uint64_t> modseq) {
  if (ret.save && !ret.min && !ret.max && !ret.count && !ret.all) return {};
  std::string out = "* ESEARCH (TAG ";
  ip::append_string(out, tag);
  out += ")";
  if (uid) out += " UID";
  if (!hits.empty() && ret.min) out += " MIN " + std::to_string(hits.front());
  if (!hits.empty() && ret.max) out += " MAX " + std::to_string(hits.back());
  if (ret.count) out += " COUNT " + std::to_string(hits.size());
  if (!hits.empty() && ret.all) out += " ALL " + ip::format_compact(hits);
  if (modseq && !hits.empty()) out += " MODSEQ " + std::to_string(*modseq);
  return out + "\r\n";
}

std::vector<std::uint32_t> saved_result(const SearchReturn& ret, const std::vector<std::uint32_t>& hit_uids) {
  if (hit_uids.empty() || ret.all || ret.count || (!ret.min && !ret.max)) return hit_uids;
  std::vector<std::uint32_t> out;
  if (ret.min) out.push_back(hit_uids.front());
  if (ret.max && (out.empty() || out.front() != hit_uids.back())) out.push_back(hit_uids.back());
  return out;
}

}  // namespace moat::store::imap

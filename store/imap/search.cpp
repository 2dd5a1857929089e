// See search.hpp (RFC 9051 §6.4.4, RFC 4731, RFC 5182, RFC 7162 §3.1.5).
// Text keys are substring matches on decoded text, as Dovecot's: header
// values RFC 2047-decoded, bodies of text/* and message/* parts transfer-
// decoded and converted to UTF-8 (HTML as written, tags included), both
// case-folded (ASCII, plus Unicode simple lowercase for other characters).
#include "store/imap/search.hpp"
#include "common/text.hpp"

#include <locale.h>  // newlocale (POSIX)
#include <wctype.h>  // towlower_l (POSIX)

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

// The C.UTF-8 locale for towlower_l (built into glibc >= 2.35); null when
// missing, and then only ASCII folds.
locale_t utf8_locale() {
  static const locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t(nullptr));
  return loc;
}

// Length of the UTF-8 sequence at s[i] and its code point; 0 when it is not
// a well-formed sequence (the byte is then copied as it is).
std::size_t utf8_at(std::string_view s, std::size_t i, char32_t& c) {
  const auto b = static_cast<unsigned char>(s[i]);
  const std::size_t n = b >= 0xF0 && b < 0xF5 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  c = n == 2 ? b & 0x1F : n == 3 ? b & 0x0F : b & 0x07;
  for (std::size_t k = 1; k < n; ++k) {
    const auto t = static_cast<unsigned char>(s[i + k]);
    if ((t & 0xC0) != 0x80) return 0;
    c = (c << 6) | (t & 0x3F);
  }
  const bool overlong = (n == 3 && c < 0x800) || (n == 4 && c < 0x10000);
  if (overlong || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000)) return 0;
  return n;
}

}  // namespace

// Case folding for text keys: ASCII bytes lowered in place, any other
// character through towlower (Unicode simple lowercase mapping), so "GRÜSSE"
// finds "grüsse" as Dovecot's i;unicode-casemap does (which also decomposes:
// "e" finds "é" there, not here). Most mail is ASCII: one pass, no decoding.
std::string fold_case(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const locale_t loc = utf8_locale();
  for (std::size_t i = 0; i < s.size();) {
    const char b = s[i];
    char32_t c = 0;
    const std::size_t n = static_cast<unsigned char>(b) >= 0x80 && loc ? utf8_at(s, i, c) : 0;
    if (n == 0) {
      out += ascii_lower(b);
      ++i;
      continue;
    }
    append_utf8(out, std::uint32_t(towlower_l(wint_t(c), loc)));
    i += n;
  }
  return out;
}

namespace {

std::int64_t days_from_civil(int y, int m, int d) {  // H. Hinnant's algorithm, proleptic Gregorian
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = unsigned(y - era * 400);
  const unsigned doy = unsigned((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1);
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return std::int64_t(era) * 146097 + std::int64_t(doe) - 719468;
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
      if (k != "SUBJECT") envelope_ok_ = false;  // addresses: the header's text, not the ENVELOPE's parse
      else uses_subject_ = true;
      return r;
    }
    if (k == "HEADER") {
      envelope_ok_ = false;
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
    envelope_ok_ = envelope_ok_ && sub.envelope_ok_;
    uses_subject_ = uses_subject_ || sub.uses_subject_;
    return n;
  }

  bool needs_content_ = false;
  bool needs_body_ = false;
  bool uses_modseq_ = false;
  bool envelope_ok_ = true;  // SENT* and SUBJECT only: the cached ENVELOPE answers them
  bool uses_subject_ = false;

 private:
  static Error bad(std::string text) { return Error{Errc::ParamSyntax, std::move(text)}; }

  Result<SearchKey> text_key(K kind, std::size_t& i) {
    if (i >= args_.size() || args_[i].is_list()) return bad("search key needs a string");
    SearchKey n{kind, 0, {}, args_[i++].text, 0, {}, {}};
    if (kind != K::Keyword && kind != K::NoKeyword) needs_content_ = true;
    if (kind == K::Body || kind == K::Text) {
      needs_body_ = true;
      envelope_ok_ = false;
    }
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

// Parts whose body BODY and TEXT read: text/* and message/* leaves, as
// Dovecot's message_search (an unlabelled part is text/plain, RFC 2045
// §5.2). Multipart preambles and epilogues, images, archives and other
// application/* parts are not text a client shows.
bool searchable(const mime::Part& p) { return p.children.empty() && (p.type == "text" || p.type == "message"); }

// The body text of a message: each searchable part transfer-decoded and
// converted to UTF-8. HTML stays markup (not mime::part_text's rendering):
// the body is what the message says, and a link's address ("href=...
// unsubscribe") is part of it; Dovecot matches it too. Parts are joined
// with NUL, which no search string holds, so no match spans two parts.
std::string body_text(const mime::Message& msg, std::string_view content) {
  std::string all;
  for (const auto& p : msg.parts) {
    if (!searchable(p)) continue;
    const auto raw = mime::decode_part(content, p);
    all += mime::to_utf8(raw.data, p.charset).data;
    all += '\0';
  }
  return all;
}

// Every header field of every part, "Name: decoded value" a line: TEXT
// covers "the header (including MIME header fields)" (RFC 9051 §6.4.4), and
// an attached message's header is part of the text too.
std::string all_headers(const mime::Message& msg) {
  std::string all;
  for (const auto& p : msg.parts)
    for (const auto& f : p.fields) {
      all += f.name;
      all += ": ";
      const std::string v = f.value();
      const bool plain = v.find("=?") == std::string::npos &&
                         std::none_of(v.begin(), v.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
      all += plain ? v : mime::decode_header(v).data;
      all += '\n';
    }
  return all;
}

std::string_view trim_blanks(std::string_view s) {  // as Message::headers() trims
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// The first two fields of a cached ENVELOPE, "(date subject ...": each
// NIL, a quoted string or a literal, as structure.cpp writes them.
std::optional<std::string> read_nstring(std::string_view e, std::size_t& i, bool& ok) {
  ok = false;
  if (e.substr(i, 3) == "NIL") {
    i += 3;
    ok = true;
    return std::nullopt;
  }
  std::string out;
  if (i < e.size() && e[i] == '"') {
    for (++i; i < e.size() && e[i] != '"'; ++i) {
      if (e[i] == '\\' && i + 1 < e.size()) ++i;
      out += e[i];
    }
    if (i >= e.size()) return std::nullopt;
    ++i;
    ok = true;
    return out;
  }
  if (i < e.size() && e[i] == '{') {
    const auto close = e.find("}\r\n", i);
    if (close == std::string_view::npos) return std::nullopt;
    std::size_t n = 0;
    for (std::size_t k = i + 1; k < close; ++k) {
      if (e[k] < '0' || e[k] > '9' || n > e.size()) return std::nullopt;
      n = n * 10 + std::size_t(e[k] - '0');
    }
    if (close + 3 + n > e.size()) return std::nullopt;
    out = e.substr(close + 3, n);
    i = close + 3 + n;
    ok = true;
    return out;
  }
  return std::nullopt;
}

struct Eval {
  const MessageInfo& m;
  std::uint32_t seq;
  const mime::Message* parsed;
  std::string_view content;
  // Decoded and case-folded once per message however many keys read them
  // (OR/NOT trees can name BODY or TEXT many times); a key is then a plain
  // find() (memchr-driven) instead of a folding compare at every byte: SEARCH
  // BODY over a mailbox spent most of its time there (bench/imap).
  mutable std::optional<std::string> body_cache, header_cache;
  mutable std::optional<std::int64_t> sent_cache;

  std::int64_t internal_day() const {
    return m.internaldate >= 0 ? m.internaldate / 86400 : (m.internaldate - 86399) / 86400;
  }
  // The Date field's day; without a Date field, or one that cannot be read,
  // the INTERNALDATE's (the "sent date" of RFC 5256 §2.2, SORT's).
  // Without the message, the cached ENVELOPE's Date (Search::from_envelope()).
  std::int64_t sent_day() const {
    if (!sent_cache) {
      std::optional<std::int64_t> d;
      if (parsed) {
        d = parse_header_date(parsed->date());
      } else if (auto e = envelope_fields(m.envelope); e && e->date) {
        d = parse_header_date(*e->date);
      }
      sent_cache = d ? *d : internal_day();
    }
    return *sent_cache;
  }
  // SUBJECT from the ENVELOPE: its Subject is the field unfolded, still
  // RFC 2047-encoded, as Message::headers() starts from.
  bool envelope_subject_has(const SearchKey& k) const {
    auto e = envelope_fields(m.envelope);
    if (!e || !e->subject) return false;
    if (k.text.empty()) return true;  // SUBJECT "": the field exists
    const std::string v(trim_blanks(mime::decode_header(*e->subject).data));
    return fold_case(v + "\n").find(fold_case(k.text)) != std::string::npos;
  }
  const std::string& body() const {
    if (!body_cache) body_cache = fold_case(body_text(*parsed, content));
    return *body_cache;
  }
  const std::string& header() const {
    if (!header_cache) header_cache = fold_case(all_headers(*parsed));
    return *header_cache;
  }
  bool header_has(const SearchKey& k) const {
    if (k.text.empty()) return !parsed->headers(k.field).empty();  // "HEADER X-Tag """: the field exists
    return fold_case(header_text(*parsed, k.field)).find(fold_case(k.text)) != std::string::npos;
  }

  bool operator()(const SearchKey& k) const {
    const auto day = std::int64_t(k.number);
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
      case K::Before: return internal_day() < day;
      case K::On: return internal_day() == day;
      case K::Since: return internal_day() >= day;
      case K::SentBefore: return sent_day() < day;
      case K::SentOn: return sent_day() == day;
      case K::SentSince: return sent_day() >= day;
      case K::Header:
        if (!parsed && k.field == "SUBJECT" && !m.envelope.empty()) return envelope_subject_has(k);
        return parsed && header_has(k);
      case K::Body: return parsed && body().find(fold_case(k.text)) != std::string::npos;
      case K::Text: return parsed && (header().find(fold_case(k.text)) != std::string::npos ||
                                      body().find(fold_case(k.text)) != std::string::npos);
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

int month_index(std::string_view m) {
  static const char* names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
  const std::string u = upper(m);
  for (int i = 0; i < 12; ++i)
    if (u == names[i]) return i + 1;
  return 0;
}

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

namespace {

// The next run of letters or of digits in s from i (RFC 5322 comments
// skipped, everything else separates): "Tue, 3 Dec 2002" gives "Tue", "3",
// "Dec", "2002". Empty at the end.
std::string_view date_token(std::string_view s, std::size_t& i) {
  int comment = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '(') ++comment;
    else if (c == ')' && comment > 0) --comment;
    else if (comment == 0 && std::isalnum(static_cast<unsigned char>(c))) break;
  }
  const std::size_t start = i;
  const bool digits = i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]));
  while (i < s.size() && std::isalnum(static_cast<unsigned char>(s[i])) &&
         bool(std::isdigit(static_cast<unsigned char>(s[i]))) == digits)
    ++i;
  return s.substr(start, i - start);
}

std::optional<int> small_number(std::string_view t, std::size_t min_len, std::size_t max_len) {
  if (t.size() < min_len || t.size() > max_len || !std::isdigit(static_cast<unsigned char>(t.front()))) return std::nullopt;
  int v = 0;
  for (char c : t) v = v * 10 + (c - '0');
  return v;
}

}  // namespace

namespace {

// "2002/09/14 Sat 02:29:32 CDT" (a spam tool's): year, month and day as numbers.
std::optional<std::int64_t> numeric_date(int y, std::string_view s, std::size_t i) {
  const auto m = small_number(date_token(s, i), 1, 2);
  const auto d = small_number(date_token(s, i), 1, 2);
  if (!m || !d || *m < 1 || *m > 12 || *d < 1 || *d > 31) return std::nullopt;
  return days_from_civil(y, *m, *d);
}

// asctime's "Sat Sep 21 08:18:08 2002": the year after the time.
std::optional<std::int64_t> asctime_date(std::string_view mon, std::string_view s, std::size_t i) {
  const auto d = small_number(date_token(s, i), 1, 2);
  for (std::string_view t = date_token(s, i); d && !t.empty(); t = date_token(s, i))
    if (t.size() == 4) {
      const auto y = small_number(t, 4, 4);
      return y ? civil(*d, mon.substr(0, 3), *y) : std::nullopt;
    }
  return std::nullopt;
}

}  // namespace

std::optional<std::int64_t> parse_header_date(std::string_view s) {
  // [day-of-week ","] day month year time zone (RFC 5322 §3.3); only the
  // date counts. Tolerant of what mailers write: no comma, full month names
  // ("3 September 2002"), comments anywhere, one-digit time fields (which
  // Dovecot refuses), asctime's order and "2002/09/14".
  std::size_t i = 0;
  std::string_view t = date_token(s, i);
  if (!t.empty() && !std::isdigit(static_cast<unsigned char>(t.front()))) {
    if (month_index(t.substr(0, 3)) != 0 && t.size() >= 3) return asctime_date(t, s, i);
    t = date_token(s, i);  // day of week
    if (month_index(t.substr(0, 3)) != 0 && t.size() >= 3) return asctime_date(t, s, i);
  }
  if (t.size() == 4) {
    const auto y = small_number(t, 4, 4);
    return y ? numeric_date(*y, s, i) : std::nullopt;
  }
  const auto d = small_number(t, 1, 2);
  const std::string_view mon = date_token(s, i);
  const std::string_view year = date_token(s, i);
  auto y = small_number(year, 2, 4);
  if (!d || mon.size() < 3 || !y) return std::nullopt;
  // obs-year (RFC 5322 §4.3): two digits 00-49 are 20xx, 50-99 19xx, three
  // digits 1900 + n; four are the year as written (the "0102" of a
  // Y2K-broken mailer is the year 102, as the grammar says).
  if (year.size() == 2) *y += *y < 50 ? 2000 : 1900;
  else if (year.size() == 3) *y += 1900;
  return civil(*d, mon.substr(0, 3), *y);
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
  s.envelope_ok_ = kp.envelope_ok_;
  s.uses_subject_ = kp.uses_subject_;
  return s;
}

std::optional<EnvelopeFields> envelope_fields(std::string_view e) {
  if (e.empty() || e[0] != '(') return std::nullopt;
  std::size_t i = 1;
  bool ok = false;
  EnvelopeFields f;
  f.date = read_nstring(e, i, ok);
  if (!ok || i >= e.size() || e[i] != ' ') return std::nullopt;
  ++i;
  f.subject_folded = i < e.size() && e[i] == '{';
  f.subject = read_nstring(e, i, ok);
  if (!ok) return std::nullopt;
  return f;
}

bool Search::from_envelope(const MessageInfo& m) const {
  if (!needs_content_ || !envelope_ok_ || m.envelope.empty()) return false;
  const auto f = envelope_fields(m.envelope);
  return f && !(uses_subject_ && f->subject_folded);
}

bool Search::matches(const MessageInfo& m, std::uint32_t seq, const mime::Message* parsed, std::string_view content) const {
  return Eval{m, seq, parsed, content, {}, {}, {}}(root_);
}

std::string search_response(const std::vector<std::uint32_t>& hits, std::optional<std::uint64_t> modseq) {
  std::string out = "* SEARCH";
  for (auto n : hits) {  // appended piece by piece: ' ' + to_string(n) trips g++ 12's -Wrestrict at -O3
    out += ' ';
    out += std::to_string(n);
  }
  if (modseq && !hits.empty()) {
    out += " (MODSEQ ";
    out += std::to_string(*modseq);
    out += ')';
  }
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

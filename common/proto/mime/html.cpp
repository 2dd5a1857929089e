// HTML → text for the content scanners and URL extraction (RFC 3986 syntax,
// WHATWG-style leniency: browsers follow what they can parse, so must we).
// Hostile input (mailparser's htmllargecallstack.eml): one linear pass, no
// recursion, no backtracking, every output capped.
#include <algorithm>
#include <iterator>

#include "common/proto/mime/detail.hpp"
#include "common/text.hpp"

namespace moat::mime {
namespace {

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

// Case-insensitive search for an ASCII needle (lower-case) from pos.
std::size_t ifind(std::string_view hay, std::string_view needle, std::size_t pos) {
  if (needle.empty() || hay.size() < needle.size()) return std::string_view::npos;
  for (std::size_t i = pos; i + needle.size() <= hay.size(); ++i) {
    if (ascii_lower(hay[i]) != needle[0]) continue;
    std::size_t k = 1;
    while (k < needle.size() && ascii_lower(hay[i + k]) == needle[k]) ++k;
    if (k == needle.size()) return i;
  }
  return std::string_view::npos;
}

struct Entity { std::string_view name; std::uint32_t cp; };
constexpr Entity kEntities[] = {
    {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}, {"nbsp", 0xA0}, {"copy", 0xA9},
    {"reg", 0xAE}, {"trade", 0x2122}, {"hellip", 0x2026}, {"mdash", 0x2014}, {"ndash", 0x2013},
    {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"ldquo", 0x201C}, {"rdquo", 0x201D}, {"bull", 0x2022},
    {"euro", 0x20AC}, {"pound", 0xA3}, {"yen", 0xA5}, {"cent", 0xA2}, {"sect", 0xA7}, {"deg", 0xB0},
    {"middot", 0xB7}, {"laquo", 0xAB}, {"raquo", 0xBB}, {"times", 0xD7}, {"divide", 0xF7}, {"shy", 0xAD},
    {"zwnj", 0x200C}, {"zwj", 0x200D}, {"iexcl", 0xA1}, {"iquest", 0xBF}, {"auml", 0xE4}, {"ouml", 0xF6},
    {"uuml", 0xFC}, {"Auml", 0xC4}, {"Ouml", 0xD6}, {"Uuml", 0xDC}, {"szlig", 0xDF}, {"eacute", 0xE9},
    {"egrave", 0xE8}, {"aacute", 0xE1}, {"agrave", 0xE0}, {"ccedil", 0xE7}, {"ntilde", 0xF1},
};

// Decodes the entity at s[i] == '&'; returns the bytes consumed (0 if none).
std::size_t decode_entity(std::string_view s, std::size_t i, std::string& out) {
  std::size_t j = i + 1;
  if (j < s.size() && s[j] == '#') {
    ++j;
    bool hex = j < s.size() && (s[j] == 'x' || s[j] == 'X');
    if (hex) ++j;
    std::uint32_t cp = 0;
    std::size_t start = j;
    while (j < s.size() && j - start < 8 && (hex ? detail::hex_value(s[j]) >= 0 : is_digit(s[j]))) {
      cp = cp * (hex ? 16 : 10) + std::uint32_t(hex ? detail::hex_value(s[j]) : s[j] - '0');
      ++j;
    }
    if (j == start) return 0;
    if (j < s.size() && s[j] == ';') ++j;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    append_utf8(out, cp);
    return j - i;
  }
  std::size_t start = j;
  while (j < s.size() && j - start < 10 && (is_alpha(s[j]) || is_digit(s[j]))) ++j;
  std::string_view name = s.substr(start, j - start);
  for (const auto& e : kEntities) {
    if (e.name != name) continue;
    if (j < s.size() && s[j] == ';') ++j;
    append_utf8(out, e.cp);
    return j - i;
  }
  return 0;
}

std::string decode_entities(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    if (s[i] == '&') {
      std::size_t n = decode_entity(s, i, out);
      if (n) { i += n; continue; }
    }
    out += s[i++];
  }
  return out;
}

// End of the tag starting at s[i] == '<' (index just past '>'), honouring
// quoted attribute values; npos if the tag never ends.
std::size_t tag_end(std::string_view s, std::size_t i) {
  char quote = 0;
  for (std::size_t j = i + 1; j < s.size(); ++j) {
    char c = s[j];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      // A quote only opens a value right after '='.
      std::size_t k = j;
      while (k > i && is_space(s[k - 1])) --k;
      if (k > i && s[k - 1] == '=') quote = c;
    } else if (c == '>') {
      return j + 1;
    }
  }
  return std::string_view::npos;
}

bool is_block(std::string_view name) {
  static constexpr std::string_view kBlock[] = {"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                                                "table", "hr", "blockquote", "ul", "ol", "title", "pre", "dd",
                                                "dt", "section", "article", "header", "footer", "center", "form"};
  return std::find(std::begin(kBlock), std::end(kBlock), name) != std::end(kBlock);
}

// Appends text with whitespace collapsed: blanks → one space, at most two
// line breaks in a row, no blanks at line starts.
class TextOut {
 public:
  explicit TextOut(std::size_t cap) : cap_(cap) {}
  void text(std::string_view s) {
    for (char c : s) {
      if (is_space(c)) { space_ = true; continue; }
      if (space_ && !out_.empty() && out_.back() != '\n') put(' ');
      space_ = false;
      put(c);
    }
  }
  void line_break() {
    space_ = false;
    if (out_.empty()) return;
    if (out_.back() == '\n' && out_.size() >= 2 && out_[out_.size() - 2] == '\n') return;
    put('\n');
  }
  bool full() const { return out_.size() >= cap_; }
  std::string take() {
    while (!out_.empty() && (out_.back() == '\n' || out_.back() == ' ')) out_.pop_back();
    return std::move(out_);
  }

 private:
  void put(char c) {
    if (out_.size() < cap_) out_ += c;
  }
  std::size_t cap_;
  std::string out_;
  bool space_ = false;
};

}  // namespace

std::string html_to_text(std::string_view s, std::size_t max_out) {
  TextOut out(max_out);
  std::string run;
  std::size_t i = 0;
  while (i < s.size() && !out.full()) {
    char c = s[i];
    if (c == '&') {
      run.clear();
      std::size_t n = decode_entity(s, i, run);
      if (n) {
        // A non-breaking space is a blank for scanning purposes.
        out.text(run == "\xC2\xA0" ? std::string_view(" ") : std::string_view(run));
        i += n;
        continue;
      }
      out.text("&");
      ++i;
      continue;
    }
    if (c != '<') {
      std::size_t next = i;
      while (next < s.size() && s[next] != '<' && s[next] != '&') ++next;
      out.text(s.substr(i, next - i));
      i = next;
      continue;
    }
    if (s.compare(i, 4, "<!--") == 0) {
      std::size_t e = s.find("-->", i + 4);
      i = e == std::string_view::npos ? s.size() : e + 3;
      continue;
    }
    std::size_t j = i + 1;
    bool closing = j < s.size() && s[j] == '/';
    if (closing) ++j;
    if (j >= s.size() || !(is_alpha(s[j]) || s[j] == '!' || s[j] == '?')) {
      out.text("<");  // a lone '<' is text
      ++i;
      continue;
    }
    std::size_t name_begin = j;
    while (j < s.size() && (is_alpha(s[j]) || is_digit(s[j]))) ++j;
    std::string name = lower(s.substr(name_begin, j - name_begin));
    std::size_t end = tag_end(s, i);
    if (end == std::string_view::npos) break;  // an unterminated tag swallows the rest, as in browsers
    i = end;
    if (!closing && (name == "script" || name == "style")) {
      std::size_t e = ifind(s, name == "script" ? "</script" : "</style", i);
      if (e == std::string_view::npos) break;
      std::size_t after = tag_end(s, e);
      i = after == std::string_view::npos ? s.size() : after;
      continue;
    }
    if (is_block(name)) out.line_break();
    else if (name == "td" || name == "th") out.text(" ");
  }
  return out.take();
}

// ------------------------------------------------------------------ URLs ---

namespace {

bool url_char(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u <= 32 || u == 127) return false;
  return c != '<' && c != '>' && c != '"' && c != '\'' && c != '`' && c != '{' && c != '}' && c != '|' &&
         c != '\\' && c != '^';
}

// Lower-cases scheme and host, decodes %XX in the host, drops a default
// port and a trailing dot of the host. Returns "" if not an absolute URL we keep.
std::string normalize_url(std::string_view raw) {
  std::string u;
  for (char c : raw)
    if (c != '\t' && c != '\r' && c != '\n') u += c;  // browsers drop these inside URLs
  std::string_view v = detail::trim(u);
  if (v.substr(0, 2) == "//") return normalize_url("http:" + std::string(v));
  if (v.size() >= 4 && iequals(v.substr(0, 4), "www.")) return normalize_url("http://" + std::string(v));
  std::size_t colon = v.find(':');
  if (colon == std::string_view::npos || colon == 0) return {};
  std::string scheme = lower(v.substr(0, colon));
  if (scheme == "mailto") {
    if (v.size() == colon + 1) return {};
    return "mailto:" + std::string(v.substr(colon + 1));
  }
  if (scheme != "http" && scheme != "https" && scheme != "ftp") return {};
  std::string_view rest = v.substr(colon + 1);
  while (!rest.empty() && (rest.front() == '/' || rest.front() == '\\')) rest.remove_prefix(1);
  std::size_t auth_end = 0;
  while (auth_end < rest.size() && rest[auth_end] != '/' && rest[auth_end] != '?' && rest[auth_end] != '#' &&
         rest[auth_end] != '\\')
    ++auth_end;
  std::string_view authority = rest.substr(0, auth_end);
  std::string_view tail = rest.substr(auth_end);
  std::size_t at = authority.rfind('@');
  std::string_view userinfo = at == std::string_view::npos ? std::string_view{} : authority.substr(0, at + 1);
  std::string_view hostport = at == std::string_view::npos ? authority : authority.substr(at + 1);
  std::string_view port;
  std::size_t pc = hostport.rfind(':');
  if (pc != std::string_view::npos && hostport.find(']') == std::string_view::npos) {
    port = hostport.substr(pc + 1);
    hostport = hostport.substr(0, pc);
  }
  std::string host;
  for (std::size_t i = 0; i < hostport.size(); ++i) {
    if (hostport[i] == '%' && i + 2 < hostport.size() && detail::hex_value(hostport[i + 1]) >= 0 &&
        detail::hex_value(hostport[i + 2]) >= 0) {
      host += char(detail::hex_value(hostport[i + 1]) * 16 + detail::hex_value(hostport[i + 2]));
      i += 2;
    } else {
      host += hostport[i];
    }
  }
  host = lower(host);
  while (!host.empty() && host.back() == '.') host.pop_back();
  if (host.empty()) return {};
  if ((scheme == "http" && port == "80") || (scheme == "https" && port == "443") || (scheme == "ftp" && port == "21"))
    port = {};
  std::string out = scheme + "://" + std::string(userinfo) + host;
  if (!port.empty()) out += ":" + std::string(port);
  out += tail;
  return out;
}

class UrlSet {
 public:
  explicit UrlSet(std::size_t max) : max_(max) {}
  void add(std::string_view raw) {
    if (out_.size() >= max_ || raw.size() > 8192) return;
    std::string n = normalize_url(raw);
    if (n.empty()) return;
    if (std::find(out_.begin(), out_.end(), n) == out_.end()) out_.push_back(std::move(n));
  }
  bool full() const { return out_.size() >= max_; }
  std::vector<std::string> take() { return std::move(out_); }

 private:
  std::size_t max_;
  std::vector<std::string> out_;
};

void scan_text(std::string_view s, UrlSet& urls) {
  static constexpr std::string_view kStarts[] = {"http://", "https://", "ftp://", "www.", "mailto:"};
  // Next occurrence of each start, searched again only once passed, so the
  // whole scan stays linear however many URLs there are.
  constexpr std::size_t kN = std::size(kStarts);
  std::size_t next[kN];
  for (std::size_t k = 0; k < kN; ++k) next[k] = ifind(s, kStarts[k], 0);
  std::size_t i = 0;
  while (i < s.size() && !urls.full()) {
    std::size_t best = std::string_view::npos;
    std::string_view which;
    for (std::size_t k = 0; k < kN; ++k) {
      if (next[k] != std::string_view::npos && next[k] < i) next[k] = ifind(s, kStarts[k], i);
      if (next[k] < best) { best = next[k]; which = kStarts[k]; }
    }
    if (best == std::string_view::npos) return;
    if (which == "www." && best > 0) {
      char prev = s[best - 1];
      if (is_alpha(prev) || is_digit(prev) || prev == '.' || prev == '-' || prev == '@' || prev == '/') {
        i = best + 4;
        continue;
      }
    }
    std::size_t e = best;
    while (e < s.size() && url_char(s[e])) ++e;
    std::string_view url = s.substr(best, e - best);
    // Trailing punctuation belongs to the sentence, not the URL.
    while (!url.empty()) {
      char c = url.back();
      bool paren = c == ')' && url.find('(') == std::string_view::npos;
      if (c == '.' || c == ',' || c == ';' || c == ':' || c == '!' || c == '?' || c == ']' || paren) url.remove_suffix(1);
      else break;
    }
    if (url.size() > which.size()) urls.add(url);
    i = std::max(e, best + 1);
  }
}

// href/src/action/background attribute values of every tag.
void scan_html_attributes(std::string_view s, UrlSet& urls) {
  std::size_t i = 0;
  while (i < s.size() && !urls.full()) {
    std::size_t lt = s.find('<', i);
    if (lt == std::string_view::npos) return;
    std::size_t end = tag_end(s, lt);
    if (end == std::string_view::npos) end = s.size();
    std::string_view tag = s.substr(lt + 1, end - lt - 1);
    std::size_t j = 0;
    while (j < tag.size() && !is_space(tag[j]) && tag[j] != '>') ++j;  // tag name
    while (j < tag.size()) {
      while (j < tag.size() && (is_space(tag[j]) || tag[j] == '/')) ++j;
      std::size_t nb = j;
      while (j < tag.size() && !is_space(tag[j]) && tag[j] != '=' && tag[j] != '>') ++j;
      std::string name = lower(tag.substr(nb, j - nb));
      while (j < tag.size() && is_space(tag[j])) ++j;
      if (j >= tag.size() || tag[j] != '=') {
        if (j == nb) ++j;
        continue;
      }
      ++j;
      while (j < tag.size() && is_space(tag[j])) ++j;
      std::string_view value;
      if (j < tag.size() && (tag[j] == '"' || tag[j] == '\'')) {
        std::size_t q = tag.find(tag[j], j + 1);
        if (q == std::string_view::npos) q = tag.size();
        value = tag.substr(j + 1, q - j - 1);
        j = q + 1;
      } else {
        std::size_t vb = j;
        while (j < tag.size() && !is_space(tag[j]) && tag[j] != '>') ++j;
        value = tag.substr(vb, j - vb);
      }
      if (name == "href" || name == "src" || name == "action" || name == "background") urls.add(decode_entities(value));
    }
    i = end;
  }
}

}  // namespace

std::vector<std::string> extract_urls(std::string_view text, bool is_html, std::size_t max_urls) {
  UrlSet urls(max_urls);
  if (is_html) {
    scan_html_attributes(text, urls);
    // Text nodes one by one: adjacent inline elements must not glue a URL
    // to the next word.
    std::string node;
    for (std::size_t i = 0; i < text.size() && !urls.full();) {
      std::size_t lt = text.find('<', i);
      std::string_view chunk = text.substr(i, lt == std::string_view::npos ? std::string_view::npos : lt - i);
      if (!chunk.empty()) scan_text(decode_entities(chunk), urls);
      if (lt == std::string_view::npos) break;
      std::size_t end = tag_end(text, lt);
      if (end == std::string_view::npos) break;
      i = end;
    }
  } else {
    scan_text(text, urls);
  }
  return urls.take();
}

Decoded part_text(std::string_view whole, const Part& part, std::size_t max_out) {
  Decoded raw = decode_part(whole, part, max_out);
  std::string cs = part.charset;
  Decoded d = to_utf8(raw.data, cs, max_out);
  d.error = d.error || raw.error;
  d.capped = d.capped || raw.capped;
  if (part.type == "text" && part.subtype == "html") d.data = html_to_text(d.data, max_out);
  return d;
}

}  // namespace moat::mime

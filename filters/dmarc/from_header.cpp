// From: parsing for DMARC (see from_header.hpp). RFC 5322 §3.2 (lexical
// tokens), §3.4 (mailbox, address lists), §3.6.2 (From), §4 (the obsolete
// forms we refuse or flag). Sans-I/O, no allocation beyond the result.
#include "common/text.hpp"
#include "filters/dmarc/from_header.hpp"

#include <cctype>

namespace moat::filters::dmarc {
namespace {

constexpr int kMaxCommentDepth = 8;

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

bool is_atext(unsigned char c) {
  if (c >= 0x80) return true;  // RFC 6532 UTF-8; only display names and local parts may carry it
  if (std::isalnum(c)) return true;
  static constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  return kSpecials.find(char(c)) != std::string_view::npos;
}

// Folding removed (CRLF/LF before WSP). nullopt when a bare CR/LF or a control
// character other than HTAB remains: such a value is read differently by
// different parsers.
std::optional<std::string> unfold(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c == '\r' && i + 1 < v.size() && v[i + 1] == '\n') ++i, c = '\n';
    if (c == '\n') {
      if (i + 1 < v.size() && is_wsp(v[i + 1])) continue;  // fold
      if (i + 1 == v.size()) break;                          // the field's final line end
      return std::nullopt;
    }
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return std::nullopt;
    out += c;
  }
  return out;
}

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  From run() {
    From out;
    std::size_t elements = 0;
    while (true) {
      skip_cfws();
      if (failed_) break;
      if (at_end()) break;
      if (peek() == ',') {  // obs-mbox-list: empty elements are allowed
        ++i_;
        continue;
      }
      if (++elements > kMaxMailboxes) return From{FromStatus::TooLong, {}};
      std::string domain;
      if (!mailbox(domain)) {
        failed_ = true;
        break;
      }
      if (!domain.empty()) out.domains.push_back(std::move(domain));
      skip_cfws();
      if (at_end()) break;
      if (peek() != ',') {
        failed_ = true;
        break;
      }
      ++i_;
    }
    if (failed_) out.status = FromStatus::Malformed;
    else if (ambiguous_) out.status = FromStatus::Ambiguous;
    else if (out.domains.empty()) out.status = FromStatus::NoFrom;
    else if (out.domains.size() > 1) out.status = FromStatus::Multiple;
    else out.status = FromStatus::Ok;
    return out;
  }

 private:
  bool at_end() const { return i_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[i_]; }

  void skip_wsp() {
    while (!at_end() && is_wsp(s_[i_])) ++i_;
  }

  // CFWS; a comment holding '@' or '<' looks like an address to some readers.
  void skip_cfws() {
    while (!at_end()) {
      if (is_wsp(s_[i_])) {
        ++i_;
      } else if (s_[i_] == '(') {
        comment();
        if (failed_) return;
      } else {
        return;
      }
    }
  }

  void comment() {
    int depth = 0;
    for (; i_ < s_.size(); ++i_) {
      char c = s_[i_];
      if (c == '\\') {
        ++i_;
        if (i_ >= s_.size()) break;
      } else if (c == '(') {
        if (++depth > kMaxCommentDepth) break;
      } else if (c == ')') {
        if (--depth == 0) {
          ++i_;
          return;
        }
      } else if (c == '@' || c == '<' || c == '>') {
        ambiguous_ = true;
      }
    }
    failed_ = true;  // unterminated or too deep
  }

  // quoted-string without the surrounding CFWS; the content is returned.
  bool quoted_string(std::string* content) {
    if (peek() != '"') return false;
    ++i_;
    while (!at_end()) {
      char c = s_[i_++];
      if (c == '"') return true;
      if (c == '\\') {
        if (at_end()) return false;
        c = s_[i_++];
      }
      if (content) *content += c;
    }
    return false;
  }

  // dot-atom-text: atom *("." atom), nothing between.
  bool dot_atom(std::string& out) {
    std::size_t start = i_;
    while (true) {
      std::size_t atom = i_;
      while (!at_end() && is_atext(static_cast<unsigned char>(s_[i_]))) ++i_;
      if (i_ == atom) {
        i_ = start;
        return false;
      }
      if (peek() != '.') break;
      ++i_;
    }
    out.assign(s_.substr(start, i_ - start));
    return true;
  }

  // A DNS host name (RFC 1035 LDH labels), lower-cased; no domain-literals:
  // an address literal has no domain DMARC could look up.
  bool domain(std::string& out) {
    std::string text;
    if (!dot_atom(text)) return false;
    if (text.size() > 253) return false;
    std::size_t label = 0;
    for (char& c : text) {
      auto u = static_cast<unsigned char>(c);
      if (c == '.') {
        if (label == 0) return false;
        label = 0;
        continue;
      }
      if (!std::isalnum(u) && c != '-') return false;
      if (++label > 63) return false;
      c = static_cast<char>(std::tolower(u));
    }
    out = std::move(text);
    return true;
  }

  // addr-spec with no CFWS inside: "a@b" only. Comments or spaces around the
  // '@' are legal (obs) but are what comment-splitting spoofs use.
  bool addr_spec(std::string& dom) {
    std::string local;
    if (peek() == '"') {
      if (!quoted_string(&local)) return false;
      if (local.find('@') != std::string::npos || local.find('<') != std::string::npos) ambiguous_ = true;
    } else if (!dot_atom(local)) {
      return false;
    }
    if (local.find("=?") != std::string::npos) ambiguous_ = true;  // encoded-word where none may be
    if (peek() != '@') {
      std::size_t save = i_;
      skip_cfws();
      bool at = peek() == '@';
      i_ = save;
      if (!at) return false;
      ambiguous_ = true;
      skip_cfws();
    }
    ++i_;  // '@'
    if (is_wsp(peek()) || peek() == '(') {
      ambiguous_ = true;
      skip_cfws();
    }
    if (peek() == '[') return false;
    if (!domain(dom)) return false;
    if (peek() == '(') {
      // "a@good.example(@evil.example)": legal, but read two ways.
      std::size_t save = i_;
      bool before = ambiguous_;
      comment();
      if (failed_) return false;
      i_ = save;
      ambiguous_ = before || ambiguous_;
    }
    return true;
  }

  // angle-addr: "<" addr-spec ">" (WSP allowed inside, comments flagged).
  bool angle_addr(std::string& dom) {
    ++i_;  // '<'
    skip_cfws();
    if (peek() == '@') {  // obs-route "<@a,@b:user@c>"
      ambiguous_ = true;
      return false;
    }
    if (!addr_spec(dom)) return false;
    skip_cfws();
    if (peek() != '>') return false;
    ++i_;
    return true;
  }

  // display-name = phrase: words (atoms, quoted strings) and, obsolete, dots.
  bool phrase() {
    int words = 0;
    while (true) {
      skip_cfws();
      if (failed_) return false;
      if (peek() == '"') {
        if (!quoted_string(nullptr)) return false;
      } else if (!at_end() && (is_atext(static_cast<unsigned char>(peek())) || peek() == '.')) {
        while (!at_end() && (is_atext(static_cast<unsigned char>(peek())) || peek() == '.')) ++i_;
      } else {
        break;
      }
      ++words;
    }
    return words > 0;
  }

  bool mailbox(std::string& dom) {
    if (peek() == '<') return angle_addr(dom);
    std::size_t save = i_;
    bool amb = ambiguous_;
    if (addr_spec(dom)) {
      std::size_t after = i_;
      skip_cfws();
      if (!failed_ && (at_end() || peek() == ',')) return true;
      failed_ = false;
      i_ = after;
    }
    i_ = save;
    ambiguous_ = amb;
    dom.clear();
    if (!phrase()) return false;
    if (peek() == ':') {  // group syntax (RFC 6854): never one plain author
      ambiguous_ = true;
      return false;
    }
    if (peek() != '<') return false;
    return angle_addr(dom);
  }

  std::string_view s_;
  std::size_t i_ = 0;
  bool failed_ = false;
  bool ambiguous_ = false;
};

}  // namespace

std::optional<std::vector<HeaderField>> split_fields(std::string_view h) {
  std::vector<HeaderField> out;
  std::size_t pos = 0;
  while (pos < h.size()) {
    if (h[pos] == '\r' || h[pos] == '\n') break;  // the empty line ending the header
    if (is_wsp(h[pos])) return std::nullopt;      // continuation with no field: read as its own field by some
    std::size_t end = pos;
    do {
      auto nl = h.find('\n', end);
      end = nl == std::string_view::npos ? h.size() : nl + 1;
    } while (end < h.size() && is_wsp(h[end]));
    auto field = h.substr(pos, end - pos);
    auto colon = field.find(':');
    auto eol = field.find_first_of("\r\n");
    if (colon == std::string_view::npos || (eol != std::string_view::npos && eol < colon)) return std::nullopt;
    HeaderField f;
    f.raw = field;
    f.name = field.substr(0, colon);
    while (!f.name.empty() && is_wsp(f.name.back())) {
      f.name.remove_suffix(1);
      f.space_before_colon = true;
    }
    if (f.name.empty()) return std::nullopt;
    for (unsigned char c : f.name)
      if (c <= 0x20 || c >= 0x7f) return std::nullopt;  // RFC 5322 §3.6.8 ftext
    f.value = field.substr(colon + 1);
    if (out.size() >= kMaxFields) return std::nullopt;
    out.push_back(f);
    pos = end;
  }
  return out;
}

std::string_view from_status_name(FromStatus s) {
  switch (s) {
    case FromStatus::Ok: return "ok";
    case FromStatus::NoFrom: return "no From";
    case FromStatus::Multiple: return "several authors";
    case FromStatus::Malformed: return "malformed From";
    case FromStatus::Ambiguous: return "ambiguous From";
    case FromStatus::TooLong: return "From too long";
  }
  return "?";
}

From parse_from_value(std::string_view value) {
  if (value.size() > kMaxFromBytes) return From{FromStatus::TooLong, {}};
  auto text = unfold(value);
  if (!text) return From{FromStatus::Malformed, {}};
  return Parser(*text).run();
}

From parse_from(std::string_view header) {
  auto fields = split_fields(header);
  if (!fields) return From{FromStatus::Malformed, {}};
  From out;
  int count = 0;
  bool spaced = false;
  FromStatus worst = FromStatus::Ok;
  for (const auto& f : *fields) {
    if (!iequals(f.name, "from")) continue;
    ++count;
    spaced = spaced || f.space_before_colon;
    From one = parse_from_value(f.value);
    for (auto& d : one.domains)
      if (out.domains.size() < kMaxMailboxes) out.domains.push_back(std::move(d));
    // The worst finding wins: a broken field is worse than a second one.
    auto rank = [](FromStatus s) {
      switch (s) {
        case FromStatus::TooLong: return 5;
        case FromStatus::Malformed: return 4;
        case FromStatus::Ambiguous: return 3;
        case FromStatus::Multiple: return 2;
        case FromStatus::NoFrom: return 1;
        default: return 0;
      }
    };
    if (rank(one.status) > rank(worst)) worst = one.status;
  }
  if (count == 0) return From{FromStatus::NoFrom, {}};
  if (worst == FromStatus::Ok && spaced) worst = FromStatus::Ambiguous;
  if ((worst == FromStatus::Ok || worst == FromStatus::NoFrom) && count > 1) worst = FromStatus::Multiple;
  if (worst == FromStatus::NoFrom && !out.domains.empty()) worst = FromStatus::Multiple;
  out.status = worst;
  return out;
}

}  // namespace moat::filters::dmarc

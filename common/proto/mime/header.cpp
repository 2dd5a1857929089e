// Structured MIME header values: Content-Type (RFC 2045 §5.1), Content-
// Disposition (RFC 2183), parameter continuations and charsets (RFC 2231),
// and encoded words in unstructured text (RFC 2047). Hostile input: bounded
// loops, comment nesting capped, every repair reported.
#include <algorithm>
#include <map>

#include "common/proto/mime/detail.hpp"
#include "common/text.hpp"

namespace moat::mime {
namespace detail {

std::string_view skip_cfws(std::string_view s) {
  for (;;) {
    while (!s.empty() && (is_wsp(s.front()) || s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
    if (s.empty() || s.front() != '(') return s;
    // Comment: nested parentheses and quoted-pairs (RFC 5322 §3.2.2). An
    // unterminated comment runs to the end.
    int level = 0;
    std::size_t i = 0;
    for (; i < s.size(); ++i) {
      if (s[i] == '\\') { ++i; continue; }
      if (s[i] == '(') ++level;
      if (s[i] == ')' && --level == 0) break;
    }
    s.remove_prefix(i < s.size() ? i + 1 : s.size());
  }
}

namespace {

constexpr bool is_tspecial(char c) {
  return c == '(' || c == ')' || c == '<' || c == '>' || c == '@' || c == ',' || c == ';' || c == ':' ||
         c == '\\' || c == '"' || c == '/' || c == '[' || c == ']' || c == '?' || c == '=';
}

// Reads a token (lenient: stops at ';', '/', '=', blanks, comments).
std::string_view read_token(std::string_view& s) {
  std::size_t i = 0;
  while (i < s.size() && !is_wsp(s[i]) && s[i] != ';' && s[i] != '/' && s[i] != '=' && s[i] != '(' &&
         s[i] != '\r' && s[i] != '\n' && s[i] != '"')
    ++i;
  std::string_view t = s.substr(0, i);
  s.remove_prefix(i);
  return t;
}

bool all_token_chars(std::string_view t) {
  if (t.empty()) return false;
  for (char c : t) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 32 || u >= 127 || is_tspecial(c)) return false;
  }
  return true;
}

struct RawParam {
  std::string base;      // lower-cased name without RFC 2231 suffixes
  int section = -1;      // -1: no "*N"
  bool extended = false; // trailing '*': charset'lang' and %XX
  std::string value;
};

// Splits "name*3*" into base/section/extended.
RawParam split_name(std::string_view name) {
  RawParam r;
  if (!name.empty() && name.back() == '*') {
    r.extended = true;
    name.remove_suffix(1);
  }
  std::size_t star = name.rfind('*');
  if (star != std::string_view::npos && star + 1 < name.size() && star + 4 >= name.size() &&
      std::all_of(name.begin() + star + 1, name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    r.section = std::stoi(std::string(name.substr(star + 1)));
    name = name.substr(0, star);
  }
  r.base = lower(name);
  return r;
}

std::string percent_decode(std::string_view v, bool& error) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '%' && i + 2 < v.size() + 0 && hex_value(v[i + 1]) >= 0 && hex_value(v[i + 2]) >= 0) {
      out += char(hex_value(v[i + 1]) * 16 + hex_value(v[i + 2]));
      i += 2;
    } else {
      if (v[i] == '%') error = true;
      out += v[i];
    }
  }
  return out;
}

std::string raw_to_utf8(std::string_view v) {
  std::string out;
  bool capped = false;
  if (is_valid_utf8(v)) return std::string(v);
  windows1252_to_utf8(v, out, 64 * 1024, capped);
  return out;
}

// Joins the RFC 2231 sections of one parameter and converts them.
Param assemble(std::vector<RawParam*>& sections, ParsedParams& pp) {
  Param p;
  p.name = sections.front()->base;
  p.extended = true;
  std::stable_sort(sections.begin(), sections.end(),
                   [](const RawParam* a, const RawParam* b) { return a->section < b->section; });
  int expect = sections.front()->section < 0 ? -1 : 0;
  std::string bytes, charset;
  bool first = true;
  for (RawParam* s : sections) {
    if (s->section != expect) pp.rfc2231_error = true;  // gap, duplicate or missing section 0
    expect = s->section + 1;
    std::string_view v = s->value;
    if (s->extended) {
      if (first) {
        std::size_t q1 = v.find('\'');
        std::size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
        if (q2 != std::string_view::npos) {
          charset = std::string(v.substr(0, q1));
          v.remove_prefix(q2 + 1);
        } else {
          pp.rfc2231_error = true;
        }
      }
      bool bad = false;
      bytes += percent_decode(v, bad);
      if (bad) pp.rfc2231_error = true;
    } else {
      bytes += v;
    }
    first = false;
  }
  if (!charset.empty()) {
    Decoded d = to_utf8(bytes, charset, 64 * 1024);
    if (d.error || d.unknown_charset) pp.charset_error = true;
    p.value = std::move(d.data);
  } else {
    p.value = raw_to_utf8(bytes);
  }
  return p;
}

}  // namespace

ParsedParams parse_params(std::string_view s, const Limits& lim) {
  ParsedParams pp;
  std::vector<RawParam> raws;
  for (;;) {
    s = skip_cfws(s);
    while (!s.empty() && s.front() == ';') s = skip_cfws(s.substr(1));
    if (s.empty()) break;
    std::string_view name = read_token(s);
    s = skip_cfws(s);
    if (name.empty() || s.empty() || s.front() != '=') {
      pp.syntax_error = true;  // "; foo" or garbage: skip to the next ';'
      std::size_t semi = s.find(';');
      if (name.empty() && !s.empty() && semi == 0) semi = std::string_view::npos;
      s = semi == std::string_view::npos ? std::string_view{} : s.substr(semi);
      continue;
    }
    s = skip_cfws(s.substr(1));
    std::string value;
    if (!s.empty() && s.front() == '"') {
      std::size_t i = 1;
      bool closed = false;
      for (; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) { value += s[++i]; continue; }
        if (s[i] == '"') { closed = true; ++i; break; }
        if (s[i] != '\r' && s[i] != '\n') value += s[i];
      }
      if (!closed) pp.syntax_error = true;
      s.remove_prefix(std::min(i, s.size()));
      s = skip_cfws(s);
      if (!s.empty() && s.front() != ';') {
        pp.syntax_error = true;
        std::size_t semi = s.find(';');
        s = semi == std::string_view::npos ? std::string_view{} : s.substr(semi);
      }
    } else {
      // Unquoted: RFC says a token; mailers write spaces and 8-bit too, so
      // take everything up to ';' (what GMime and Thunderbird do).
      std::size_t semi = s.find(';');
      std::string_view v = trim(s.substr(0, semi));
      value = unfold(v);
      if (!all_token_chars(value) && !value.empty()) {
        // A bare value with blanks or tspecials is common (name=my file.pdf); only 8-bit/controls count as errors.
        for (char c : value)
          if (static_cast<unsigned char>(c) < 32 && c != '\t') pp.syntax_error = true;
      }
      s = semi == std::string_view::npos ? std::string_view{} : s.substr(semi);
    }
    if (raws.size() >= lim.max_params * std::max<std::size_t>(1, lim.max_param_sections / 8)) {
      pp.syntax_error = true;
      break;
    }
    RawParam r = split_name(name);
    r.value = std::move(value);
    raws.push_back(std::move(r));
  }

  // Group by base name in first-seen order. RFC 2231 forms win over a plain
  // parameter of the same name (the plain one is the legacy fallback).
  std::vector<std::string> order;
  for (const auto& r : raws)
    if (std::find(order.begin(), order.end(), r.base) == order.end()) order.push_back(r.base);
  for (const auto& base : order) {
    if (pp.params.size() >= lim.max_params) {
      pp.syntax_error = true;
      break;
    }
    std::vector<RawParam*> ext, plain;
    for (auto& r : raws) {
      if (r.base != base) continue;
      if (r.extended || r.section >= 0) ext.push_back(&r);
      else plain.push_back(&r);
    }
    if (plain.size() > 1) pp.syntax_error = true;  // the same parameter twice: readers disagree which wins
    if (ext.size() > lim.max_param_sections) {
      pp.rfc2231_error = true;
      ext.resize(lim.max_param_sections);
    }
    if (!ext.empty()) {
      pp.params.push_back(assemble(ext, pp));
    } else {
      Param p;
      p.name = base;
      p.value = raw_to_utf8(plain.front()->value);
      pp.params.push_back(std::move(p));
    }
  }
  return pp;
}

ContentType parse_content_type(std::string_view value, const Limits& lim) {
  ContentType ct;
  std::string_view s = skip_cfws(value);
  std::string_view type = read_token(s);
  s = skip_cfws(s);
  std::string_view subtype;
  if (!s.empty() && s.front() == '/') {
    s = skip_cfws(s.substr(1));
    subtype = read_token(s);
  }
  ct.type = lower(type);
  ct.subtype = lower(subtype);
  ct.ok = all_token_chars(ct.type) && all_token_chars(ct.subtype);
  s = skip_cfws(s);
  if (!s.empty() && s.front() != ';') {
    ct.params.syntax_error = true;
    std::size_t semi = s.find(';');
    s = semi == std::string_view::npos ? std::string_view{} : s.substr(semi);
  }
  ParsedParams pp = parse_params(s, lim);
  pp.syntax_error = pp.syntax_error || ct.params.syntax_error;
  ct.params = std::move(pp);
  return ct;
}

Disposition parse_disposition(std::string_view value, const Limits& lim) {
  Disposition d;
  std::string_view s = skip_cfws(value);
  d.type = lower(read_token(s));
  s = skip_cfws(s);
  bool junk = !s.empty() && s.front() != ';';
  if (junk) {
    std::size_t semi = s.find(';');
    s = semi == std::string_view::npos ? std::string_view{} : s.substr(semi);
  }
  d.params = parse_params(s, lim);
  if (junk) d.params.syntax_error = true;
  return d;
}

std::string param_text(std::string_view v, bool& bad2047) {
  if (v.find("=?") != std::string_view::npos) {
    Decoded d = decode_header(v, 64 * 1024);
    if (d.error) bad2047 = true;
    return std::move(d.data);
  }
  return raw_to_utf8(v);
}

}  // namespace detail

// ----------------------------------------------------------- RFC 2047 ---

namespace {

struct Word {
  std::string charset;
  std::string bytes;
  std::size_t end = 0;
  bool error = false;
};

// Parses "=?charset[*lang]?B|Q?text?=" at s[i]. Lenient: the text may hold
// blanks (some mailers forget to encode them), which counts as an error.
bool parse_word(std::string_view s, std::size_t i, Word& w) {
  if (s.compare(i, 2, "=?") != 0) return false;
  std::size_t q1 = s.find('?', i + 2);
  if (q1 == std::string_view::npos || q1 == i + 2 || q1 - i > 80) return false;
  if (q1 + 2 >= s.size() || s[q1 + 2] != '?') return false;
  char enc = ascii_lower(s[q1 + 1]);
  if (enc != 'b' && enc != 'q') return false;
  std::size_t text_begin = q1 + 3;
  std::size_t close = s.find("?=", text_begin);
  if (close == std::string_view::npos || close - text_begin > 4096) return false;
  std::string_view cs = s.substr(i + 2, q1 - i - 2);
  for (char c : cs)
    if (detail::is_wsp(c) || static_cast<unsigned char>(c) < 33) return false;
  std::string_view text = s.substr(text_begin, close - text_begin);
  w.charset = lower(cs.substr(0, cs.find('*')));  // RFC 2231 §5 language suffix
  w.bytes.clear();
  w.error = false;
  if (enc == 'b') {
    Decoded d = decode_body(text, Encoding::Base64, 64 * 1024);
    w.bytes = std::move(d.data);
    for (char c : text)
      if (detail::is_wsp(c)) d.error = true;
    w.error = d.error;
  } else {
    for (std::size_t k = 0; k < text.size(); ++k) {
      char c = text[k];
      if (c == '_') {
        w.bytes += ' ';
      } else if (c == '=' && k + 2 < text.size() + 0 && detail::hex_value(text[k + 1]) >= 0 &&
                 detail::hex_value(text[k + 2]) >= 0) {
        w.bytes += char(detail::hex_value(text[k + 1]) * 16 + detail::hex_value(text[k + 2]));
        k += 2;
      } else {
        if (c == '=' || detail::is_wsp(c)) w.error = true;
        w.bytes += c;
      }
    }
  }
  w.end = close + 2;
  return true;
}

}  // namespace

Decoded decode_header(std::string_view value, std::size_t max_out) {
  Decoded d;
  std::string s = detail::unfold(value);
  std::string raw_run, word_bytes, word_charset, pending_ws;
  bool last_was_word = false;

  auto flush_word = [&] {
    if (word_bytes.empty() && word_charset.empty()) return;
    Decoded c = to_utf8(word_bytes, word_charset, max_out);
    if (c.error || c.unknown_charset) d.error = true;
    detail::append_capped(d.data, c.data, max_out, d.capped);
    word_bytes.clear();
    word_charset.clear();
  };
  auto flush_raw = [&] {
    if (raw_run.empty()) return;
    if (detail::is_valid_utf8(raw_run)) detail::append_capped(d.data, raw_run, max_out, d.capped);
    else detail::windows1252_to_utf8(raw_run, d.data, max_out, d.capped);
    raw_run.clear();
  };

  std::size_t i = 0;
  Word w;
  while (i < s.size() && !d.capped) {
    if (s[i] == '=' && i + 1 < s.size() && s[i + 1] == '?' && parse_word(s, i, w)) {
      if (w.error) d.error = true;
      flush_raw();
      pending_ws.clear();  // RFC 2047 §6.2: blanks between adjacent encoded words are dropped
      if (w.charset != word_charset) flush_word();
      // Same charset: join the bytes first, so a multi-byte character split
      // across two words still decodes.
      word_charset = w.charset;
      word_bytes += w.bytes;
      if (word_bytes.size() > max_out) word_bytes.resize(max_out);
      i = w.end;
      last_was_word = true;
      continue;
    }
    if (s[i] == '=' && i + 1 < s.size() && s[i + 1] == '?') d.error = true;  // looks like a word but is not one
    if (last_was_word && detail::is_wsp(s[i])) {
      pending_ws += s[i++];
      continue;
    }
    flush_word();
    raw_run += pending_ws;
    pending_ws.clear();
    last_was_word = false;
    raw_run += s[i++];
    if (raw_run.size() > max_out) flush_raw();
  }
  flush_word();
  raw_run += pending_ws;
  flush_raw();
  return d;
}

std::string HeaderField::value() const { return std::string(detail::trim(detail::unfold(raw_value))); }

}  // namespace moat::mime

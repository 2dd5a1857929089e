// Lenient MIME part extraction (see parts.hpp).
#include "filters/attachments/parts.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "common/text.hpp"

namespace moat::filters::attachments {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;  // lower-case name, unfolded value

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Next line of s from pos, without its line ending; pos moves past it.
std::string_view next_line(std::string_view s, std::size_t& pos) {
  auto nl = s.find('\n', pos);
  std::size_t end = nl == std::string_view::npos ? s.size() : nl;
  auto line = s.substr(pos, end - pos);
  pos = nl == std::string_view::npos ? s.size() : nl + 1;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// Header section and body: the first empty line ends the header (RFC 5322 §2.1).
std::pair<std::string_view, std::string_view> split_entity(std::string_view e) {
  std::size_t pos = 0;
  while (pos < e.size()) {
    std::size_t start = pos;
    if (next_line(e, pos).empty()) return {e.substr(0, start), e.substr(pos)};
  }
  return {e, {}};
}

// "Content-Type (x):" counts as Content-Type: mail clients forgive the
// comment, so a scanner must too.
std::string field_name(std::string_view raw) {
  auto cut = raw.find_first_of(" \t(");
  return lower(trim(raw.substr(0, cut)));
}

Fields parse_fields(std::string_view header) {
  Fields out;
  std::size_t pos = 0;
  while (pos < header.size()) {
    auto line = next_line(header, pos);
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      if (!out.empty()) out.back().second += " " + std::string(trim(line));
      continue;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    out.emplace_back(field_name(line.substr(0, colon)), std::string(trim(line.substr(colon + 1))));
  }
  return out;
}

const std::string* first(const Fields& f, std::string_view name) {
  for (const auto& [n, v] : f)
    if (n == name) return &v;
  return nullptr;
}

// name=value pairs after the first ';', names lower-cased, quotes undone.
std::vector<std::pair<std::string, std::string>> params(std::string_view v) {
  std::vector<std::pair<std::string, std::string>> out;
  auto semi = v.find(';');
  if (semi == std::string_view::npos) return out;
  std::size_t i = semi + 1;
  while (i < v.size()) {
    while (i < v.size() && (is_ws(v[i]) || v[i] == ';')) ++i;
    std::size_t a = i;
    while (i < v.size() && v[i] != '=' && v[i] != ';') ++i;
    std::string attr = lower(trim(v.substr(a, i - a)));
    std::string value;
    if (i < v.size() && v[i] == '=') {
      ++i;
      while (i < v.size() && is_ws(v[i])) ++i;
      if (i < v.size() && v[i] == '"') {
        for (++i; i < v.size() && v[i] != '"'; ++i) {
          if (v[i] == '\\' && i + 1 < v.size()) ++i;
          value += v[i];
        }
        ++i;
        while (i < v.size() && v[i] != ';') ++i;
      } else {
        std::size_t b = i;
        while (i < v.size() && v[i] != ';') ++i;
        value = std::string(trim(v.substr(b, i - b)));
      }
    }
    if (!attr.empty()) out.emplace_back(std::move(attr), std::move(value));
  }
  return out;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < s.size() && (hi = hex_value(s[i + 1])) >= 0 &&
        (lo = hex_value(s[i + 2])) >= 0) {
      out += char(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// RFC 2231 §4: charset'language'text; the charset is not converted.
std::string strip_charset(std::string_view s) {
  auto q1 = s.find('\'');
  if (q1 == std::string_view::npos) return std::string(s);
  auto q2 = s.find('\'', q1 + 1);
  if (q2 == std::string_view::npos) return std::string(s);
  return std::string(s.substr(q2 + 1));
}

bool is_multipart(const Fields& f) {
  for (const auto& [n, v] : f)
    if (n == "content-type" && lower(trim(v)).starts_with("multipart/")) return true;
  return false;
}

// A delimiter line as the lenient split sees it: "--" and one token.
bool is_delimiter(std::string_view line) {
  if (line.size() < 3 || line.size() > 200 || !line.starts_with("--")) return false;
  auto rest = trim(line.substr(2));
  return !rest.empty() && std::none_of(rest.begin(), rest.end(), is_ws);
}

// A segment that opens with "Name: value" (or "Name (comment): value").
bool opens_with_field(std::string_view seg) {
  std::size_t pos = 0;
  auto line = next_line(seg, pos);
  auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0 || is_ws(line[0])) return false;
  return std::all_of(line.begin(), line.begin() + colon, [](char c) {
    return (static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f) || c == ' ' || c == '\t';
  });
}

class Extractor {
 public:
  Extractor(const ExtractLimits& limits, Extraction& out) : limits_(limits), out_(out) {}

  void entity(std::string_view e, unsigned depth) {
    if (!out_.limit.empty()) return;
    if (depth > limits_.max_depth) return hit("MIME nesting over " + std::to_string(limits_.max_depth));
    auto [head, body] = split_entity(e);
    Fields f = parse_fields(head);
    if (is_multipart(f)) return multipart(body, depth);
    const std::string* ct = first(f, "content-type");
    std::string type = ct ? lower(trim(std::string_view(*ct).substr(0, ct->find(';')))) : "text/plain";
    const std::string* cte = first(f, "content-transfer-encoding");
    std::string enc = cte ? lower(trim(*cte)) : "";
    const bool encoded = enc == "base64" || enc == "quoted-printable";
    const bool message = type.starts_with("message/");
    if (message && !encoded) return entity(body, depth + 1);  // its bytes are already in the raw message
    if (depth == 0 && !encoded) return;                         // the raw message says it all
    Part p;
    p.filename = filename(f);
    p.content_type = type;
    p.body = enc == "base64" ? decode_base64(body) : enc == "quoted-printable" ? decode_quoted_printable(body) : std::string(body);
    p.depth = depth;
    if (message) {
      std::string inner = p.body;
      if (!add(std::move(p))) return;
      return entity(inner, depth + 1);
    }
    add(std::move(p));
  }

 private:
  void hit(std::string what) {
    if (out_.limit.empty()) out_.limit = std::move(what);
  }

  bool add(Part p) {
    if (out_.parts.size() >= limits_.max_parts) {
      hit("more than " + std::to_string(limits_.max_parts) + " MIME parts");
      return false;
    }
    bytes_ += p.body.size();
    if (bytes_ > limits_.max_bytes) {
      hit("decoded parts over " + std::to_string(limits_.max_bytes) + " bytes");
      return false;
    }
    out_.parts.push_back(std::move(p));
    return true;
  }

  // Every "--TOKEN" line delimits (see the file comment); the CRLF before a
  // delimiter belongs to it (RFC 2046 §5.1.1).
  void multipart(std::string_view body, unsigned depth) {
    std::size_t pos = 0;
    std::optional<std::size_t> seg_start;
    while (pos < body.size() && out_.limit.empty()) {
      std::size_t line_start = pos;
      auto line = next_line(body, pos);
      if (!is_delimiter(line)) continue;
      if (seg_start) segment(body.substr(*seg_start, line_start - *seg_start), depth);
      seg_start = pos;
    }
    if (seg_start && out_.limit.empty()) segment(body.substr(*seg_start), depth);
  }

  void segment(std::string_view seg, unsigned depth) {
    if (seg.ends_with("\r\n")) seg.remove_suffix(2);
    else if (seg.ends_with("\n")) seg.remove_suffix(1);
    if (opens_with_field(seg)) entity(seg, depth + 1);
  }

  static std::string filename(const Fields& f) {
    for (const char* field : {"content-disposition", "content-type"}) {
      const char* param = field[8] == 'd' ? "filename" : "name";
      for (const auto& [n, v] : f) {
        if (n != field) continue;
        auto name = header_param(v, param);
        if (!name.empty()) return name;
      }
    }
    return {};
  }

  const ExtractLimits& limits_;
  Extraction& out_;
  std::size_t bytes_ = 0;
};

}  // namespace

std::string header_param(std::string_view value, std::string_view name) {
  auto ps = params(value);
  std::string want(lower(name));
  for (const auto& [a, v] : ps)
    if (a == want) return decode_encoded_words(v);
  for (const auto& [a, v] : ps)
    if (a == want + "*") return percent_decode(strip_charset(v));
  // Continuations name*0, name*1*, ... in index order (RFC 2231 §3).
  std::map<unsigned, std::pair<bool, std::string>> pieces;
  for (const auto& [a, v] : ps) {
    if (!a.starts_with(want + "*") || a.size() == want.size() + 1) continue;
    std::string_view rest = std::string_view(a).substr(want.size() + 1);
    bool ext = rest.ends_with('*');
    if (ext) rest.remove_suffix(1);
    if (rest.empty() || rest.size() > 3 || !std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    pieces.emplace(unsigned(std::stoul(std::string(rest))), std::make_pair(ext, v));
  }
  std::string out;
  for (const auto& [i, piece] : pieces) {
    const auto& [ext, v] = piece;
    if (!ext) out += v;
    else out += percent_decode(i == 0 ? strip_charset(v) : v);
  }
  return out;
}

std::string decode_base64(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else continue;
    acc = (acc << 6) | std::uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::string decode_quoted_printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '=') {
      out += s[i];
      continue;
    }
    if (i + 1 < s.size() && s[i + 1] == '\n') {
      ++i;
    } else if (i + 2 < s.size() && s[i + 1] == '\r' && s[i + 2] == '\n') {
      i += 2;
    } else if (int hi, lo; i + 2 < s.size() && (hi = hex_value(s[i + 1])) >= 0 && (lo = hex_value(s[i + 2])) >= 0) {
      out += char(hi * 16 + lo);
      i += 2;
    } else {
      out += '=';
    }
  }
  return out;
}

std::string decode_encoded_words(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  bool last_was_word = false;
  std::string pending_ws;
  while (i < s.size()) {
    if (s.substr(i, 2) == "=?") {
      auto q1 = s.find('?', i + 2);
      auto q2 = q1 == std::string_view::npos ? q1 : s.find('?', q1 + 1);
      auto end = q2 == std::string_view::npos ? q2 : s.find("?=", q2 + 1);
      if (end != std::string_view::npos && q2 == q1 + 2) {
        char enc = char(s[q1 + 1] | 0x20);
        auto text = s.substr(q2 + 1, end - q2 - 1);
        if (enc == 'b' || enc == 'q') {
          if (!last_was_word) out += pending_ws;  // RFC 2047 §6.2: space between words goes
          pending_ws.clear();
          if (enc == 'b') {
            out += decode_base64(text);
          } else {
            std::string t(text);
            std::replace(t.begin(), t.end(), '_', ' ');
            out += decode_quoted_printable(t);
          }
          i = end + 2;
          last_was_word = true;
          continue;
        }
      }
    }
    if (s[i] == ' ' || s[i] == '\t') {
      pending_ws += s[i++];
      continue;
    }
    out += pending_ws;
    pending_ws.clear();
    out += s[i++];
    last_was_word = false;
  }
  return out + pending_ws;
}

Extraction extract_parts(std::string_view message, const ExtractLimits& limits) {
  Extraction out;
  Extractor(limits, out).entity(message, 0);
  return out;
}

}  // namespace moat::filters::attachments

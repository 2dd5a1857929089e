// Message -> rules::Input (see message_input.hpp). RFC 5322, RFC 2045-2047.
#include "filters/rules/message_input.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "common/text.hpp"

namespace moat::filters::rules {
namespace {

using moat::rules::HeaderField;
using moat::rules::Input;

int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Header section and body of an entity; the header ends at the first empty line.
std::pair<std::string_view, std::string_view> split_entity(std::string_view e) {
  if (e.starts_with("\r\n")) return {{}, e.substr(2)};
  if (e.starts_with("\n")) return {{}, e.substr(1)};
  auto p = e.find("\n\r\n");
  auto q = e.find("\n\n");
  if (p == std::string_view::npos && q == std::string_view::npos) return {e, {}};
  if (q < p) return {e.substr(0, q + 1), e.substr(q + 2)};
  return {e.substr(0, p + 1), e.substr(p + 3)};
}

// Unfolded header fields: (name as written, raw value).
std::vector<std::pair<std::string, std::string>> fields(std::string_view h) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!h.empty()) {
    auto nl = h.find('\n');
    std::string_view line = h.substr(0, nl);
    h = nl == std::string_view::npos ? std::string_view{} : h.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
      if (!out.empty()) out.back().second += std::string(line);  // RFC 5322 §2.2.3: drop the CRLF only
      continue;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) continue;
    out.emplace_back(std::string(trim(line.substr(0, colon))), std::string(line.substr(colon + 1)));
    if (out.size() > 1000) break;
  }
  return out;
}

// Content-Type / Content-Transfer-Encoding of an entity.
struct PartInfo {
  std::string type = "text/plain";
  std::string boundary;
  std::string encoding;
};

std::string param(std::string_view v, std::string_view name) {
  std::string lv = lower(v);
  std::size_t pos = 0;
  while ((pos = lv.find(name, pos)) != std::string::npos) {
    bool start = pos == 0 || lv[pos - 1] == ';' || std::isspace(static_cast<unsigned char>(lv[pos - 1]));
    std::size_t p = pos + name.size();
    while (p < lv.size() && lv[p] == ' ') ++p;
    if (!start || p >= lv.size() || lv[p] != '=') {
      pos += name.size();
      continue;
    }
    ++p;
    while (p < lv.size() && lv[p] == ' ') ++p;
    if (p < v.size() && v[p] == '"') {
      auto end = v.find('"', p + 1);
      return std::string(v.substr(p + 1, end == std::string_view::npos ? std::string_view::npos : end - p - 1));
    }
    auto end = v.find_first_of("; \t", p);
    return std::string(v.substr(p, end == std::string_view::npos ? std::string_view::npos : end - p));
  }
  return {};
}

PartInfo part_info(const std::vector<std::pair<std::string, std::string>>& hs) {
  PartInfo pi;
  for (const auto& [n, v] : hs) {
    if (iequals(n, "content-type")) {
      auto t = trim(std::string_view(v).substr(0, v.find(';')));
      if (t.find('/') != std::string_view::npos) pi.type = lower(t);
      pi.boundary = param(v, "boundary");
    } else if (iequals(n, "content-transfer-encoding")) {
      pi.encoding = lower(trim(v));
    }
  }
  return pi;
}

void add_uri(std::vector<std::string>& uris, std::string_view u, std::size_t max) {
  u = trim(u);
  if (u.empty() || u.size() > 2048 || uris.size() >= max) return;
  if (std::find(uris.begin(), uris.end(), u) == uris.end()) uris.emplace_back(u);
}

// Bare URIs in text: scheme:// or www. up to whitespace, quotes or brackets.
void text_uris(std::string_view t, std::vector<std::string>& uris, std::size_t max) {
  static constexpr std::string_view kStarts[] = {"http://", "https://", "ftp://", "www."};
  std::string lt = lower(t);
  for (auto s : kStarts) {
    std::size_t pos = 0;
    while ((pos = lt.find(s, pos)) != std::string::npos && uris.size() < max) {
      auto end = t.find_first_of(" \t\r\n\"'<>()[]{}", pos);
      add_uri(uris, t.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos), max);
      pos = end == std::string_view::npos ? t.size() : end;
    }
  }
}

struct Walker {
  const InputLimits& lim;
  Input& in;
  unsigned parts = 0;

  void append(std::string& dst, std::string_view s) {
    if (dst.size() >= lim.text_bytes) return;
    dst.append(s.substr(0, lim.text_bytes - dst.size()));
  }

  void entity(std::string_view e, unsigned depth) {
    if (depth > lim.depth || ++parts > lim.parts) return;
    auto [head, body] = split_entity(e);
    PartInfo pi = part_info(fields(head));
    if (pi.type.starts_with("multipart/") && !pi.boundary.empty()) return multipart(body, pi.boundary, depth);
    if (pi.type == "message/rfc822") return entity(body, depth + 1);
    if (!pi.type.starts_with("text/")) return;
    std::string text = pi.encoding == "base64" ? decode_base64_lenient(body)
                       : pi.encoding == "quoted-printable" ? decode_qp(body)
                                                           : std::string(body);
    append(in.rawbody, text);
    if (pi.type == "text/html") {
      auto rendered = html_to_text(text, &in.uris, lim.uris);
      text_uris(rendered, in.uris, lim.uris);
      append(in.body, rendered);
    } else {
      text_uris(text, in.uris, lim.uris);
      append(in.body, text);
    }
    if (!in.body.empty() && in.body.back() != '\n') append(in.body, "\n");
  }

  // RFC 2046 §5.1.1: parts sit between "--boundary" lines, the last one "--boundary--".
  void multipart(std::string_view body, const std::string& boundary, unsigned depth) {
    const std::string delim = "--" + boundary;
    std::size_t pos = 0;
    std::size_t part_start = std::string_view::npos;
    while (pos <= body.size()) {
      auto nl = body.find('\n', pos);
      std::string_view line = body.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.starts_with(delim)) {
        if (part_start != std::string_view::npos) entity(body.substr(part_start, pos - part_start), depth + 1);
        if (line.substr(delim.size()).starts_with("--")) return;
        part_start = nl == std::string_view::npos ? body.size() : nl + 1;
      }
      if (nl == std::string_view::npos) break;
      pos = nl + 1;
    }
    if (part_start != std::string_view::npos && part_start < body.size())
      entity(body.substr(part_start), depth + 1);  // no closing delimiter
  }
};

}  // namespace

std::string decode_base64_lenient(std::string_view in) {
  std::string out;
  out.reserve(in.size() * 3 / 4);
  unsigned acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    if (c == '=') break;
    int v = b64_value(c);
    if (v < 0) continue;  // line breaks and junk, as mail readers do
    acc = (acc << 6) | unsigned(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::string decode_qp(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c != '=') {
      out += c;
      continue;
    }
    // Soft line break: "=" at the end of a line.
    if (i + 1 < in.size() && in[i + 1] == '\n') {
      ++i;
      continue;
    }
    if (i + 2 < in.size() && in[i + 1] == '\r' && in[i + 2] == '\n') {
      i += 2;
      continue;
    }
    if (i + 2 < in.size() && hex_value(in[i + 1]) >= 0 && hex_value(in[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
      i += 2;
      continue;
    }
    out += c;  // a stray '=' stays (RFC 2045 §6.7 note 1)
  }
  return out;
}

// RFC 2047 encoded words (=?charset?B|Q?text?=); the charset is not
// converted, so patterns see the bytes the sender chose. Whitespace between
// adjacent encoded words is dropped (§6.2).
std::string decode_rfc2047(std::string_view v) {
  std::string out;
  std::size_t pos = 0;
  bool last_encoded = false;
  std::string pending_space;
  while (pos < v.size()) {
    auto start = v.find("=?", pos);
    if (start == std::string_view::npos) break;
    auto q1 = v.find('?', start + 2);
    auto q2 = q1 == std::string_view::npos ? q1 : v.find('?', q1 + 1);
    auto end = q2 == std::string_view::npos ? q2 : v.find("?=", q2 + 1);
    if (end == std::string_view::npos || q2 != q1 + 2) {
      out.append(v.substr(pos, start + 2 - pos));
      pos = start + 2;
      last_encoded = false;
      continue;
    }
    std::string_view between = v.substr(pos, start - pos);
    if (!(last_encoded && trim(between).empty())) out.append(between);
    char enc = static_cast<char>(std::tolower(static_cast<unsigned char>(v[q1 + 1])));
    std::string_view text = v.substr(q2 + 1, end - q2 - 1);
    if (enc == 'b') {
      out += decode_base64_lenient(text);
    } else if (enc == 'q') {
      std::string t(text);
      std::replace(t.begin(), t.end(), '_', ' ');
      out += decode_qp(t);
    } else {
      out.append(v.substr(start, end + 2 - start));
    }
    pos = end + 2;
    last_encoded = true;
  }
  out.append(v.substr(std::min(pos, v.size())));
  return out;
}

std::string html_to_text(std::string_view h, std::vector<std::string>* uris, std::size_t max_uris) {
  std::string out;
  out.reserve(h.size());
  std::size_t i = 0;
  while (i < h.size()) {
    char c = h[i];
    if (c == '<') {
      auto end = h.find('>', i);
      if (end == std::string_view::npos) break;
      std::string tag = lower(h.substr(i + 1, end - i - 1));
      // Script and style bodies are not text.
      for (std::string_view skip : {"script", "style"}) {
        if (tag.starts_with(skip)) {
          auto close = lower(h.substr(end)).find("</" + std::string(skip));
          end = close == std::string::npos ? h.size() - 1 : h.find('>', end + close);
          if (end == std::string_view::npos) end = h.size() - 1;
        }
      }
      if (uris) {
        for (std::string_view attr : {"href=", "src="}) {
          auto a = tag.find(attr);
          if (a == std::string::npos) continue;
          std::string_view orig = h.substr(i + 1 + a + attr.size(), end - (i + 1 + a + attr.size()));
          char q = orig.empty() ? 0 : orig.front();
          if (q == '"' || q == '\'') {
            auto close = orig.find(q, 1);
            add_uri(*uris, orig.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1), max_uris);
          } else {
            add_uri(*uris, orig.substr(0, orig.find_first_of(" \t\r\n")), max_uris);
          }
        }
      }
      static constexpr std::string_view kBlocks[] = {"br", "p", "/p", "div", "/div", "tr", "li", "h1", "h2", "h3", "table", "/table"};
      std::string_view name = std::string_view(tag).substr(0, tag.find_first_of(" \t\r\n/", 1));
      if (std::find(std::begin(kBlocks), std::end(kBlocks), name) != std::end(kBlocks)) out += '\n';
      i = end + 1;
      continue;
    }
    if (c == '&') {
      static constexpr std::pair<std::string_view, std::string_view> kEnt[] = {
          {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&nbsp;", " "}, {"&apos;", "'"}};
      bool done = false;
      for (auto [e, r] : kEnt)
        if (h.substr(i, e.size()) == e) {
          out += r;
          i += e.size();
          done = true;
          break;
        }
      if (done) continue;
      if (h.substr(i, 2) == "&#") {
        std::size_t j = i + 2;
        unsigned v = 0;
        bool hex = j < h.size() && (h[j] == 'x' || h[j] == 'X');
        if (hex) ++j;
        std::size_t digits = 0;
        while (j < h.size() && digits < 7 && (hex ? hex_value(h[j]) >= 0 : std::isdigit(static_cast<unsigned char>(h[j])))) {
          v = v * (hex ? 16 : 10) + unsigned(hex ? hex_value(h[j]) : h[j] - '0');
          ++j, ++digits;
        }
        if (digits && j < h.size() && h[j] == ';' && v < 128 && v > 0) {
          out += static_cast<char>(v);
          i = j + 1;
          continue;
        }
      }
    }
    out += c;
    ++i;
  }
  return out;
}

Input make_input(std::string_view message, const InputLimits& limits) {
  Input in;
  in.full = message;
  auto [head, body] = split_entity(message);
  for (auto& [name, raw] : fields(head)) {
    HeaderField f;
    f.name = lower(name);
    f.raw = std::string(trim(raw));
    f.value = decode_rfc2047(f.raw);
    in.headers.push_back(std::move(f));
  }
  // SpamAssassin puts the Subject in front of the body text; rules written
  // for it expect that.
  for (const auto& f : in.headers)
    if (f.name == "subject") {
      in.body = f.value + "\n\n";
      break;
    }
  Walker w{limits, in};
  w.entity(message, 0);
  return in;
}

}  // namespace moat::filters::rules

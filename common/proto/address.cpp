// See address.hpp (RFC 5321 §4.1.2, §4.5.3.1; RFC 6531 §3.3).
#include "common/proto/address.hpp"
#include "common/text.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace moat::proto::smtp {
namespace {

bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_alnum(unsigned char c) { return is_alpha(c) || is_digit(c); }

// RFC 5322 atext; RFC 6531 adds UTF8-non-ascii (validated as a whole later).
bool is_atext(unsigned char c, bool utf8) {
  if (is_alnum(c)) return true;
  if (c >= 0x80) return utf8;
  return c != 0 && std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr;
}

// qtextSMTP = %d32-33 / %d35-91 / %d93-126 (RFC 5321), plus UTF-8 (RFC 6531).
bool is_qtext(unsigned char c, bool utf8) {
  if (c >= 0x80) return utf8;
  return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

Error bad(std::string detail) { return Error{Errc::BadAddress, std::move(detail)}; }

bool has_non_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  return false;
}

bool valid_label(std::string_view l, bool utf8) {
  if (l.empty() || l.size() > 63) return false;
  auto ok_end = [&](unsigned char c) { return is_alnum(c) || (utf8 && c >= 0x80); };
  if (!ok_end(static_cast<unsigned char>(l.front())) || !ok_end(static_cast<unsigned char>(l.back()))) return false;
  for (char ch : l) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (!ok_end(c) && c != '-') return false;
  }
  return true;
}

bool valid_snum(std::string_view s) {
  if (s.empty() || s.size() > 3) return false;
  int v = 0;
  for (char c : s) {
    if (!is_digit(static_cast<unsigned char>(c))) return false;
    v = v * 10 + (c - '0');
  }
  return v <= 255;
}

bool valid_ipv4(std::string_view s) {
  for (int i = 0; i < 3; ++i) {
    const auto dot = s.find('.');
    if (dot == std::string_view::npos || !valid_snum(s.substr(0, dot))) return false;
    s.remove_prefix(dot + 1);
  }
  return valid_snum(s);
}

// Local-part = Dot-string / Quoted-string. On success `rest` starts at '@'.
Result<Mailbox> parse_local(std::string_view s, bool utf8, std::string_view& rest) {
  Mailbox m;
  std::size_t i = 0;
  if (!s.empty() && s[0] == '"') {
    m.quoted_local = true;
    for (i = 1;; ++i) {
      if (i >= s.size()) return bad("unterminated quoted local part");
      const unsigned char c = static_cast<unsigned char>(s[i]);
      if (c == '"') break;
      if (c == '\\') {  // quoted-pairSMTP = '\' %d32-126
        if (i + 1 >= s.size()) return bad("unterminated quoted local part");
        const unsigned char n = static_cast<unsigned char>(s[i + 1]);
        if (n < 32 || n > 126) return bad("invalid quoted-pair in local part");
        m.local += char(n);
        ++i;
        continue;
      }
      if (!is_qtext(c, utf8)) return bad("invalid character in quoted local part");
      m.local += char(c);
    }
    ++i;  // past closing quote
  } else {
    bool need_atext = true;  // at start or after '.': an atom must follow
    for (; i < s.size() && s[i] != '@'; ++i) {
      const unsigned char c = static_cast<unsigned char>(s[i]);
      if (c == '.') {
        if (need_atext) return bad("empty atom in local part");
        need_atext = true;
      } else if (is_atext(c, utf8)) {
        need_atext = false;
      } else {
        return bad(c >= 0x80 ? "non-ASCII local part without SMTPUTF8" : "invalid character in local part");
      }
    }
    if (need_atext) return bad(i == 0 ? "empty local part" : "empty atom in local part");
    m.local = std::string(s.substr(0, i));
  }
  if (i > kMaxLocalPart) return bad("local part longer than 64 bytes");
  rest = s.substr(i);
  return m;
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
    else return false;
    if (s.size() - i <= n) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

bool is_valid_domain(std::string_view d, bool allow_utf8) {
  if (d.empty() || d.size() > kMaxDomain) return false;
  if (allow_utf8 ? !is_valid_utf8(d) : has_non_ascii(d)) return false;
  for (;;) {
    const auto dot = d.find('.');
    if (!valid_label(d.substr(0, dot), allow_utf8)) return false;
    if (dot == std::string_view::npos) return true;
    d.remove_prefix(dot + 1);  // a trailing dot leaves an empty label: rejected above
  }
}

bool is_valid_address_literal(std::string_view lit) {
  if (lit.size() < 3 || lit.front() != '[' || lit.back() != ']') return false;
  const std::string_view in = lit.substr(1, lit.size() - 2);
  if (valid_ipv4(in)) return true;
  const auto colon = in.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  const std::string_view tag = in.substr(0, colon), body = in.substr(colon + 1);
  if (iequals(tag, "IPv6")) {
    if (body.empty() || body.size() >= 64) return false;
    std::string tmp(body);
    unsigned char buf[16];
    return inet_pton(AF_INET6, tmp.c_str(), buf) == 1;
  }
  // General-address-literal: Standardized-tag ":" 1*dcontent
  if (!is_alnum(static_cast<unsigned char>(tag.back()))) return false;
  for (char c : tag)
    if (!is_alnum(static_cast<unsigned char>(c)) && c != '-') return false;
  if (body.empty()) return false;
  for (char ch : body) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (!((c >= 33 && c <= 90) || (c >= 94 && c <= 126))) return false;
  }
  return true;
}

Result<Mailbox> parse_path(std::string_view path, bool allow_utf8, bool allow_postmaster) {
  if (path.empty()) return bad("empty path");
  if (path.size() + 2 > kMaxPath) return bad("path longer than 256 bytes");
  if (allow_postmaster && iequals(path, "postmaster")) {
    Mailbox m;
    m.local = std::string(path);
    return m;
  }
  if (allow_utf8 && !is_valid_utf8(path)) return bad("invalid UTF-8 in address");
  bool route = false;
  if (path.front() == '@') {  // A-d-l ":" : obsolete source route, parsed and flagged
    const auto colon = path.find(':');
    if (colon == std::string_view::npos) return bad("malformed source route");
    std::string_view adl = path.substr(0, colon);
    for (;;) {
      const auto comma = adl.find(',');
      const std::string_view at = adl.substr(0, comma);
      if (at.size() < 2 || at[0] != '@' || !is_valid_domain(at.substr(1), allow_utf8))
        return bad("malformed source route");
      if (comma == std::string_view::npos) break;
      adl.remove_prefix(comma + 1);
    }
    route = true;
    path.remove_prefix(colon + 1);
  }
  std::string_view rest;
  auto local = parse_local(path, allow_utf8, rest);
  if (!local) return local.error();
  Mailbox m = std::move(*local);
  m.source_route = route;
  if (rest.empty() || rest[0] != '@') return bad("missing @domain");
  rest.remove_prefix(1);
  if (!rest.empty() && rest[0] == '[') {
    if (!is_valid_address_literal(rest)) return bad("invalid address literal");
    m.domain_literal = true;
  } else if (!is_valid_domain(rest, allow_utf8)) {
    return bad(rest.size() > kMaxDomain ? "domain longer than 255 bytes" : "invalid domain");
  }
  m.domain = std::string(rest);
  m.utf8 = has_non_ascii(m.local) || has_non_ascii(m.domain);
  return m;
}

Status check_relay_safe(const Mailbox& m, bool smtputf8) {
  if (m.source_route) return bad("source routes are not accepted");
  if (m.domain_literal) return bad("address literals are not accepted");
  if (m.domain.empty()) return bad("address without a domain");
  if (m.domain.front() == '.' || m.domain.back() == '.' || m.domain.find("..") != std::string::npos)
    return bad("domain with a trailing dot or empty label");
  if (m.local.find('@') != std::string::npos)
    return bad(m.quoted_local ? "quoted local part containing @" : "local part containing @");
  if (m.local.find('%') != std::string::npos) return bad("percent hack (%) in local part");
  if (m.local.find('!') != std::string::npos) return bad("bang path (!) in local part");
  if ((m.utf8 || has_non_ascii(m.local) || has_non_ascii(m.domain)) && !smtputf8)
    return bad("non-ASCII address without SMTPUTF8");
  return {};
}

std::string lower_domain(std::string_view d) {
  std::string out(d);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

std::string Mailbox::str() const {
  if (domain.empty()) return local;
  bool plain = !local.empty() && local.front() != '.' && local.back() != '.' && local.find("..") == std::string::npos;
  for (char c : local)
    if (!is_atext(static_cast<unsigned char>(c), true) && c != '.') plain = false;
  if (plain) return local + "@" + domain;
  std::string out = "\"";
  for (char c : local) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"@" + domain;
}

}  // namespace moat::proto::smtp

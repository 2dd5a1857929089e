// See mutf7.hpp (RFC 3501 §5.1.3 modified UTF-7; RFC 2152 UTF-7; RFC 3629
// UTF-8; RFC 2781 UTF-16 surrogates).
#include "common/proto/imap/mutf7.hpp"

#include <cstdint>
#include <vector>

#include "common/text.hpp"

namespace moat::proto::imap {
namespace {

constexpr std::string_view kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == ',') return 63;
  return -1;
}

bool printable(std::uint32_t c) { return c >= 0x20 && c <= 0x7e; }

// Next code point of valid UTF-8 at s[i]; advances i. -1 when invalid.
std::int64_t next_utf8(std::string_view s, std::size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  std::uint32_t cp = 0;
  std::uint32_t min = 0;
  if (b0 < 0x80) {
    ++i;
    return b0;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return -1;
  }
  if (i + len > s.size()) return -1;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  i += len;
  return cp;
}

Error bad(std::string detail) { return Error{Errc::ParamSyntax, std::move(detail)}; }

// Decodes the base64 between "&" and "-" into code points.
bool decode_run(std::string_view run, std::string& out) {
  std::uint32_t bits = 0;
  int nbits = 0;
  std::vector<std::uint16_t> units;
  for (char c : run) {
    const int v = b64_value(c);
    if (v < 0) return false;
    bits = (bits << 6) | std::uint32_t(v);
    nbits += 6;
    if (nbits >= 16) {
      nbits -= 16;
      units.push_back(std::uint16_t((bits >> nbits) & 0xFFFF));
    }
  }
  // Leftover bits are padding: fewer than 6 and all zero (canonical form).
  if (nbits >= 6 || (bits & ((1u << nbits) - 1)) != 0 || units.empty()) return false;
  for (std::size_t i = 0; i < units.size(); ++i) {
    std::uint32_t cp = units[i];
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (i + 1 >= units.size() || units[i + 1] < 0xDC00 || units[i + 1] > 0xDFFF) return false;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (units[i + 1] - 0xDC00);
      ++i;
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      return false;
    }
    if (cp == 0 || printable(cp)) return false;  // printable ASCII must be written as itself
    append_utf8(out, cp);
  }
  return true;
}

void flush_run(std::string& out, std::vector<std::uint16_t>& units) {
  if (units.empty()) return;
  out.push_back('&');
  std::uint32_t bits = 0;
  int nbits = 0;
  for (auto u : units) {
    bits = (bits << 16) | u;
    nbits += 16;
    while (nbits >= 6) {
      nbits -= 6;
      out.push_back(kB64[(bits >> nbits) & 0x3F]);
    }
    bits &= (1u << nbits) - 1;
  }
  if (nbits > 0) out.push_back(kB64[(bits << (6 - nbits)) & 0x3F]);
  out.push_back('-');
  units.clear();
}

}  // namespace

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();)
    if (next_utf8(s, i) < 0) return false;
  return true;
}

Result<std::string> mutf7_decode(std::string_view in) {
  std::string out;
  bool after_run = false;  // the previous item was "&...-" with content
  for (std::size_t i = 0; i < in.size();) {
    const char c = in[i];
    if (!printable(static_cast<unsigned char>(c))) return bad("non-ASCII byte in modified UTF-7");
    if (c != '&') {
      out.push_back(c);
      after_run = false;
      ++i;
      continue;
    }
    const auto dash = in.find('-', i + 1);
    if (dash == std::string_view::npos) return bad("unterminated &-sequence");
    if (dash == i + 1) {
      out.push_back('&');
      after_run = false;
    } else {
      if (after_run) return bad("adjacent &-sequences");
      if (!decode_run(in.substr(i + 1, dash - i - 1), out)) return bad("bad &-sequence");
      after_run = true;
    }
    i = dash + 1;
  }
  return out;
}

Result<std::string> mutf7_encode(std::string_view in) {
  std::string out;
  std::vector<std::uint16_t> units;
  for (std::size_t i = 0; i < in.size();) {
    const std::int64_t cp = next_utf8(in, i);
    if (cp <= 0) return bad(cp == 0 ? "NUL in name" : "invalid UTF-8");
    if (printable(std::uint32_t(cp))) {
      flush_run(out, units);
      out += cp == '&' ? "&-" : std::string(1, char(cp));
    } else if (cp >= 0x10000) {
      const auto v = std::uint32_t(cp) - 0x10000;
      units.push_back(std::uint16_t(0xD800 + (v >> 10)));
      units.push_back(std::uint16_t(0xDC00 + (v & 0x3FF)));
    } else {
      units.push_back(std::uint16_t(cp));
    }
  }
  flush_run(out, units);
  return out;
}

Result<std::string> check_mailbox_name(std::string_view name) {
  if (name.empty()) return bad("empty mailbox name");
  if (name.size() > kMaxMailboxName) return bad("mailbox name too long");
  if (!valid_utf8(name)) return bad("mailbox name is not UTF-8");
  std::size_t levels = 0;
  std::size_t start = 0;
  for (;;) {
    const auto end = std::min(name.find(kHierarchyDelimiter, start), name.size());
    const auto level = name.substr(start, end - start);
    if (level.empty()) return bad("empty hierarchy level");
    if (level == "." || level == "..") return bad("\".\" or \"..\" in mailbox name");
    if (++levels > kMaxMailboxLevels) return bad("mailbox name too deep");
    if (end == name.size()) break;
    start = end + 1;
  }
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return bad("control character in mailbox name");
    if (c == '*' || c == '%') return bad("wildcard in mailbox name");
  }
  if (name[0] == '~') return bad("mailbox name starts with ~");
  std::string out(name);
  const auto first = name.substr(0, std::min(name.find(kHierarchyDelimiter), name.size()));
  if (first.size() == 5) {
    std::string up;
    for (char c : first) up.push_back((c >= 'a' && c <= 'z') ? char(c - 32) : c);
    if (up == "INBOX") out.replace(0, 5, "INBOX");
  }
  return out;
}

}  // namespace moat::proto::imap

// See xtext.hpp (RFC 3461 §4).
#include "common/proto/xtext.hpp"

namespace moat::proto::smtp {
namespace {

bool is_xchar(unsigned char c) { return c >= 33 && c <= 126 && c != '+' && c != '='; }

int upper_hex(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lower case is not xtext (RFC 3461 hexchar)
}

}  // namespace

Result<std::string> xtext_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (is_xchar(c)) {
      out += char(c);
      continue;
    }
    if (c != '+' || s.size() - i < 3) return Error{Errc::ParamSyntax, "invalid xtext"};
    const int hi = upper_hex(static_cast<unsigned char>(s[i + 1]));
    const int lo = upper_hex(static_cast<unsigned char>(s[i + 2]));
    if (hi < 0 || lo < 0) return Error{Errc::ParamSyntax, "invalid xtext hexchar"};
    out += char(hi * 16 + lo);
    i += 2;
  }
  return out;
}

bool xtext_valid(std::string_view s) { return xtext_decode(s).ok(); }

std::string xtext_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (is_xchar(c)) {
      out += ch;
    } else {
      out += '+';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace moat::proto::smtp

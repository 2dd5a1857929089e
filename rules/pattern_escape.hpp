// The byte a PCRE2 backslash escape stands for (\xHH, \x{H...}, \0oo, \n,
// \t, ..., escaped punctuation), for the pattern rewriters (ascii_variant,
// skeleton) that model single bytes and give up on everything else.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <optional>
#include <string_view>

namespace moat::rules {

// p[i] is the character after the backslash; on success i moves past the
// escape. nullopt: an escape the rewriters do not model (letters and digits
// such as \p, \Q, \1, \g, \k, \c, \o, \N, \X, \R, \K), or a malformed \x{}.
// A code point above 0xFF is returned as is (capped at 0x110000).
inline std::optional<unsigned> escaped_byte(std::string_view p, std::size_t& i) {
  auto peek = [&] { return i < p.size() ? p[i] : '\0'; };
  auto hex = [](char c) {
    return c >= '0' && c <= '9' ? unsigned(c - '0') : unsigned(std::tolower(static_cast<unsigned char>(c)) - 'a' + 10);
  };
  const char e = peek();
  if (e == '\0') return std::nullopt;
  ++i;
  switch (e) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'f': return '\f';
    case 'e': return 27;
    case 'a': return 7;
    case 'x': {
      unsigned v = 0;
      if (peek() == '{') {
        auto close = p.find('}', i);
        if (close == std::string_view::npos || close == i + 1) return std::nullopt;
        for (std::size_t j = i + 1; j < close; ++j) {
          if (!std::isxdigit(static_cast<unsigned char>(p[j]))) return std::nullopt;
          v = std::min(v * 16 + hex(p[j]), 0x110000u);
        }
        i = close + 1;
        return v;
      }
      for (int k = 0; k < 2 && std::isxdigit(static_cast<unsigned char>(peek())); ++k) v = v * 16 + hex(p[i++]);
      return v;
    }
    case '0': {
      unsigned v = 0;
      for (int k = 0; k < 2 && peek() >= '0' && peek() <= '7'; ++k) v = v * 8 + unsigned(p[i++] - '0');
      return v;
    }
    default:
      if (std::isalnum(static_cast<unsigned char>(e))) return std::nullopt;
      return static_cast<unsigned char>(e);
  }
}

}  // namespace moat::rules

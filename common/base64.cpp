// See base64.hpp (RFC 4648 §4).
#include "common/base64.hpp"

#include <array>
#include <cstdint>

namespace moat {
namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<std::int8_t, 256> make_table() {
  std::array<std::int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (std::size_t i = 0; i < kAlphabet.size(); ++i) t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
  return t;
}
constexpr auto kDecode = make_table();

}  // namespace

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    std::uint32_t v = (std::uint32_t(std::uint8_t(in[i])) << 16) | (std::uint32_t(std::uint8_t(in[i + 1])) << 8) |
                      std::uint8_t(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const std::size_t rest = in.size() - i;
  if (rest == 0) return out;
  std::uint32_t v = std::uint32_t(std::uint8_t(in[i])) << 16;
  if (rest == 2) v |= std::uint32_t(std::uint8_t(in[i + 1])) << 8;
  out += kAlphabet[(v >> 18) & 63];
  out += kAlphabet[(v >> 12) & 63];
  out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
  out += '=';
  return out;
}

Result<std::string> base64_decode(std::string_view in) {
  if (in.size() % 4 != 0) return Error{Errc::ParamSyntax, "base64 length not a multiple of 4"};
  std::size_t pad = 0;
  if (!in.empty() && in.back() == '=') pad = (in.size() >= 2 && in[in.size() - 2] == '=') ? 2 : 1;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    const std::size_t data = last ? 4 - pad : 4;
    std::uint32_t v = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      const unsigned char c = static_cast<unsigned char>(in[i + j]);
      if (j >= data) {
        if (c != '=') return Error{Errc::ParamSyntax, "bad base64 padding"};
        v <<= 6;
        continue;
      }
      const int d = kDecode[c];
      if (d < 0) return Error{Errc::ParamSyntax, "invalid base64 character"};
      v = (v << 6) | std::uint32_t(d);
    }
    out += char((v >> 16) & 0xff);
    if (data >= 3) out += char((v >> 8) & 0xff);
    if (data == 4) out += char(v & 0xff);
    // Non-zero unused bits mean a second encoding of the same bytes.
    if ((data == 2 && (v & 0xffff) != 0) || (data == 3 && (v & 0xff) != 0))
      return Error{Errc::ParamSyntax, "non-canonical base64 padding bits"};
  }
  return out;
}

}  // namespace moat

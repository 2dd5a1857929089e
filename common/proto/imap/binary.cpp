// See binary.hpp (RFC 3516, RFC 9051 §6.4.5, RFC 2045 §6).
#include "common/proto/imap/binary.hpp"

#include <cctype>

namespace moat::proto::imap {

bool valid_part_path(std::string_view s) {
  if (s.empty()) return true;
  bool start = true;  // at the first digit of a number
  for (char c : s) {
    if (c == '.') {
      if (start) return false;
      start = true;
    } else if (c >= '0' && c <= '9') {
      if (start && c == '0') return false;  // nz-number
      start = false;
    } else {
      return false;
    }
  }
  return !start;
}

std::optional<std::size_t> find_part(const mime::Message& parsed, std::string& rest) {
  std::size_t part = 0;
  while (!rest.empty() && std::isdigit(static_cast<unsigned char>(rest[0]))) {
    std::size_t n = 0, i = 0;
    while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) {
      if (n > 1000000) return std::nullopt;  // no message has that many parts; no overflow
      n = n * 10 + std::size_t(rest[i++] - '0');
    }
    // a message/rfc822 part's numbers are those of the message inside it
    std::size_t cur = part;
    if (parsed.parts[cur].is_message() && !parsed.parts[cur].children.empty()) cur = parsed.parts[cur].children[0];
    const auto& p = parsed.parts[cur];
    if (p.is_multipart()) {
      if (n == 0 || n > p.children.size()) return std::nullopt;
      part = p.children[n - 1];
    } else if (n == 1 && (cur != part || part == 0)) {
      part = cur;  // part 1 of a single-part message is its body (RFC 9051 §6.4.5)
    } else {
      return std::nullopt;  // a leaf inside a multipart has no parts
    }
    rest = i < rest.size() && rest[i] == '.' ? rest.substr(i + 1) : rest.substr(i);
  }
  return part;
}

BinaryData binary_section(std::string_view msg, const std::string& section) {
  if (section.empty()) return {std::string(msg), false};
  return binary_section(msg, mime::parse(msg), section);
}

BinaryData binary_section(std::string_view msg, const mime::Message& parsed, const std::string& section) {
  if (section.empty()) return {std::string(msg), false};
  std::string rest = section;
  const auto part = find_part(parsed, rest);
  if (!part || !rest.empty()) return {};
  const mime::Part& p = parsed.parts[*part];
  const std::string_view raw = msg.substr(p.body_begin, p.body_end - p.body_begin);
  if (p.is_multipart() || p.is_message()) return {std::string(raw), false};
  switch (p.encoding) {
    case mime::Encoding::SevenBit:
    case mime::Encoding::EightBit:
    case mime::Encoding::Binary: return {std::string(raw), false};
    case mime::Encoding::Base64:
    case mime::Encoding::QuotedPrintable: return {mime::decode_body(raw, p.encoding).data, false};
    case mime::Encoding::UuEncode:
    case mime::Encoding::Unknown: break;
  }
  return {{}, true};
}

std::string literal_of(std::string_view data) {
  const bool nul = data.find('\0') != std::string_view::npos;
  std::string out = (nul ? "~{" : "{") + std::to_string(data.size()) + "}\r\n";
  out += data;
  return out;
}

}  // namespace moat::proto::imap

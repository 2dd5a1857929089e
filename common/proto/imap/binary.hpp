// FETCH BINARY sections (RFC 3516 §4.2-4.3, RFC 9051 §6.4.5 BINARY[]):
// finding a part by its part numbers and removing its
// Content-Transfer-Encoding with the MIME parser's decoders. Sans-I/O.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/proto/mime/mime.hpp"

namespace moat::proto::imap {

// section-binary = "[" [section-part] "]": "" or nz-numbers joined by dots.
bool valid_part_path(std::string_view s);

// The part a section's leading part numbers ("1.2") name, with `rest` left
// holding what follows them ("MIME", "HEADER", "" ...); nullopt if there is
// no such part. Part 1 of a single-part message (the top level or one inside
// a message/rfc822 part) is its body (RFC 9051 §6.4.5); a leaf inside a
// multipart has no parts.
std::optional<std::size_t> find_part(const mime::Message& parsed, std::string& rest);

struct BinaryData {
  std::string data;
  bool unknown_cte = false;  // answer NO [UNKNOWN-CTE]
};

// BINARY[section] of `msg`: the part's body with its transfer encoding
// removed. An empty section is the whole message; a multipart or
// message/rfc822 part is sent as BODY[section] would send it (neither may
// have an encoding of its own, RFC 2045 §6.4); a section naming no part is
// empty, as BODY[section] is. Encodings other than RFC 2045's five
// (x-uuencode, x-anything) set unknown_cte.
BinaryData binary_section(std::string_view msg, const std::string& section);
// The same with `msg` already parsed (a FETCH with several items parses once).
BinaryData binary_section(std::string_view msg, const mime::Message& parsed, const std::string& section);

// A string as a literal, or a literal8 ("~{n}") when it holds NUL, which a
// plain literal may not (RFC 3516 §4.2).
std::string literal_of(std::string_view data);

}  // namespace moat::proto::imap

// Features of a message for the Bayesian classifier: body words, OSB word
// pairs (Yerazunis' orthogonal sparse bigrams), header tokens and URL parts.
// Reads RFC 5322 headers (RFC 2047 encoded words in Subject), RFC 2045/2046
// MIME structure and transfer encodings with a small lenient decoder of its
// own, bounded by TokenizerLimits. Hostile input: never throws, never reads
// past the limits, and any byte string gives some (possibly empty) set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moat::filters::bayes {

struct TokenizerLimits {
  std::size_t max_bytes = 512 * 1024;  // of the message looked at; the rest is ignored
  std::size_t max_tokens = 5000;       // distinct tokens kept per message
  unsigned max_depth = 8;              // multipart nesting
  unsigned max_parts = 64;             // MIME parts looked at
  std::size_t max_header_fields = 200;
};

// The distinct tokens of a message, in the order first seen. Token text is
// prefixed by where it came from: "" body word, "s:" Subject word, "h<name>:"
// other header, "u:" URL host, "up:" URL path piece, "b:" word pair, "t:" HTML
// tag, "ct:" MIME type, "hn:" header name present.
std::vector<std::string> tokenize(std::string_view message, const TokenizerLimits& limits = {});

// The 64-bit key a token is stored under (FNV-1a): the store keeps no text.
std::uint64_t token_hash(std::string_view token);

// Identifies a message for learn/unlearn bookkeeping across transport changes:
// Message-ID and body, ignoring line-ending style and header fields added on
// the way (Received:, X-Spam-*), so a quarantined copy and the original agree.
std::uint64_t message_digest(std::string_view message);

// Lenient decoders (exposed for tests): skip invalid base64 characters;
// keep malformed quoted-printable escapes as they are.
std::string decode_base64_lenient(std::string_view in, std::size_t max_out);
std::string decode_qp(std::string_view in, std::size_t max_out);
// Visible text of HTML with tags, comments, <script>/<style> content removed
// and a few entities decoded; tag names go to `tags` (lower case, distinct).
std::string html_text(std::string_view html, std::vector<std::string>* tags, std::size_t max_out);

}  // namespace moat::filters::bayes

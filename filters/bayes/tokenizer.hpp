// Features of a message for the Bayesian classifier: body words, OSB word
// pairs (Yerazunis' orthogonal sparse bigrams), header tokens (RFC 5322
// fields, RFC 2047 decoded), URL parts, HTML tag hints and the MIME
// structure (RFC 2045/2046). All decoding is the shared parser's
// (common/proto/mime): the filter hands in ScanContext::mime()/part_text(),
// `moatctl learn` and the rest go through tokenize(message), which parses
// and decodes the same way, so learning and classifying see the same tokens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/proto/mime/mime.hpp"

namespace moat::filters::bayes {

struct TokenizerLimits {
  std::size_t max_text = 512 * 1024;  // decoded text looked at, all parts together; the rest is ignored
  std::size_t max_tokens = 5000;      // distinct tokens kept per message
  std::size_t max_parts = 64;         // MIME parts looked at
  std::size_t max_header_fields = 200;
};

// The decoded text of leaf part `i` (mime::part_text: UTF-8, HTML as text).
using TextOf = std::function<std::string_view(std::size_t part)>;

// The distinct tokens of a message, in the order first seen. Token text is
// prefixed by where it came from: "" body word, "s:" Subject word, "h<name>:"
// other header, "hn:" header name present, "u:" URL host, "up:" URL path
// piece, "b:" word pair, "t:" HTML tag, "ta:" HTML tag attribute, "ct:" MIME
// type, "cs:" charset, "cte:" transfer encoding, "fx:" attachment extension,
// "ma:" MIME anomaly, "uc:" a shouted (all capitals) word, "p:" punctuation.
// `message` is the message `tree` was parsed from (CRLF lines, as received).
std::vector<std::string> tokenize(std::string_view message, const mime::Message& tree, const TextOf& text_of,
                                  const TokenizerLimits& limits = {});

// The same for a raw message from anywhere (a file, an mbox piece, the
// quarantine): normalised as SMTP would deliver it (see as_received), parsed
// with mime::parse and decoded with mime::part_text.
std::vector<std::string> tokenize(std::string_view message, const TokenizerLimits& limits = {});

// A message as moatd's filters see it: without an mbox "From " line, every
// line ending CRLF.
std::string as_received(std::string_view message);

// The 64-bit key a token is stored under (FNV-1a): the store keeps no text.
std::uint64_t token_hash(std::string_view token);

// Identifies a message for learn/unlearn bookkeeping across transport changes:
// Message-ID and body, ignoring line-ending style and header fields added on
// the way (Received:, X-Spam-*), so a quarantined copy and the original agree.
std::uint64_t message_digest(std::string_view message, const mime::Message& tree);
std::uint64_t message_digest(std::string_view message);

}  // namespace moat::filters::bayes

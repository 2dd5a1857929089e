// Lenient MIME part extraction for content scanning (RFC 2045-2047, RFC 2231,
// RFC 2046 multipart, message/rfc822): every leaf part with its transfer
// encoding undone and its file name decoded. Used by the antivirus filter
// (decoded parts go to moat-scand beside the raw message) and the attachment
// policy.
//
// Lenient on purpose: a scanner that trusts the declared boundary can be
// walked around (ClamAV PR #1720: boundary in Content-Disposition, two
// Content-Type fields, two boundary parameters, "boundary=\"X;\""). Inside a
// multipart entity every line "--TOKEN" counts as a delimiter, whatever
// boundary was declared, and each segment that opens with a header field is
// taken as a part. Finding a part that is not there costs a scan; missing
// one that is there costs a virus.
//
// This is interim: helper "mime" owns the strict parser (common/proto/mime);
// this extractor stays the scanners' second opinion.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace moat::filters::attachments {

struct Part {
  std::string filename;      // decoded (RFC 2231 / RFC 2047); "" when none
  std::string content_type;  // lower case "type/subtype"; "text/plain" when absent
  std::string body;          // transfer encoding undone (base64, quoted-printable)
  unsigned depth = 0;        // 0: the message itself
};

struct ExtractLimits {
  std::size_t max_parts = 1000;
  unsigned max_depth = 20;                  // nested multiparts and message/rfc822
  std::size_t max_bytes = 64u << 20;        // decoded bytes in all
};

struct Extraction {
  std::vector<Part> parts;
  std::string limit;  // non-empty: which limit was hit (the rest was not extracted)
};

Extraction extract_parts(std::string_view message, const ExtractLimits& limits = {});

// --- pieces, exposed for tests ---

// A header parameter (RFC 2045 §5.1) with RFC 2231 continuations
// (name*0*=, name*1=...) and charset'lang'%XX encoding. Empty when absent.
std::string header_param(std::string_view field_value, std::string_view name);
// RFC 2047 encoded words (B and Q) decoded; the bytes are kept as they are
// in their charset (only ASCII matters for extensions).
std::string decode_encoded_words(std::string_view s);
// Base64 ignoring everything outside the alphabet (RFC 2045 §6.8).
std::string decode_base64(std::string_view s);
// Quoted-printable (RFC 2045 §6.7), soft line breaks removed.
std::string decode_quoted_printable(std::string_view s);

}  // namespace moat::filters::attachments

// DKIM-Signature header fields as moat sees them before libopendkim does
// (RFC 6376 §3.5): which signatures a message carries, in header order and
// bounded, and the tags that go into Authentication-Results (RFC 8601 §2.7.1,
// RFC 6008 header.b). Sans-I/O; tag lists are parsed by common/proto/taglist.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/text.hpp"
#include "filters/authres/authres.hpp"

namespace moat::filters::dkim {

// One header field: the name as written and the whole field without its
// final CRLF (folding kept), which is what libopendkim's dkim_header() takes.
struct Field {
  std::string_view name;
  std::string_view text;
};

inline constexpr std::size_t kMaxFields = 5000;   // more is not a header section a verifier should walk

// Splits a header section (CRLF lines, no blank line) into fields. Lenient on
// purpose: a line that neither starts a field nor continues one is dropped,
// as libopendkim would refuse it too. At most kMaxFields fields.
std::vector<Field> split_fields(std::string_view header);


// The tags of one DKIM-Signature that moat itself needs. Values are as
// written with FWS removed where RFC 6376 says it is not significant.
struct Signature {
  bool valid = false;        // a tag list with v=1, a=, b=, bh=, d=, h=, s= (§3.5 REQUIRED tags)
  std::string error;         // why not, for the A-R reason
  std::string a, d, i, s, b, bh;
  std::string header_b() const { return b.substr(0, 8); }  // RFC 6008: enough to tell signatures apart
  bool sha1() const;
};

inline constexpr std::size_t kMaxTagValue = 1024;   // tags above this (other than b=) are refused

// Parses the value of one DKIM-Signature field (after the colon).
Signature parse_signature(std::string_view value);

// The DKIM-Signature fields of a header section, in order, at most `limit`;
// `more` is set when there were others beyond it.
std::vector<Signature> find_signatures(std::string_view header, std::size_t limit, bool* more = nullptr);

// The Authentication-Results entry for one signature (method "dkim").
AuthResult auth_result(const Signature& sig, std::string result, std::string reason);

}  // namespace moat::filters::dkim

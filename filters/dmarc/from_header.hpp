// The author domain DMARC judges (RFC 7489 §3.1, §6.6.1): the domain of the
// one mailbox in the one From: field (RFC 5322 §3.6.2, §3.4). Bounded and
// strict on purpose: "Composition Kills" (Chen et al., USENIX Security 2020)
// spoofs DMARC through From fields that the gateway and the mail client read
// differently (several fields, several mailboxes, "From :", a leading
// space, comments or encoded-words inside the address, obsolete routes), so
// anything but one plain mailbox is reported instead of guessed at.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moat::filters::dmarc {

// One header field: the name with trailing WSP removed, and the raw value
// after the colon (folding CRLFs kept).
struct HeaderField {
  std::string_view name;
  std::string_view value;
  std::string_view raw;       // the whole field, name through the final CRLF
  bool space_before_colon = false;  // obsolete "Name :" syntax (RFC 5322 §4.5)
};

inline constexpr std::size_t kMaxFields = 2000;

// Splits a header section (CRLF or LF lines, stops at an empty line).
// nullopt when it is malformed: a line without a colon, a continuation line
// before any field, a name with control characters or spaces, too many fields.
std::optional<std::vector<HeaderField>> split_fields(std::string_view header);


enum class FromStatus {
  Ok,          // one field, one mailbox: domain is the author domain
  NoFrom,      // no From: field, or one without a mailbox (empty, a group)
  Multiple,    // several From: fields or mailboxes; domains lists them all
  Malformed,   // not RFC 5322 syntax (or the header section is malformed)
  Ambiguous,   // syntax some clients display differently (comments or encoded-words in the address, routes, "From :")
  TooLong,     // over kMaxFromBytes or kMaxMailboxes
};

std::string_view from_status_name(FromStatus s);

inline constexpr std::size_t kMaxFromBytes = 4096;   // one unfolded From: value
inline constexpr std::size_t kMaxMailboxes = 16;

struct From {
  FromStatus status = FromStatus::NoFrom;
  std::vector<std::string> domains;  // lower case, in order; one when Ok
  std::string domain() const { return domains.empty() ? std::string() : domains.front(); }
};

// Parses the From: field(s) of a header section.
From parse_from(std::string_view header);

// The mailboxes of one From: field value (exposed for tests and fuzzing).
From parse_from_value(std::string_view value);

}  // namespace moat::filters::dmarc

// DMARC policy records (RFC 7489 §6.3, §6.4; np= from RFC 9091) and the
// Organizational Domain (RFC 7489 §3.2) from the Public Suffix List via
// libpsl, with the list of Debian's publicsuffix package.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moat::filters::dmarc {

enum class Policy { None, Quarantine, Reject };
std::string_view policy_name(Policy p);

struct Record {
  Policy p = Policy::None;
  std::optional<Policy> sp;       // subdomains; p when absent
  std::optional<Policy> np;       // non-existent subdomains (RFC 9091); sp, then p when absent
  unsigned pct = 100;
  bool adkim_strict = false;
  bool aspf_strict = false;
  std::vector<std::string> rua, ruf;
  std::string fo = "0";
  unsigned ri = 86400;
  bool p_missing = false;         // no valid p=, taken as none because rua= is valid (§6.6.3)
};

enum class RecordStatus {
  Ok,
  NotDmarc,  // does not start with "v=DMARC1": not a DMARC record at all, ignored
  Invalid,   // a DMARC record without a usable p= (and no rua= to fall back on)
};

inline constexpr std::size_t kMaxRecordBytes = 4096;
inline constexpr std::size_t kMaxUris = 16;

struct ParsedRecord {
  RecordStatus status = RecordStatus::NotDmarc;
  Record record;
};

// Tags and values per RFC 7489 §6.4: v must come first; unknown tags and
// malformed optional values fall back to their defaults (§6.3 "syntax
// errors in the remainder of the record SHOULD be discarded").
ParsedRecord parse_record(std::string_view txt);

// The registrable domain of `domain` (lower case, no trailing dot), or the
// domain itself when it is a public suffix or the list has no answer.
// nullopt when the list cannot be loaded. Thread-safe.
std::optional<std::string> org_domain(std::string_view domain);

// The raw PSL answer for the test vectors: nullopt for a public suffix,
// a leading dot or an empty name.
std::optional<std::string> registrable_domain(std::string_view domain);

}  // namespace moat::filters::dmarc

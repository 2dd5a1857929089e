// IMAP sequence sets (RFC 9051 §9 sequence-set, seq-range, "*"; RFC 3501
// §6.4.8 "n:*" semantics) kept as ranges: "1:4294967295" is one range, never
// four billion numbers. Also the compact writer used for COPYUID, ESEARCH
// ALL and VANISHED (RFC 4315, RFC 4731, RFC 7162).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace moat::proto::imap {

struct SeqRange {
  std::uint32_t lo = 0;  // 0 stands for "*" until resolved
  std::uint32_t hi = 0;
  bool operator==(const SeqRange&) const = default;
};

class SeqSet {
 public:
  static constexpr std::uint32_t kStar = 0;
  static constexpr std::size_t kMaxRanges = 10000;  // a 64 KiB command line holds about that many

  // Parses "1,3:5,7:*". Errc::ParamSyntax on bad syntax, zero, numbers over
  // 2^32-1, or more than max_ranges ranges.
  static Result<SeqSet> parse(std::string_view text, std::size_t max_ranges = kMaxRanges);

  // As written (with "*" kept); "a:b" keeps its order. For round trips.
  std::string to_string() const;
  const std::vector<SeqRange>& ranges() const { return ranges_; }
  bool has_star() const;

  // With "*" replaced by `star` (the largest message number or UID; 0 for
  // an empty mailbox, where any range with "*" selects nothing, RFC 9051
  // §6.4.8), bounds ordered, sorted and merged. Callers intersect the
  // result with what exists; nothing is expanded.
  std::vector<SeqRange> resolve(std::uint32_t star) const;

 private:
  std::vector<SeqRange> ranges_;
};

// Membership in sorted, merged ranges (the output of resolve) in O(log n).
bool contains(const std::vector<SeqRange>& merged, std::uint32_t n);
// Total numbers covered by sorted, merged ranges.
std::uint64_t count(const std::vector<SeqRange>& merged);
// Compact text for ascending numbers: {1,2,3,5} -> "1:3,5". Empty -> "".
std::string format_compact(const std::vector<std::uint32_t>& ascending);

}  // namespace moat::proto::imap

// See seqset.hpp (RFC 9051 §9 sequence-set; RFC 3501 §9).
#include "common/proto/imap/seqset.hpp"

#include <algorithm>

namespace moat::proto::imap {
namespace {

// seq-number = nz-number / "*"; nz-number = digit-nz *DIGIT, up to 2^32-1.
bool parse_number(std::string_view s, std::uint32_t& out) {
  if (s == "*") {
    out = SeqSet::kStar;
    return true;
  }
  if (s.empty() || s.size() > 10 || s[0] < '1' || s[0] > '9') return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + std::uint64_t(c - '0');
  }
  if (v > UINT32_MAX) return false;
  out = std::uint32_t(v);
  return true;
}

std::string number(std::uint32_t n) { return n == SeqSet::kStar ? "*" : std::to_string(n); }

}  // namespace

Result<SeqSet> SeqSet::parse(std::string_view text, std::size_t max_ranges) {
  SeqSet set;
  if (text.empty()) return Error{Errc::ParamSyntax, "empty sequence set"};
  for (;;) {
    const auto comma = text.find(',');
    const auto item = text.substr(0, comma);
    if (set.ranges_.size() >= max_ranges) return Error{Errc::ParamSyntax, "too many ranges"};
    const auto colon = item.find(':');
    SeqRange r;
    if (!parse_number(item.substr(0, colon), r.lo)) return Error{Errc::ParamSyntax, "bad sequence number"};
    r.hi = r.lo;
    if (colon != std::string_view::npos && !parse_number(item.substr(colon + 1), r.hi))
      return Error{Errc::ParamSyntax, "bad sequence range"};
    set.ranges_.push_back(r);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return set;
}

std::string SeqSet::to_string() const {
  std::string out;
  for (const auto& r : ranges_) {
    if (!out.empty()) out += ',';
    out += number(r.lo);
    if (r.hi != r.lo) out += ':' + number(r.hi);
  }
  return out;
}

bool SeqSet::has_star() const {
  return std::any_of(ranges_.begin(), ranges_.end(), [](const SeqRange& r) { return r.lo == kStar || r.hi == kStar; });
}

std::vector<SeqRange> SeqSet::resolve(std::uint32_t star) const {
  std::vector<SeqRange> out;
  out.reserve(ranges_.size());
  for (auto r : ranges_) {
    if (r.lo == kStar) r.lo = star;
    if (r.hi == kStar) r.hi = star;
    if (r.lo == 0 || r.hi == 0) continue;  // "*" of an empty mailbox
    if (r.lo > r.hi) std::swap(r.lo, r.hi);
    out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const SeqRange& a, const SeqRange& b) { return a.lo < b.lo; });
  std::vector<SeqRange> merged;
  for (const auto& r : out) {
    if (!merged.empty() && std::uint64_t(r.lo) <= std::uint64_t(merged.back().hi) + 1)
      merged.back().hi = std::max(merged.back().hi, r.hi);
    else
      merged.push_back(r);
  }
  return merged;
}

bool contains(const std::vector<SeqRange>& merged, std::uint32_t n) {
  auto it = std::upper_bound(merged.begin(), merged.end(), n, [](std::uint32_t v, const SeqRange& r) { return v < r.lo; });
  if (it == merged.begin()) return false;
  --it;
  return n >= it->lo && n <= it->hi;
}

std::uint64_t count(const std::vector<SeqRange>& merged) {
  std::uint64_t total = 0;
  for (const auto& r : merged) total += std::uint64_t(r.hi) - r.lo + 1;
  return total;
}

std::string format_compact(const std::vector<std::uint32_t>& ascending) {
  std::string out;
  std::size_t i = 0;
  while (i < ascending.size()) {
    std::size_t j = i;
    while (j + 1 < ascending.size() && ascending[j + 1] == ascending[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(ascending[i]);
    if (j > i) out += ':' + std::to_string(ascending[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace moat::proto::imap

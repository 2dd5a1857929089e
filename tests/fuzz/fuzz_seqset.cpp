// Fuzz target: IMAP sequence sets (RFC 9051 §9). Oracles: parse -> print ->
// parse is stable; resolve gives sorted, disjoint, non-adjacent ranges
// within [1, star]; contains() agrees with the ranges at their edges.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "common/proto/imap/seqset.hpp"

using namespace moat::proto::imap;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  std::uint32_t star = 0;
  std::memcpy(&star, data, 4);
  if (data[0] & 1) star %= 1000;  // small mailboxes too
  const std::string_view text(reinterpret_cast<const char*>(data + 4), size - 4);
  auto r = SeqSet::parse(text);
  if (!r) return 0;
  // "5:5" prints as "5"; printing is stable and keeps the ranges
  auto again = SeqSet::parse(r->to_string());
  if (!again || again->to_string() != r->to_string()) std::abort();
  if (again->resolve(star) != r->resolve(star)) std::abort();
  const auto merged = r->resolve(star);
  for (std::size_t i = 0; i < merged.size(); ++i) {
    const auto& m = merged[i];
    if (m.lo == 0 || m.lo > m.hi) std::abort();
    if (i && std::uint64_t(merged[i - 1].hi) + 1 >= m.lo) std::abort();
    if (!contains(merged, m.lo) || !contains(merged, m.hi)) std::abort();
    if (m.lo > 1 && contains(merged, m.lo - 1)) std::abort();
    if (m.hi < UINT32_MAX && contains(merged, m.hi + 1)) std::abort();
    if (star != 0 && r->has_star() && !contains(merged, star)) std::abort();
  }
  if (star == 0 && contains(merged, 0)) std::abort();
  (void)count(merged);
  return 0;
}

// Fuzz target: RFC 6376 §3.2 tag lists (DKIM-Signature, DKIM key records,
// ARC, DMARC records). Oracle: a parsed list, written back as "k=v;",
// parses to the same tags.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/proto/taglist.hpp"

using namespace moat::proto;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto t = parse_tag_list(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!t) return 0;
  if (t->tags.size() > TagList::kMaxTags) std::abort();
  std::string again;
  for (const auto& [k, v] : t->tags) again += k + "=" + v + ";";
  auto u = parse_tag_list(again);
  if (!u || u->tags != t->tags) std::abort();
  return 0;
}

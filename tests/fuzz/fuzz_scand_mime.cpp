// Fuzz target: the parts the content scanners see (filters/attachments/
// leaves: the shared MIME parse plus the lenient second reading) and the
// attachment name helpers. Oracles: limits hold (part count, decoded bytes,
// nesting of second readings), and a cleaned name has no path separator.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/proto/mime/mime.hpp"
#include "filters/attachments/attachments.hpp"
#include "filters/attachments/leaves.hpp"

using namespace moat;
using namespace moat::filters::attachments;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  LeafLimits lim;
  lim.max_parts = 50;
  lim.max_bytes = 1 << 16;
  lim.max_reparse = 3;
  auto tree = mime::parse(in);
  auto ex = collect_leaves(in, tree, lim);
  if (ex.parts.size() > lim.max_parts) std::abort();
  std::size_t bytes = 0;
  for (const auto& p : ex.parts) {
    bytes += p.body.size();
    if (!p.decoded && !p.hidden && p.body.size() > in.size()) std::abort();
    auto name = clean_name(p.filename);
    if (name.find('/') != std::string::npos || name.find('\\') != std::string::npos) std::abort();
    (void)extension(name);
  }
  if (bytes > lim.max_bytes) std::abort();
  return 0;
}

// Fuzz target: the lenient MIME extraction the scanners rely on
// (filters/attachments/parts) and the attachment name helpers. Oracles:
// limits hold (part count, decoded bytes), and no part is deeper than allowed.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "filters/attachments/attachments.hpp"
#include "filters/attachments/parts.hpp"

using namespace moat::filters::attachments;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  ExtractLimits lim;
  lim.max_parts = 50;
  lim.max_depth = 8;
  lim.max_bytes = 1 << 16;
  auto ex = extract_parts(in, lim);
  if (ex.parts.size() > lim.max_parts) std::abort();
  std::size_t bytes = 0;
  for (const auto& p : ex.parts) {
    bytes += p.body.size();
    if (p.depth > lim.max_depth) std::abort();
    auto name = clean_name(p.filename);
    if (name.find('/') != std::string::npos || name.find('\\') != std::string::npos) std::abort();
    (void)extension(name);
  }
  if (bytes > lim.max_bytes) std::abort();
  (void)header_param(in, "filename");
  (void)decode_encoded_words(in);
  return 0;
}

// Fuzz target: ARC header sets (RFC 8617) through chain validation, plus the
// RFC 6376 §3.4 canonicalizations. Keys: every lookup gets the same Ed25519
// key record, so signature checks run too. Oracles: no crash; a chain never
// passes with more than 50 sets; relaxed header and body canonicalization
// are idempotent.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "filters/arc/arc.hpp"

using namespace moat::filters::arc;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 65536) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  static const Keys keys = [](const std::string&) -> std::optional<std::string> {
    return std::string("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
  };
  auto names = key_names(in);
  if (names.size() > kMaxInstances + 1) std::abort();
  Verification v = verify(in, keys);
  if (v.instances > kMaxInstances) std::abort();
  std::string body = canon_body(in, true);
  if (canon_body(body, true) != body) std::abort();
  auto colon = in.find(':');
  if (colon != std::string_view::npos && in.find_first_of("\r\n") == std::string_view::npos) {
    std::string h = canon_header_relaxed(in);
    if (canon_header_relaxed(h) != h) std::abort();
  }
  (void)without_b(in);
  return 0;
}

// Fuzz target: modified UTF-7 (RFC 3501 §5.1.3) and mailbox name checks.
// Oracles: decode -> encode gives the input back (only canonical forms
// decode), encode -> decode gives valid UTF-8 back, and an accepted mailbox
// name has no "." / ".." level, no empty level and no control character.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/proto/imap/mutf7.hpp"

using namespace moat::proto::imap;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto d = mutf7_decode(in)) {
    if (!valid_utf8(*d)) std::abort();
    auto e = mutf7_encode(*d);
    if (!e || *e != in) std::abort();
  }
  if (auto e = mutf7_encode(in)) {
    auto d = mutf7_decode(*e);
    if (!d || *d != in) std::abort();
  }
  if (auto m = check_mailbox_name(in)) {
    const std::string& n = *m;
    if (n.empty() || n.front() == '/' || n.back() == '/' || n.find("//") != std::string::npos) std::abort();
    if (n == ".." || n.starts_with("../") || n.ends_with("/..") || n.find("/../") != std::string::npos) std::abort();
    for (char c : n)
      if (static_cast<unsigned char>(c) < 0x20) std::abort();
  }
  return 0;
}

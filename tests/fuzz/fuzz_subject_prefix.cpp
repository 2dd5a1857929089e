// Fuzz target: the Subject prefix rewrite of Tag (filters/policy.hpp
// prefix_subject) over hostile header sections. Oracles: applying it twice
// changes nothing more (no double prefix), and every byte outside the one
// rewritten field is kept: input and output share a prefix and a suffix
// that leave out at most whitespace of the input.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "filters/policy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  constexpr std::string_view kPrefix = "[SPAM] ";
  auto out = moat::filters::prefix_subject(in, kPrefix);
  if (!out) return 0;
  if (out->size() > in.size() + kPrefix.size() + 32) std::abort();
  if (moat::filters::prefix_subject(*out, kPrefix)) std::abort();
  std::size_t pre = 0;
  while (pre < in.size() && pre < out->size() && in[pre] == (*out)[pre]) ++pre;
  std::size_t suf = 0;
  while (suf < in.size() - pre && suf < out->size() - pre && in[in.size() - 1 - suf] == (*out)[out->size() - 1 - suf])
    ++suf;
  for (std::size_t i = pre; i < in.size() - suf; ++i)
    if (in[i] != ' ' && in[i] != '\t') std::abort();
  return 0;
}

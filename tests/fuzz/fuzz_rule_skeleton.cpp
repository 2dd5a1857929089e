// Fuzz target: alphanumeric skeletons of regexes (rules/skeleton.hpp), the
// gates of Engine::Gated. Oracles (differential, PCRE2 on both sides), on
// every ASCII subject taken from the input: where the pattern matches the
// subject, the skeleton matches its squeezed form; and PCRE2 started where
// the rule set starts it (from the skeleton's earliest match end, less the
// pattern's longest match) answers like PCRE2 from the start. Neither the
// builder nor the squeezing may crash or loop on any input.
// Input: pattern, a NUL byte, then subjects separated by newlines.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "rules/skeleton.hpp"

using namespace moat::rules;

namespace {

pcre2_code* compile(std::string_view p) {
  int err = 0;
  PCRE2_SIZE off = 0;
  return pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), PCRE2_CASELESS, &err, &off, nullptr);
}

int match(pcre2_code* code, std::string_view s, std::size_t start, pcre2_match_data* md, pcre2_match_context* mc) {
  return pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), start, 0, md, mc);
}

bool limited(int rc) { return rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto nul = in.find('\0');
  std::string_view pattern = in.substr(0, nul);
  std::string_view subjects = nul == std::string_view::npos ? std::string_view{} : in.substr(nul + 1);
  if (pattern.size() > 4096) return 0;
  auto sk = alnum_skeleton(pattern, "i");
  std::string squeezed;
  std::vector<std::uint32_t> pos;
  squeeze_alnum(subjects, squeezed, pos);
  if (!sk) return 0;
  pcre2_code* full = compile(pattern);
  if (!full) return 0;  // the rule set refuses such a rule before it builds a gate
  pcre2_code* gate = compile("(?:" + sk->pattern + ")");
  pcre2_code* at_end = compile("(?:" + sk->pattern + ")\\z");
  if (!gate || !at_end) std::abort();  // a skeleton is always a valid regex
  auto* md = pcre2_match_data_create(1, nullptr);
  auto* mc = pcre2_match_context_create(nullptr);
  pcre2_set_match_limit(mc, 100000);
  for (int n = 0; n < 16; ++n) {
    auto nl = subjects.find('\n');
    std::string s(subjects.substr(0, nl));
    for (auto& c : s) c = static_cast<char>(c & 0x7f);  // gates run on ASCII buffers only
    squeeze_alnum(s, squeezed, pos);
    const int a = match(full, s, 0, md, mc);
    const int g = match(gate, squeezed, 0, md, mc);
    if (!limited(a) && !limited(g) && a >= 0 && g < 0) std::abort();
    if (a >= 0 && g >= 0 && s.size() <= 256) {
      // The earliest end of a skeleton match, as Hyperscan reports it.
      std::size_t e = 0;
      bool cut = false;
      for (std::size_t k = 1; k <= squeezed.size() && !e; ++k) {
        const int rc = match(at_end, std::string_view(squeezed).substr(0, k), 0, md, mc);
        cut = cut || limited(rc);
        if (rc >= 0) e = k;
      }
      if (!e && !cut) std::abort();
      std::size_t start = 0;
      if (e && sk->max_width != kUnbounded) {
        const std::size_t last = std::size_t(pos[e - 1]) + 1;
        start = last > sk->max_width ? last - sk->max_width : 0;
      }
      const int b = match(full, s, start, md, mc);
      if (!limited(b) && b < 0) std::abort();
    }
    if (nl == std::string_view::npos) break;
    subjects.remove_prefix(nl + 1);
  }
  pcre2_match_context_free(mc);
  pcre2_match_data_free(md);
  pcre2_code_free(at_end);
  pcre2_code_free(gate);
  pcre2_code_free(full);
  return 0;
}

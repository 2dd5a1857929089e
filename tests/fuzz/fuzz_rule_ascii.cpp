// Fuzz target: the ASCII variant and the search form of a regex
// (rules/ascii_variant.hpp). Oracles (differential, PCRE2 on both sides):
// when the variant is Reduced or Never it answers like the pattern on every
// ASCII subject taken from the input; the search form answers like the
// pattern on every subject. Neither may crash or loop on any pattern.
// Input: pattern, a NUL byte, then subjects separated by newlines.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "rules/ascii_variant.hpp"

using namespace moat::rules;

namespace {

pcre2_code* compile(std::string_view p) {
  int err = 0;
  PCRE2_SIZE off = 0;
  return pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), PCRE2_CASELESS, &err, &off, nullptr);
}

int match(pcre2_code* code, std::string_view s, pcre2_match_data* md, pcre2_match_context* mc) {
  return pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, 0, md, mc);
}

bool limited(int rc) { return rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT; }

// The search form must agree with the pattern on every subject, any bytes.
void check_form(pcre2_code* full, const std::string& form, std::string_view subjects) {
  pcre2_code* code = compile(form);
  if (!code) return;  // the rule set keeps the pattern as written then
  auto* md = pcre2_match_data_create(1, nullptr);
  auto* mc = pcre2_match_context_create(nullptr);
  pcre2_set_match_limit(mc, 100000);
  for (;;) {
    auto nl = subjects.find('\n');
    std::string_view s = subjects.substr(0, nl);
    int a = match(full, s, md, mc), b = match(code, s, md, mc);
    if (!limited(a) && !limited(b) && (a >= 0) != (b >= 0)) std::abort();
    if (nl == std::string_view::npos) break;
    subjects.remove_prefix(nl + 1);
  }
  pcre2_match_context_free(mc);
  pcre2_match_data_free(md);
  pcre2_code_free(code);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto nul = in.find('\0');
  std::string_view pattern = in.substr(0, nul);
  std::string_view subjects = nul == std::string_view::npos ? std::string_view{} : in.substr(nul + 1);
  if (pattern.size() > 4096) return 0;
  const AsciiVariant v = ascii_variant(pattern, "i");
  const std::string form = search_form(pattern, "i");
  if (v.kind == AsciiVariant::Kind::Same && form == pattern) return 0;
  pcre2_code* full = compile(pattern);
  if (!full) return 0;  // the rule set refuses such a rule before it asks for a variant
  if (form != pattern) check_form(full, form, subjects);
  if (v.kind == AsciiVariant::Kind::Same) {
    pcre2_code_free(full);
    return 0;
  }
  pcre2_code* reduced = v.kind == AsciiVariant::Kind::Reduced ? compile(v.pattern) : nullptr;
  // The rule set falls back to the pattern as written when the variant does
  // not compile; that fallback is correct, so it is not a finding here.
  auto* md = pcre2_match_data_create(1, nullptr);
  auto* mc = pcre2_match_context_create(nullptr);
  pcre2_set_match_limit(mc, 100000);
  while (v.kind == AsciiVariant::Kind::Never || reduced) {
    auto nl = subjects.find('\n');
    std::string s(subjects.substr(0, nl));
    for (auto& c : s) c = static_cast<char>(c & 0x7f);  // ASCII subjects only
    int a = match(full, s, md, mc);
    int b = reduced ? match(reduced, s, md, mc) : PCRE2_ERROR_NOMATCH;
    // Match limits cut runs short at different points in the two patterns.
    if (!limited(a) && !limited(b) && (a >= 0) != (b >= 0)) std::abort();
    if (nl == std::string_view::npos) break;
    subjects.remove_prefix(nl + 1);
  }
  pcre2_match_context_free(mc);
  pcre2_match_data_free(md);
  if (reduced) pcre2_code_free(reduced);
  pcre2_code_free(full);
  return 0;
}

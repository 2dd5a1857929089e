// The alphanumeric skeleton of a regex: a gate that must match the squeezed
// buffer (its letters and digits only) wherever the regex matches the buffer.
// SpamAssassin's obfuscated-word rules (__DRUGS_*: letters joined by
// `[_\W]{0,3}`, look-alike classes such as `[i1!|l]`) have no literal
// Hyperscan can anchor on and cost most of the rules stage's Hyperscan time;
// their skeletons (`ph[e3]nt[e3]rm[i1l]?n[e3]`) are literal-rich and cheap.
// (PCRE2 syntax, non-UTF mode, ASCII buffers only, as rules/ruleset.cpp uses it.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moat::rules {

// Why the gate is exact (docs/rules.md, "Skeleton gates"): let squeeze(s)
// keep only the bytes [A-Za-z0-9] of s. Any substring m of a buffer T maps
// to a contiguous substring squeeze(m) of squeeze(T). The skeleton S of a
// pattern P is built so that squeeze(m) is in L(S) for every m in L(P) over
// ASCII bytes: a byte the pattern may match that is not alphanumeric may
// vanish (its position becomes optional), assertions and lookarounds are
// dropped (they only narrow P), bounded repeats become unbounded ones. So
// "S does not match squeeze(T)" proves "P does not match T", and PCRE2 runs
// P only on buffers S passes, starting near S's first match.
struct Skeleton {
  std::string pattern;  // over [A-Za-z0-9]; compiled with the rule's flags
  // Longest byte count a match of the pattern can span (lookarounds not
  // counted: PCRE2 sees the whole buffer), kUnbounded when not bounded.
  std::size_t max_width = 0;
  // Longest run of consecutive mandatory single-byte positions, each a set
  // of at most 3 bytes after case folding: roughly the longest literal a
  // literal matcher can anchor on, in the pattern and in its skeleton.
  std::size_t pattern_run = 0, skeleton_run = 0;
};
inline constexpr std::size_t kUnbounded = std::numeric_limits<std::size_t>::max();

// nullopt when the pattern uses something the builder does not model
// (backreferences, recursion, conditionals, \Q, \p, verbs, inline option
// groups, /x) or cannot match an ASCII buffer, or when the skeleton can be
// empty (a gate that always passes).
std::optional<Skeleton> alnum_skeleton(std::string_view pattern, std::string_view flags);

// out = the [A-Za-z0-9] bytes of in; pos[k] = offset in `in` of out[k].
void squeeze_alnum(std::string_view in, std::string& out, std::vector<std::uint32_t>& pos);

}  // namespace moat::rules

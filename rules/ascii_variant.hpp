// The ASCII variant of a regex: the same pattern with every alternative that
// needs a byte >= 0x80 removed. On a buffer with no such byte it matches
// exactly where the original does, and it is far smaller: SpamAssassin's
// FUZZY_* rules are 3-9 KB of UTF-8 look-alike alternations that shrink to a
// few hundred bytes, which Hyperscan compiles in milliseconds and scans
// quickly, where the originals take seconds to compile and run on PCRE2.
// (PCRE2 syntax, non-UTF mode, as rules/ruleset.cpp compiles it.)
#pragma once

#include <string>
#include <string_view>

namespace moat::rules {

struct AsciiVariant {
  enum class Kind {
    Same,     // nothing to drop (or a construct we do not analyse): use the pattern as is
    Reduced,  // `pattern` is the smaller, equivalent-on-ASCII form
    Never,    // the pattern cannot match a buffer without bytes >= 0x80
  };
  Kind kind = Kind::Same;
  std::string pattern;
};

// flags: the rule's "imsx" subset. Patterns with x, backreferences,
// recursion, conditionals, \Q..\E, \p or verbs are left alone (Same).
AsciiVariant ascii_variant(std::string_view pattern, std::string_view flags);

// The part of a pattern that decides whether it matches anywhere: optional
// atoms at either end of the top level (`(?:a?\s?copy\sof\s)?` in front of
// SpamAssassin's __FILL_THIS_FORM_* rules) cannot change that, only how long
// the match is, so they are cut off. The rules only ask "does it match";
// PCRE2 then gets a start-of-match optimisation and Hyperscan a smaller
// pattern. Possessive quantifiers, top-level alternatives and anything
// ascii_variant() gives up on leave the pattern as written.
std::string search_form(std::string_view pattern, std::string_view flags);

}  // namespace moat::rules

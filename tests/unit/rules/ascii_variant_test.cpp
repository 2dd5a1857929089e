// The ASCII variant of a pattern (rules/ascii_variant.hpp) and how the rule
// set uses it: on ASCII buffers it must match exactly where the pattern as
// written does; buffers with high bytes still get the pattern as written.
#include <catch2/catch.hpp>

#include <random>

#include "filters/rules/message_input.hpp"
#include "rules/ascii_variant.hpp"
#include "rules/rule_file.hpp"
#include "rules/ruleset.hpp"
#include "tests/support/pcre_oracle.hpp"

using namespace moat::rules;
using Kind = AsciiVariant::Kind;

namespace {

using moat::test::Re;

// A SpamAssassin-style look-alike rule: "pay" with UTF-8 and entity forms.
const std::string kFuzzy =
    "(?:^|\\W)(?!pay\\b)(?:[pP\\xfe]|[\\xd1][\\x80]|[\\xd2][\\x8e\\x8f]|[\\xcf][\\x81\\xb7\\xb8]|&\\#112;)"
    "(?:[aA\\@4\\xe0-\\xe6]|[\\xc3][\\xa0-\\xa5]|[\\xc4][\\x80-\\x85]|[\\xce][\\x86\\x91\\xac\\xb1]|[\\xd0][\\x90\\xb0])"
    "(?:[yY\\xfd]|[\\xd1][\\x83]|[\\xce][\\xa5\\xb3]|[\\xd2][\\xae\\xaf])(?:$|\\W)";

}  // namespace

TEST_CASE("ascii variant: what is dropped and what is kept", "[rules][ascii]") {
  struct Case {
    std::string pattern, flags;
    Kind kind;
    std::string reduced;
  };
  const std::vector<Case> cases = {
      {"abc", "", Kind::Same, ""},
      {"a(?:b|\\xc3\\xa9)c", "", Kind::Reduced, "a(?:b)c"},
      {"a(?:\\xc3\\xa9)?c", "", Kind::Reduced, "ac"},
      {"a(?:\\xc3\\xa9)+c", "", Kind::Never, ""},
      {"\\xe9", "", Kind::Never, ""},
      {"x(?!\\xe9)y", "", Kind::Reduced, "xy"},           // a negative lookahead that cannot match always holds
      {"x(?=\\xe9|z)y", "", Kind::Reduced, "x(?=z)y"},
      {"x(?=\\xe9)y", "", Kind::Never, ""},
      {"[a\\xe9]b", "", Kind::Same, ""},                 // classes keep their high members: harmless
      {"[\\xe0-\\xff]{0,3}b", "", Kind::Reduced, "b"},
      {"[\\xe0-\\xff]{2}b", "", Kind::Never, ""},
      {"[^\\xe0]b", "", Kind::Same, ""},
      {"(a|\\x{e9})b", "", Kind::Reduced, "(a)b"},
      {"a{2,3}|\\xe9{1,}", "", Kind::Reduced, "a{2,3}"},
      {"(?i)x|\\xe9", "", Kind::Reduced, "(?i)x"},
      {"(?<n>a|\\xe9)", "", Kind::Reduced, "(?<n>a)"},
      {"a(?#\\xe9 comment)b", "", Kind::Reduced, "ab"},
      // Left alone: what the reducer does not model.
      {"(a|\\xe9)\\1", "", Kind::Same, ""},
      {"\\Q\\xe9\\E", "", Kind::Same, ""},
      {"a|\\xe9", "x", Kind::Same, ""},
      {"(?|a|\\xe9)", "", Kind::Same, ""},
      {"a)|\\xe9", "", Kind::Same, ""},
  };
  for (const auto& c : cases) {
    INFO(c.pattern);
    auto v = ascii_variant(c.pattern, c.flags);
    CHECK(v.kind == c.kind);
    if (c.kind == Kind::Reduced) CHECK(v.pattern == c.reduced);
  }
}

TEST_CASE("ascii variant: same answers as the pattern on ASCII text", "[rules][ascii]") {
  const std::vector<std::string> patterns = {
      kFuzzy,
      "\\b(?:v|\\\\\\/)[_\\W]{0,3}(?:[i1!|l]|\\xc3\\xad)[_\\W]{0,3}a\\b",
      "(?<!\\xe2\\x80\\x9c)quote(?:d|\\xe2\\x80\\x9d)?\\W",
      "(?:&\\#(?:97|x61);|a|\\xe0)(?:b|\\xc3[\\x80-\\x85]){1,2}c?",
  };
  // Random strings of pieces that exercise the patterns.
  const std::vector<std::string> pieces = {"p", "P", "a", "A", "y", "4", "@", "&#112;", "&#97;", "&#x61;", " ", ".",
                                           "\\/", "v", "i", "1", "!", "l", "_", "b", "c", "quote", "d", "pay", "&#"};
  std::mt19937 rng(42);
  for (const auto& p : patterns) {
    INFO(p);
    auto v = ascii_variant(p, "i");
    REQUIRE(v.kind == Kind::Reduced);
    Re full(p, true), reduced(v.pattern, true);
    std::size_t hits = 0;
    for (int n = 0; n < 3000; ++n) {
      std::string s;
      const auto len = rng() % 8;
      for (unsigned k = 0; k < len; ++k) s += pieces[rng() % pieces.size()];
      INFO(s);
      const bool f = full.match(s);
      REQUIRE(reduced.match(s) == f);
      hits += f;
    }
    // The strings do reach the patterns, or the comparison says nothing.
    CHECK(hits > 0);
  }
}

TEST_CASE("ascii variant: the rule set runs the variant on ASCII bodies and the pattern elsewhere", "[rules][ascii]") {
  auto rules = parse("body FUZZY_PAY /" + kFuzzy + "/i\nbody PLAIN /plain/\n", "t.rules");
  REQUIRE(rules);
  CompileReport rep;
  auto set = RuleSet::compile(std::move(*rules), {}, &rep);
  REQUIRE(set);
  CHECK(rep.ascii_variants == 1);
  CHECK((*set)->ascii_engine(0) != Engine::None);
  CHECK((*set)->ascii_engine(1) == Engine::None);
  auto hits = [&](const std::string& body) {
    Input in;
    in.body = body;
    auto v = (*set)->evaluate(in);
    REQUIRE(v);
    return std::vector<std::int64_t>(*v);
  };
  CHECK(hits("please p4y now") == std::vector<std::int64_t>{1, 0});     // ASCII, look-alike
  CHECK(hits("please pay now plain") == std::vector<std::int64_t>{0, 1});  // the word itself is excluded
  CHECK(hits("please &#112;ay now") == std::vector<std::int64_t>{1, 0});
  // High bytes: the full pattern decides (Cyrillic "р" for p, "à" for a).
  CHECK(hits("please \xd1\x80\xc3\xa0y now") == std::vector<std::int64_t>{1, 0});
  CHECK(hits("caf\xc3\xa9 pay") == std::vector<std::int64_t>{0, 0});
  CHECK(hits("caf\xc3\xa9 p4y") == std::vector<std::int64_t>{1, 0});
}

TEST_CASE("search form: optional ends cut off, whether it matches unchanged", "[rules][ascii]") {
  struct Case {
    std::string pattern, form;
  };
  const std::vector<Case> cases = {
      {"(?:a?\\s?copy\\sof\\s)?(?:your\\s)?bank\\sdetails:?\\s*", "bank\\sdetails"},
      {"x*yz?", "y"},
      {"abc", "abc"},
      {"a?b|c", "a?b|c"},         // top-level alternatives: left alone
      {"a?+ab", "a?+ab"},         // possessive: "a?+ab" does not match "ab"
      {"(?:x)?(?:y)?", "(?:x)?(?:y)?"},  // matches the empty string: left alone
      {"(a)?\\1b", "(a)?\\1b"},   // backreference: left alone
      {"(?i)a?b", "(?i)a?b"},     // the option is not optional, so nothing before b goes
  };
  for (const auto& c : cases) {
    INFO(c.pattern);
    CHECK(search_form(c.pattern, "") == c.form);
  }
  // Differential: same answers on strings built from the pieces.
  const std::string p = "(?:a?\\s?copy\\sof\\s)?(?:(?:your|din)[\\s,:]{1,5})?(?:full\\s?){0,3}(?:bank|acc(?:oun)?t)\\s(?:name|code)(?::\\s*)?";
  Re full(p, true), form(search_form(p, "i"), true);
  const std::vector<std::string> pieces = {"a", " ", "copy", "of", "your", ",", "full", "bank", "account", "acct",
                                           "name", "code", ":", "x"};
  std::mt19937 rng(7);
  std::size_t hits = 0;
  for (int n = 0; n < 3000; ++n) {
    std::string s;
    const auto len = rng() % 9;
    for (unsigned k = 0; k < len; ++k) s += pieces[rng() % pieces.size()];
    INFO(s);
    const bool f = full.match(s);
    REQUIRE(form.match(s) == f);
    hits += f;
  }
  CHECK(hits > 0);
}

TEST_CASE("ascii variant: header rules keep to their own field in every group", "[rules][ascii]") {
  // A look-alike long enough to get a variant, on Subject; a plain rule on From.
  auto rules = parse("header SUBJ_PAY Subject =~ /" + kFuzzy + "/i\nheader FROM_PAY From =~ /p4y/\n", "t.rules");
  REQUIRE(rules);
  CompileReport rep;
  auto set = RuleSet::compile(std::move(*rules), {}, &rep);
  REQUIRE(set);
  REQUIRE(rep.ascii_variants == 1);
  auto hits = [&](const std::string& subject, const std::string& from) {
    Input in;
    in.headers.push_back({"subject", subject, subject});
    in.headers.push_back({"from", from, from});
    auto v = (*set)->evaluate(in);
    REQUIRE(v);
    return std::vector<std::int64_t>(*v);
  };
  CHECK(hits("a p4y offer", "x@example.org") == std::vector<std::int64_t>{1, 0});
  CHECK(hits("x", "p4y@example.org") == std::vector<std::int64_t>{0, 1});  // From's text is not Subject's
  CHECK(hits("a \xd1\x80\xc3\xa0y offer", "x") == std::vector<std::int64_t>{1, 0});
  CHECK(hits("caf\xc3\xa9", "a p4y b") == std::vector<std::int64_t>{0, 1});
}

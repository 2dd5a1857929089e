// Skeleton gates (rules/skeleton.hpp, Engine::Gated): the skeleton of a
// pattern must match the squeezed buffer wherever the pattern matches the
// buffer, PCRE2 started where the gate says must find every match, and the
// rule set with gates must answer exactly like PCRE2 one pattern at a time.
#include <catch2/catch.hpp>

#include <filesystem>
#include <random>
#include <unistd.h>

#include "rules/rule_file.hpp"
#include "rules/ruleset.hpp"
#include "rules/skeleton.hpp"
#include "tests/support/pcre_oracle.hpp"

using namespace moat::rules;

namespace {

using moat::test::Re;

// SpamAssassin's obfuscated-word style (__DRUGS_*), plus a few shapes the
// builder must get right: lookarounds, alternatives, \w, dots, bounded
// repeats, classes mixing letters and punctuation.
const std::vector<std::string> kPatterns = {
    "(?:\\b|\\s)[_\\W]{0,3}p[_\\W]{0,3}h[_\\W]{0,3}[e3\\xE8-\\xEB][_\\W]{0,3}n[_\\W]{0,3}t[_\\W]{0,3}[e3\\xE8-\\xEB]"
    "[_\\W]{0,3}r[_\\W]{0,3}m[_\\W]{0,3}[i1!|l\\xEC-\\xEF][_\\W]{0,3}n[_\\W]{0,3}[e3\\xE8-\\xEB][_\\W]{0,3}(?:\\b|\\s)",
    "(?<![a-z])_{0,3}h[_\\W]?y[_\\W]?d[_\\W]?r[_\\W]?[o0\\xF2-\\xF6][_\\W]?c[_\\W]?[o0\\xF2-\\xF6]_{0,3}(?=\\W|$)",
    "(?!cialis)c[_\\W]{0,3}[i1!|l][_\\W]{0,3}[a4@][_\\W]{0,3}l[_\\W]{0,3}[i1!|l][_\\W]{0,3}s(?=\\W)",
    "(?<=\\s)ul[-.]?tr[a4@]m\\b",
    "re(?:mo|\\.m\\.o)ve.{0,2}me",
    "[xz]{2,4}\\w?q",
};

// Subjects built from the letters the patterns use, separators, digits and
// look-alike punctuation: matches are common, near misses more so.
std::string random_subject(std::mt19937& rng, std::size_t len) {
  static const std::string kAlphabet = "phentrmiycodlasuvxzqPHENT3014!|@_-. \n";
  std::string s;
  for (std::size_t i = 0; i < len; ++i) s += kAlphabet[rng() % kAlphabet.size()];
  return s;
}

std::vector<std::string> planted(std::mt19937& rng) {
  std::vector<std::string> out;
  const std::vector<std::string> words = {"phentermine", "p-h-e-n-t-e-r-m-i-n-e", "ph3nt3rm!n3", "p h e n t e r m i n e",
                                          "hydroco", "h_y_d_r_0_c_o", "c!@l!s", "c.i.a.l.i.s", "cialis",
                                          " ul-tr@m ", "re.m.o.ve me", "remove..me", "xxzq", "zz_q"};
  for (int k = 0; k < 300; ++k) {
    std::string s = random_subject(rng, rng() % 120);
    s.insert(rng() % (s.size() + 1), words[rng() % words.size()]);
    out.push_back(std::move(s));
  }
  for (int k = 0; k < 300; ++k) out.push_back(random_subject(rng, rng() % 60));
  return out;
}

// The earliest end of a skeleton match in squeezed (what the rule set takes
// from Hyperscan), by PCRE2: 0 when none.
std::size_t earliest_end(const std::string& skeleton, bool caseless, const std::string& squeezed) {
  Re at_end("(?:" + skeleton + ")\\z", caseless);
  for (std::size_t e = 1; e <= squeezed.size(); ++e)
    if (at_end.match(std::string_view(squeezed).substr(0, e))) return e;
  return 0;
}

}  // namespace

TEST_CASE("skeleton: what the gate looks like", "[rules][skeleton]") {
  struct Case {
    std::string pattern, flags, skeleton;
    std::size_t width, pattern_run, skeleton_run;
  };
  const std::vector<Case> cases = {
      // Separators vanish, a class with a digit look-alike stays, the
      // high bytes (never in an ASCII buffer) go.
      {"\\bph[_\\W]{0,3}[e3\\xE8][_\\W]{0,3}n", "i", "(?:[Pp][Hh][3Ee][Nn])", 10, 2, 4},
      // "!" and "|" vanish, so that letter becomes optional.
      {"v[_\\W]?[i1!|]agra", "", "(?:v[1i]?agra)", 7, 4, 4},
      {"a(?=b)c\\b$", "", "(?:ac)", 2, 2, 2},
      {"a(?<name>b|\\.)c", "", "(?:a(?:b)?c)", 3, 1, 1},
      {"x[^a-z]y", "", "(?:x[0-9A-Z]?y)", 3, 1, 1},
      {"\\d{2,5}\\s\\w", "", "(?:[0-9]{2,}[0-9A-Za-z]?)", 7, 0, 0},
      {"[\\xe0-\\xff]a|bc", "", "(?:bc)", 2, 2, 1},
      {"ab+c", "", "(?:ab+c)", kUnbounded, 2, 2},
  };
  for (const auto& c : cases) {
    INFO(c.pattern);
    auto sk = alnum_skeleton(c.pattern, c.flags);
    REQUIRE(sk);
    CHECK(sk->pattern == c.skeleton);
    CHECK(sk->max_width == c.width);
    CHECK(sk->pattern_run == c.pattern_run);
    CHECK(sk->skeleton_run == c.skeleton_run);
  }
  // No gate: it could be empty (always passes), or the builder does not
  // model the construct.
  for (std::string p : {"(?:-|_)+", "a?", "a\\1", "q(?i:u)", "[[:alpha:]]x", "\\Qab\\E", "(?|a|b)", "(*UTF)a"}) {
    INFO(p);
    CHECK_FALSE(alnum_skeleton(p, ""));
  }
  CHECK_FALSE(alnum_skeleton("abc", "x"));
  CHECK_FALSE(alnum_skeleton("[\\x80-\\xff]+", ""));  // cannot match an ASCII buffer
}

TEST_CASE("skeleton: squeezing keeps letters and digits and where they were", "[rules][skeleton]") {
  std::string out;
  std::vector<std::uint32_t> pos;
  squeeze_alnum("V-i_a\xc3\xa9g r!a 4u", out, pos);
  CHECK(out == "Viagra4u");
  CHECK(pos == std::vector<std::uint32_t>{0, 2, 4, 7, 9, 11, 13, 14});
  squeeze_alnum("", out, pos);
  CHECK(out.empty());
  CHECK(pos.empty());
}

TEST_CASE("skeleton: wherever the pattern matches, the gate does, and PCRE2 from the gate's start finds it",
          "[rules][skeleton]") {
  std::mt19937 rng(4242);
  const auto subjects = planted(rng);
  std::size_t matched = 0;
  for (const auto& p : kPatterns) {
    for (const bool caseless : {false, true}) {
      INFO(p << (caseless ? " /i" : ""));
      auto sk = alnum_skeleton(p, caseless ? "i" : "");
      REQUIRE(sk);
      Re full(p, caseless), gate(sk->pattern, caseless);
      std::string squeezed;
      std::vector<std::uint32_t> pos;
      for (const auto& s : subjects) {
        INFO(s);
        squeeze_alnum(s, squeezed, pos);
        const bool m = full.match(s);
        const bool g = gate.match(squeezed);
        if (m) CHECK(g);  // the gate is a necessary condition
        if (!g) continue;
        const std::size_t e = earliest_end(sk->pattern, caseless, squeezed);
        REQUIRE(e > 0);
        std::size_t start = 0;
        if (sk->max_width != kUnbounded) {
          const std::size_t last = std::size_t(pos[e - 1]) + 1;
          start = last > sk->max_width ? last - sk->max_width : 0;
        }
        CHECK(full.match(s, start) == m);
        matched += m;
      }
    }
  }
  CHECK(matched > 200);  // the subjects do exercise matches
}

TEST_CASE("skeleton gates: the rule set answers like PCRE2 on every body", "[rules][skeleton]") {
  std::vector<Rule> rules;
  for (std::size_t k = 0; k < kPatterns.size(); ++k) {
    Rule r;
    r.cls = RuleClass::Body;
    r.symbol = "G" + std::to_string(k);
    r.pattern = kPatterns[k];
    r.flags = "i";
    r.file = "t.rules";
    r.line = static_cast<unsigned>(k + 1);
    rules.push_back(r);
  }
  const auto cache = std::filesystem::temp_directory_path() / ("moat-skeleton-test-" + std::to_string(::getpid()));
  CompileOptions opts;
  opts.cache_dir = cache;
  CompileReport rep;
  auto set = RuleSet::compile(rules, opts, &rep);
  REQUIRE(set);
  // The obfuscated words whose skeletons have a literal get gates; the
  // others ("c[1il]?[4a]?l..." has none of 3 bytes, "ul...tr[a4@]m" has
  // its own) stay in Hyperscan, as written.
  CHECK(rep.gated == 2);
  CHECK((*set)->ascii_engine(0) == Engine::Gated);
  CHECK((*set)->ascii_engine(1) == Engine::Gated);
  CHECK((*set)->engine(0) == Engine::Prefilter);  // as written (heavy repeats), for buffers with high bytes
  for (std::size_t k = 2; k < kPatterns.size(); ++k) CHECK((*set)->ascii_engine(k) != Engine::Gated);
  CompileReport rep2;
  auto cached = RuleSet::compile(rules, opts, &rep2);
  REQUIRE(cached);
  CHECK(rep2.from_cache);
  CHECK(rep2.gated == 2);
  opts.gates = false;
  CompileReport rep3;
  auto ungated = RuleSet::compile(rules, opts, &rep3);
  REQUIRE(ungated);
  CHECK(rep3.gated == 0);
  std::filesystem::remove_all(cache);

  std::vector<std::unique_ptr<Re>> res;
  for (const auto& p : kPatterns) res.push_back(std::make_unique<Re>(p, true));
  std::mt19937 rng(7);
  auto bodies = planted(rng);
  // Long bodies: the gate's hit far from the start, and a body with a high
  // byte (the rule runs as written there).
  bodies.push_back(std::string(5000, ' ') + "p.h.e.n.t.e.r.m.i.n.e " + std::string(3000, 'x'));
  bodies.push_back(std::string(5000, ' ') + "ph3nterm1ne");
  bodies.push_back("caf\xc3\xa9 p-h-e-n-t-e-r-m-i-n-e");
  bodies.push_back("hy.dr.oc.o");
  std::size_t hits = 0;
  ScanCost cost;
  for (const auto& b : bodies) {
    INFO(b);
    Input in;
    in.body = b;
    auto v = (*set)->evaluate(in, &cost);
    auto c = (*cached)->evaluate(in);
    auto u = (*ungated)->evaluate(in);
    REQUIRE(v);
    REQUIRE(c);
    REQUIRE(u);
    for (std::size_t k = 0; k < kPatterns.size(); ++k) {
      INFO(kPatterns[k]);
      const bool want = res[k]->match(b);
      CHECK(((*v)[k] != 0) == want);
      CHECK(((*c)[k] != 0) == want);
      CHECK(((*u)[k] != 0) == want);
      hits += want;
    }
  }
  CHECK(hits > 100);
  // The gates turned some bodies away before PCRE2 (candidates < bodies).
  CHECK(cost.rules[0].candidates < bodies.size());
  CHECK(cost.rules[0].confirmed > 0);
}

// A test of the library under moat: libvectorscan5 5.4.9 (Debian bookworm)
// drops literal matches in a database of two literals at some offsets
// (found by the test above with a body of 5,000 'a's; cf.
// VectorCamp/vectorscan#317, a correctness regression on x86 fixed
// upstream): /ph3nt/ was missed in 60 of these 81 bodies, gated or not. That
// is why moat builds against Debian's libhyperscan-dev (Intel Hyperscan
// 5.4.0), which finds all 81; this fails if a build links the broken one.
TEST_CASE("hyperscan library: a literal is found after any number of bytes", "[rules][hyperscan]") {
  std::vector<Rule> rules(2);
  rules[0].symbol = "PH3NT", rules[0].pattern = "ph3nt";
  rules[1].symbol = "HY", rules[1].pattern = "hy";
  CompileOptions opts;
  opts.gates = false;
  auto set = RuleSet::compile(rules, opts);
  REQUIRE(set);
  std::size_t missed = 0;
  for (std::size_t n = 60; n <= 140; ++n) {
    Input in;
    in.body = std::string(n, 'a') + "ph3nterm1ne";
    auto v = (*set)->evaluate(in);
    REQUIRE(v);
    missed += (*v)[0] == 0;
  }
  CHECK(missed == 0);
}

// Rule files, meta rules, compiling to Hyperscan/PCRE2, matching per class,
// the cache, and the SpamAssassin import (rules/).
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "rules/meta.hpp"
#include "rules/rule_file.hpp"
#include "rules/ruleset.hpp"
#include "rules/sa_import.hpp"
#include "filters/rules/message_input.hpp"
#include "tests/support/temp_dir.hpp"

using namespace moat;
using namespace moat::rules;
namespace fr = moat::filters::rules;

namespace {

const std::string kFile =
    "# a comment\n"
    "header   SUBJ_FREE   Subject =~ /free/i\n"
    "header   NO_FREE     Subject !~ /free/i\n"
    "header   FROM_DIGITS From:addr =~ /^\\d+@/\n"
    "header   HAS_LIST    exists:List-Id\n"
    "header   __ANY_FOO   ALL =~ /^x-foo: /mi\n"
    "body     BODY_PILLS  /cheap\\s+pills/i\n"
    "describe BODY_PILLS  Sells pills\n"
    "rawbody  RAW_FONT    /<font size=1>/i\n"
    "uri      URI_IP      /^https?:\\/\\/\\d+\\.\\d+\\.\\d+\\.\\d+/\n"
    "full     FULL_XMAILER /^X-Mailer: spamtool/m\n"
    "body     BACKREF     /\\b(\\w{3})\\1\\b/\n"
    "body     LOOKBEHIND  /(?<!not )guaranteed/\n"
    "meta     COMBO       BODY_PILLS && (URI_IP || SUBJ_FREE) && !HAS_LIST\n"
    "meta     COUNT2      (SUBJ_FREE + BODY_PILLS + RAW_FONT) >= 2\n"
    "meta     VIA_SUB     __ANY_FOO && BODY_PILLS\n";

const std::string kSpam =
    "From: 12345@example.net\r\n"
    "To: you@example.org\r\n"
    "Subject: =?utf-8?Q?FREE_offer?=\r\n"
    "X-Foo: bar\r\n"
    "X-Mailer: spamtool 1.0\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/alternative; boundary=\"b1\"\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Buy cheap=20\r\n"
    "  pills at http://192.0.2.7/x byebye guaranteed\r\n"
    "--b1\r\n"
    "Content-Type: text/html\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "PGZvbnQgc2l6ZT0xPmhpZGRlbjwvZm9udD4=\r\n"
    "--b1--\r\n";

const std::string kHam =
    "From: Alice <alice@example.net>\r\n"
    "Subject: minutes\r\n"
    "List-Id: <team.example.org>\r\n"
    "\r\n"
    "It is not guaranteed: the meeting moved to https://example.org/cal.\r\n";

std::vector<std::string> hits(const RuleSet& set, const std::string& msg) {
  auto r = set.scan(fr::make_input(msg));
  REQUIRE(r);
  std::vector<std::string> out;
  for (const auto* x : *r) out.push_back(x->symbol);
  return out;
}

std::shared_ptr<const RuleSet> compile_text(const std::string& text, const CompileOptions& o = {},
                                            CompileReport* rep = nullptr) {
  auto rules = parse(text, "t.rules");
  REQUIRE(rules);
  auto set = RuleSet::compile(std::move(*rules), o, rep);
  REQUIRE(set);
  return *set;
}

}  // namespace

TEST_CASE("rules: parser reads every rule type", "[rules]") {
  auto r = parse(kFile, "t.rules");
  REQUIRE(r);
  REQUIRE(r->size() == 14);
  const auto& s = (*r)[0];
  CHECK(s.cls == RuleClass::Header);
  CHECK(s.header == "subject");
  CHECK(s.pattern == "free");
  CHECK(s.flags == "i");
  CHECK(s.line == 2);
  CHECK((*r)[1].negate);
  CHECK((*r)[2].modifier == "addr");
  CHECK((*r)[3].exists);
  CHECK((*r)[3].header == "list-id");
  CHECK((*r)[5].description == "Sells pills");
  CHECK((*r)[7].pattern == "^https?:\\/\\/\\d+\\.\\d+\\.\\d+\\.\\d+");
  CHECK((*r)[12].cls == RuleClass::Meta);
  CHECK_FALSE((*r)[4].reported());
  // Round trip: what to_text writes parses back to the same text.
  auto again = parse(to_text(*r), "t2.rules");
  REQUIRE(again);
  CHECK(to_text(*again) == to_text(*r));
}

TEST_CASE("rules: parser gives the same rules for any split of the input", "[rules]") {
  const std::string want = to_text(*parse(kFile, "t.rules"));
  // One byte at a time.
  Parser p("t.rules");
  for (char c : kFile) p.feed(std::string_view(&c, 1));
  REQUIRE(p.finish());
  CHECK(to_text(p.rules()) == want);
  // Every two-piece split, and odd chunk sizes.
  for (std::size_t cut = 0; cut <= kFile.size(); cut += 7) {
    Parser q("t.rules");
    q.feed(std::string_view(kFile).substr(0, cut));
    q.feed(std::string_view(kFile).substr(cut));
    REQUIRE(q.finish());
    CHECK(to_text(q.rules()) == want);
  }
  for (std::size_t chunk : {3u, 13u, 61u}) {
    Parser q("t.rules");
    for (std::size_t i = 0; i < kFile.size(); i += chunk) q.feed(std::string_view(kFile).substr(i, chunk));
    REQUIRE(q.finish());
    CHECK(to_text(q.rules()) == want);
  }
  // No final newline.
  auto r = parse("body A /x/", "t.rules");
  REQUIRE(r);
  CHECK(r->size() == 1);
}

TEST_CASE("rules: parser errors name file and line", "[rules]") {
  auto bad = GENERATE(as<std::pair<std::string, std::string>>{},
                      std::pair{"body A /x/\nfrobnicate B /y/\n", "f.rules:2: unknown rule type 'frobnicate'"},
                      std::pair{"\n\nbody A /x/q\n", "f.rules:3: body A: flags must be a subset of \"imsx\""},
                      std::pair{"body A x\n", "f.rules:1: body A: expected /pattern/flags"},
                      std::pair{"body A /x/\nbody A /y/\n", "f.rules:2: rule A already defined at line 1"},
                      std::pair{"describe NOPE text\n", "f.rules:1: describe for undefined rule NOPE"},
                      std::pair{"header A Subject ~ /x/\n", "f.rules:1: header A: expected =~ or !~ after the header name"},
                      std::pair{"header A From:weird =~ /x/\n", "f.rules:1: header A: header modifier must be :raw, :addr or :name"},
                      std::pair{"body 9A /x/\n", "f.rules:1: expected a symbol (letters, digits, '_') after 'body'"},
                      std::pair{"meta A\n", "f.rules:1: rule A has no pattern"});
  auto r = parse(bad.first, "f.rules");
  REQUIRE_FALSE(r);
  CHECK(r.error().detail == bad.second);
}

TEST_CASE("rules: overlong lines are an error, not a memory sink", "[rules]") {
  std::string text = "body A /" + std::string(kMaxLine + 10, 'a') + "/\nbody B /b/\n";
  Parser p("big.rules");
  for (std::size_t i = 0; i < text.size(); i += 4096) p.feed(std::string_view(text).substr(i, 4096));
  auto st = p.finish();
  REQUIRE_FALSE(st);
  CHECK(st.error().detail == "big.rules:1: line longer than 65536 bytes");
}

TEST_CASE("rules: compile errors name the rule, meta loops are refused", "[rules]") {
  auto r = parse("body A /x(/\n", "c.rules");
  REQUIRE(r);
  auto s = RuleSet::compile(std::move(*r));
  REQUIRE_FALSE(s);
  CHECK(s.error().detail.starts_with("c.rules:1: rule A: bad pattern at offset 2:"));
  auto m = parse("body A /x/\nmeta B A && C\nmeta C B\n", "c.rules");
  auto s2 = RuleSet::compile(std::move(*m));
  REQUIRE_FALSE(s2);
  CHECK(s2.error().detail == "c.rules:2: rule B: meta rules refer to each other in a loop");
  auto u = parse("meta B A && Z\nbody A /x/\n", "c.rules");
  auto s3 = RuleSet::compile(std::move(*u));
  REQUIRE_FALSE(s3);
  CHECK(s3.error().detail == "c.rules:1: rule B: unknown rule Z");
  // Lenient mode (SpamAssassin import) drops the rule and what needs it.
  CompileOptions o;
  o.lenient = true;
  CompileReport rep;
  auto l = parse("body A /x(/\nmeta B A\nbody C /c/\n", "c.rules");
  auto s4 = RuleSet::compile(std::move(*l), o, &rep);
  REQUIRE(s4);
  CHECK((*s4)->rules().size() == 1);
  CHECK(rep.dropped.size() == 2);
}

TEST_CASE("rules: meta expressions", "[rules]") {
  std::map<std::string, std::uint32_t, std::less<>> idx{{"A", 0}, {"B", 1}, {"C", 2}};
  auto resolve = [&](std::string_view s) -> std::optional<std::uint32_t> {
    auto it = idx.find(s);
    if (it == idx.end()) return std::nullopt;
    return it->second;
  };
  std::vector<std::int64_t> v{1, 0, 1};
  auto eval = [&](const char* e) {
    auto m = MetaExpr::compile(e, resolve);
    REQUIRE(m);
    return m->eval(v);
  };
  CHECK(eval("A && !B") == 1);
  CHECK(eval("A && B") == 0);
  CHECK(eval("B || C") == 1);
  CHECK(eval("(A + B + C) >= 2") == 1);
  CHECK(eval("A + B + C > 2") == 0);
  CHECK(eval("A + C == 2 && !(B || !C)") == 1);
  CHECK(eval("2 * A - C") == 1);
  CHECK(eval("!!A") == 1);
  CHECK(eval("A != B") == 1);
  CHECK_FALSE(MetaExpr::compile("A &&", resolve));
  CHECK_FALSE(MetaExpr::compile("(A", resolve));
  CHECK_FALSE(MetaExpr::compile("A B", resolve));
  CHECK_FALSE(MetaExpr::compile(std::string(200, '(') + "A" + std::string(200, ')'), resolve));
}

TEST_CASE("rules: every class matches what it should, and only that", "[rules]") {
  CompileReport rep;
  auto set = compile_text(kFile, {}, &rep);
  auto spam = hits(*set, kSpam);
  CHECK(spam == std::vector<std::string>{"SUBJ_FREE", "FROM_DIGITS", "BODY_PILLS", "RAW_FONT", "URI_IP", "FULL_XMAILER",
                                          "BACKREF", "LOOKBEHIND", "COMBO", "COUNT2", "VIA_SUB"});
  auto ham = hits(*set, kHam);
  CHECK(ham == std::vector<std::string>{"NO_FREE", "HAS_LIST"});
  // The engine split: plain patterns in Hyperscan, the backreference and the
  // lookbehind confirmed or run by PCRE2.
  const auto& rules = set->rules();
  for (std::size_t i = 0; i < rules.size(); ++i) {
    if (rules[i].symbol == "BODY_PILLS" || rules[i].symbol == "SUBJ_FREE") CHECK(set->engine(i) == Engine::Hyperscan);
    if (rules[i].symbol == "BACKREF" || rules[i].symbol == "LOOKBEHIND") CHECK(set->engine(i) != Engine::Hyperscan);
  }
  CHECK(rep.meta == 3);
  CHECK(rep.hyperscan + rep.prefilter + rep.pcre == 10);
}

TEST_CASE("rules: prefilter candidates are confirmed by PCRE2", "[rules]") {
  // Hyperscan's prefilter form of a backreference also matches "abcxyz";
  // PCRE2 must turn that candidate down.
  CompileReport rep;
  auto set = compile_text("body DOUBLE /(abc)\\1/\nbody HEAVY /(?:a\\W{0,5}){10}b/\n", {}, &rep);
  CHECK(rep.hyperscan == 0);
  CHECK(hits(*set, "Subject: x\r\n\r\nabcabc\r\n") == std::vector<std::string>{"DOUBLE"});
  CHECK(hits(*set, "Subject: x\r\n\r\nabcxyz\r\n").empty());
  CHECK(hits(*set, "Subject: x\r\n\r\na a.a-a a a a a a a b\r\n") == std::vector<std::string>{"HEAVY"});
  CHECK(hits(*set, "Subject: x\r\n\r\na a a b\r\n").empty());
  CHECK(is_heavy("(?:a\\W{0,5}){10}b", 2000));
  CHECK_FALSE(is_heavy("(?:a\\W{0,3}){10}b", 2000));  // 30: still fine for Hyperscan
  CHECK_FALSE(is_heavy("abc{2}d{1,3}", 2000));
  CHECK(is_heavy(std::string(3000, 'a'), 2000));
}

TEST_CASE("rules: the cache file round-trips and a damaged one is rebuilt", "[rules]") {
  test::TempDir tmp;
  CompileOptions o;
  o.cache_dir = tmp.path;
  CompileReport a, b, c;
  auto first = compile_text(kFile, o, &a);
  CHECK_FALSE(a.from_cache);
  REQUIRE(std::filesystem::exists(a.cache_file));
  auto second = compile_text(kFile, o, &b);
  CHECK(b.from_cache);
  CHECK(b.cache_file == a.cache_file);
  CHECK(hits(*second, kSpam) == hits(*first, kSpam));
  CHECK(hits(*second, kHam) == hits(*first, kHam));
  for (std::size_t i = 0; i < first->rules().size(); ++i) CHECK(first->engine(i) == second->engine(i));
  // Truncated cache: compiled again, same answers.
  auto size = std::filesystem::file_size(a.cache_file);
  std::filesystem::resize_file(a.cache_file, size / 2);
  auto third = compile_text(kFile, o, &c);
  CHECK_FALSE(c.from_cache);
  CHECK(hits(*third, kSpam) == hits(*first, kSpam));
  // Other rules, other file.
  CompileReport d;
  compile_text("body X /y/\n", o, &d);
  CHECK(d.cache_file != a.cache_file);
}

TEST_CASE("rules: the input comes from the shared MIME parse", "[rules]") {
  auto in = fr::make_input(kSpam);
  REQUIRE(in.headers.size() == 7);
  CHECK(in.headers[2].name == "subject");
  CHECK(in.headers[2].raw == "=?utf-8?Q?FREE_offer?=");
  CHECK(in.headers[2].value == "FREE offer");
  // Subject first (as SpamAssassin), then each text part's scan text.
  CHECK(in.body.starts_with("FREE offer\n\nBuy cheap \r\n  pills at http://192.0.2.7/x"));
  CHECK(in.body.find("hidden") != std::string::npos);            // HTML part as text
  CHECK(in.body.find("<font") == std::string::npos);
  CHECK(in.rawbody.find("<font size=1>hidden</font>") != std::string::npos);  // HTML kept
  CHECK(in.uris == std::vector<std::string>{"http://192.0.2.7/x"});
  CHECK(in.full == kSpam);

  // Charsets are converted by the shared parser: rules see UTF-8.
  const std::string latin1 = "Subject: caf=?iso-8859-1?Q?=E9?=\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
                             "Content-Transfer-Encoding: quoted-printable\r\n\r\nna=EFve\r\n";
  auto l = fr::make_input(latin1);
  CHECK(l.headers[0].value == "caf\xc3\xa9");
  CHECK(l.body.find("na\xc3\xafve") != std::string::npos);
  CHECK(l.rawbody == "na\xefve\r\n");                            // rawbody: transfer-decoded only

  // URLs of HTML attributes and of text, distinct.
  const std::string html = "Content-Type: text/html\r\n\r\n<a href=\"http://x.test/a\">x</a> www.y.test\r\n";
  auto h = fr::make_input(html);
  CHECK(std::find(h.uris.begin(), h.uris.end(), "http://x.test/a") != h.uris.end());

  // Nested parts are followed as deep as the shared parser's limit (100).
  auto nest = [](int levels) {
    std::string m = "Content-Type: multipart/mixed; boundary=b0\r\n\r\n";
    for (int i = 0; i < levels; ++i)
      m += "--b" + std::to_string(i) + "\r\nContent-Type: multipart/mixed; boundary=b" + std::to_string(i + 1) + "\r\n\r\n";
    return m + "--b" + std::to_string(levels) + "\r\nContent-Type: text/plain\r\n\r\nburied\r\n";
  };
  CHECK(fr::make_input(nest(50)).body == "buried\r\n");
  CHECK(fr::make_input(nest(150)).body.find("buried") == std::string::npos);

  // Only what the set needs is built.
  const std::string msg = kSpam;
  auto tree = mime::parse(msg);
  int asked = 0;
  std::string keep;
  auto text = [&](std::size_t i) -> const std::string& {
    ++asked;
    keep = mime::part_text(msg, tree.parts[i]).data;
    return keep;
  };
  auto only_raw = fr::make_input(tree, msg, text, {}, class_bit(RuleClass::RawBody));
  CHECK(asked == 0);
  CHECK(only_raw.body.empty());
  CHECK_FALSE(only_raw.rawbody.empty());
}

TEST_CASE("rules: SpamAssassin import of the installed rules", "[rules][sa]") {
  // Debian's spamassassin package is a test dependency (scripts/install-deps.sh --test).
  REQUIRE(std::filesystem::exists("/usr/share/spamassassin/20_body_tests.cf"));
  auto imp = import_sa_dir("/usr/share/spamassassin");
  REQUIRE(imp);
  std::size_t converted = 0;
  for (const auto& [k, n] : imp->converted_by_type) converted += n;
  // Debian's 4.0 rules: about 1,900 of 3,000 rule lines convert; eval:
  // rules (Perl code) are the main loss. Bounds, not exact counts, so a
  // rules update does not break the test.
  CHECK(converted > 1500);
  CHECK(imp->converted_by_type["body"] > 500);
  CHECK(imp->converted_by_type["header"] > 500);
  CHECK(imp->converted_by_type["meta"] > 300);
  CHECK(imp->skipped_by_reason["eval: rule"] > 300);
  CHECK(imp->skipped.size() > 500);
  // What comes out is our format, whole.
  auto text = to_text(imp->rules);
  auto again = parse(text, "sa.rules");
  REQUIRE(again);
  CHECK(again->size() == converted);
  // GTUBE converts with its description and score.
  auto g = std::find_if(again->begin(), again->end(), [](const Rule& r) { return r.symbol == "GTUBE"; });
  REQUIRE(g != again->end());
  CHECK(g->description == "Generic Test for Unsolicited Bulk Email");
  auto s = std::find_if(imp->scores.begin(), imp->scores.end(), [](auto& p) { return p.first == "GTUBE"; });
  REQUIRE(s != imp->scores.end());
  CHECK(s->second == 1000);
}

TEST_CASE("rules: SpamAssassin import details", "[rules][sa]") {
  SaImporter imp;
  imp.add_file(
      "replace_start <\nreplace_end >\nreplace_tag A (?:a|4)\nreplace_tag B b\nreplace_inter W1 \\W?\n"
      "body FUZZY /<inter W1><A><B>x/i\nreplace_rules FUZZY\n"
      "body EV eval:check_foo()\n"
      "header TOCC ToCc =~ /x/\n"
      "header SUBJ Subject =~ m{a/b}i  # comment\n"
      "header ESC Subject =~ /\\#1/\n"
      "meta BOTH SUBJ && EV\n"
      "meta ONE SUBJ && !FUZZY\n"
      "score SUBJ 1.5 2 3 4\ndescribe SUBJ Slash in subject\n",
      "t.cf");
  auto out = imp.finish();
  REQUIRE(out.rules.size() == 4);
  CHECK(out.rules[0].symbol == "FUZZY");
  CHECK(out.rules[0].pattern == "(?:a|4)\\W?bx");
  CHECK(out.rules[1].pattern == "a/b");
  CHECK(out.rules[1].description == "Slash in subject");
  CHECK(out.rules[2].pattern == "\\#1");
  CHECK(out.rules[3].symbol == "ONE");
  CHECK(out.scores == std::vector<std::pair<std::string, double>>{{"SUBJ", 1.5}});  // set 0 by default
  CHECK(out.skipped == std::vector<std::string>{"t.cf:8: EV: eval: rule (Perl code)", "t.cf:9: TOCC: pseudo-header ToCc",
                                                "t.cf:12: BOTH: meta needs unconverted rule (EV)"});
  // The converted rules compile and run.
  auto set = RuleSet::compile(out.rules);
  REQUIRE(set);
  CHECK(hits(**set, "Subject: A/B\r\n\r\n4-bx\r\n") == std::vector<std::string>{"FUZZY", "SUBJ"});
}

TEST_CASE("rules: SpamAssassin import picks the score set", "[rules][sa]") {
  const char* cf = "header A Subject =~ /a/\nheader B Subject =~ /b/\nscore A 1.5 2 3 4\nscore B 0.7\n";
  const double a[] = {1.5, 2, 3, 4};
  for (int set : {0, 1, 2, 3}) {
    SaImporter imp(set);
    imp.add_file(cf, "t.cf");
    auto out = imp.finish();
    // Four values: one per set; one value: every set.
    CHECK(out.scores == std::vector<std::pair<std::string, double>>{{"A", a[set]}, {"B", 0.7}});
  }
}

// Policy thresholds per phase, reply mapping, score table and X-Spam-* headers.
#include <catch2/catch.hpp>

#include "filters/policy.hpp"
#include "filters/scores.hpp"

using namespace moat;
using namespace moat::filters;

namespace {
std::vector<Symbol> syms(std::initializer_list<std::pair<const char*, double>> list) {
  std::vector<Symbol> out;
  for (auto [n, s] : list) out.push_back(Symbol{n, s, {}});
  return out;
}
}  // namespace

TEST_CASE("decide: thresholds at EndOfData and before", "[filters][policy]") {
  config::Actions a;  // tag 5, quarantine 10, tempfail off, reject 15
  struct Case { double score; Phase phase; Action expect; };
  auto c = GENERATE(values<Case>({
      {0, Phase::EndOfData, Action::Accept},
      {4.99, Phase::EndOfData, Action::Accept},
      {5, Phase::EndOfData, Action::Tag},
      {9.9, Phase::EndOfData, Action::Tag},
      {10, Phase::EndOfData, Action::Quarantine},
      {15, Phase::EndOfData, Action::Reject},
      {-3, Phase::EndOfData, Action::Accept},
      {5, Phase::Helo, Action::Accept},        // tag waits for the message
      {10, Phase::RcptTo, Action::Accept},     // so does quarantine
      {15, Phase::Helo, Action::Reject},       // reject does not wait
      {20, Phase::Connect, Action::Reject},
      {20, Phase::MailFrom, Action::Reject},
  }));
  CAPTURE(c.score, int(c.phase));
  auto v = decide(syms({{"X", c.score}}), a, c.phase);
  CHECK(v.action == c.expect);
  CHECK(v.score == Approx(c.score));
}

TEST_CASE("decide: tempfail threshold sits between quarantine and reject", "[filters][policy]") {
  config::Actions a;
  a.tempfail = 12;
  CHECK(decide(syms({{"X", 12}}), a, Phase::EndOfData).action == Action::TempFail);
  CHECK(decide(syms({{"X", 12}}), a, Phase::RcptTo).action == Action::TempFail);
  CHECK(decide(syms({{"X", 11}}), a, Phase::EndOfData).action == Action::Quarantine);
  auto v = decide(syms({{"X", 13}}), a, Phase::EndOfData);
  CHECK(v.reply == Errc::PolicyTempFail);
  CHECK(is_temporary(v.reply));
}

TEST_CASE("decide: hard reasons pick the reply", "[filters][policy]") {
  config::Actions a;
  auto loop = decide(syms({{"HELO_NOT_FQDN", 1}, {"HOPS_LOOP", 100}}), a, Phase::EndOfData);
  CHECK(loop.action == Action::Reject);
  CHECK(loop.reply == Errc::LoopDetected);
  CHECK(format_reply(loop.reply).substr(0, 9) == "554 5.4.6");
  CHECK(loop.reason == "HOPS_LOOP, HELO_NOT_FQDN");

  auto helo = decide(syms({{"HELO_BAD_SYNTAX", 20}}), a, Phase::Helo);
  CHECK(helo.action == Action::Reject);
  CHECK(helo.reply == Errc::BadHelo);

  // Many small symbols add up: the generic policy reply, not a hard reason.
  auto sum = decide(syms({{"A", 8}, {"B", 8}}), a, Phase::EndOfData);
  CHECK(sum.reply == Errc::PolicyReject);

  // A permanent hard reason never answers a tempfail.
  a.tempfail = 50;
  a.reject = 200;
  auto t = decide(syms({{"HOPS_LOOP", 100}}), a, Phase::EndOfData);
  CHECK(t.action == Action::TempFail);
  CHECK(t.reply == Errc::PolicyTempFail);
}

TEST_CASE("scores: defaults and config overrides", "[filters][scores]") {
  Scores s;
  CHECK(s.score("HELO_BAD_SYNTAX") == 20);
  CHECK(s.score("HELO_NOT_FQDN") == 1);
  CHECK(s.score("HOPS_LOOP") == 100);
  CHECK(s.score("MSG_LARGE") == 0);
  CHECK(s.score("FILTER_FAILED_OPEN") == 0);
  CHECK(s.score("NO_SUCH_SYMBOL") == 0);
  config::Config cfg;
  cfg.scores = {{"HELO_NOT_FQDN", 1.5}, {"MY_RULE", -2}};
  Scores o(cfg);
  CHECK(o.score("HELO_NOT_FQDN") == 1.5);
  CHECK(o.score("MY_RULE") == -2);
  CHECK(o.score("HOPS_LOOP") == 100);
  CHECK(symbol_reply("HOPS_LOOP") == Errc::LoopDetected);
  CHECK_FALSE(symbol_reply("HELO_NOT_FQDN"));
}

TEST_CASE("spam_headers", "[filters][policy]") {
  Verdict v;
  v.action = Action::Tag;
  v.score = 7.5;
  auto s = syms({{"HELO_NOT_FQDN", 1}, {"SOME_RULE", 6.5}, {"MSG_LARGE", 0}});
  auto h = spam_headers(v, s);
  REQUIRE(h.size() == 3);
  CHECK(h[0] == "X-Spam-Flag: YES");
  CHECK(h[1] == "X-Spam-Score: 7.5");
  CHECK(h[2] == "X-Spam-Symbols: HELO_NOT_FQDN(1), SOME_RULE(6.5), MSG_LARGE(0)");
  v.action = Action::Accept;
  CHECK(spam_headers(v, {})[0] == "X-Spam-Flag: NO");

  // Long lists fold with CRLF TAB and no physical line exceeds 78 characters.
  std::vector<Symbol> many;
  for (int i = 0; i < 20; ++i) many.push_back(Symbol{"A_RATHER_LONG_SYMBOL_" + std::to_string(i), 0.25, "x\r\nBcc: evil"});
  auto folded = spam_headers(v, many)[2];
  CHECK(folded.find("\r\n\t") != std::string::npos);
  CHECK(folded.find("Bcc") == std::string::npos);  // details never reach headers
  std::size_t start = 0;
  while (start < folded.size()) {
    auto end = folded.find("\r\n", start);
    if (end == std::string::npos) end = folded.size();
    CHECK(end - start <= 78);
    start = end + 2;
  }
  CHECK(format_score(-0.001) == "0");
  CHECK(format_score(100) == "100");
  CHECK(format_score(0.333) == "0.33");
}

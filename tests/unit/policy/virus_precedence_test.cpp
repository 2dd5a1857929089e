// "Viruses are never bounced" (SECURITY.md promise 4, filters/policy): a
// virus symbol decides the verdict at end of DATA whatever else pushes the
// score: a spam score over reject or discard, a forced DMARC reject, a block
// list. Checked on decide() and through a real Pipeline with the real score
// table (GTUBE 1000 from rules/default.scores, VIRUS_FOUND from
// filters/scores.cpp).
#include <catch2/catch.hpp>

#include "filters/pipeline.hpp"
#include "filters/policy.hpp"
#include "filters/scores.hpp"
#include "tests/unit/filters/run_sync.hpp"

using namespace moat;
using namespace moat::filters;
using moat::test::run_sync;

namespace {

// Adds the symbols it was given at end of DATA.
class Adds final : public Filter {
 public:
  Adds(std::string name, std::vector<std::string> symbols) : name_(std::move(name)), symbols_(std::move(symbols)) {}
  std::string_view name() const override { return name_; }
  PhaseMask phases() const override { return mask(Phase::EndOfData); }
  asio::awaitable<Status> run(Phase, ScanContext& ctx) override {
    for (const auto& s : symbols_) ctx.add(s);
    co_return Status{};
  }

 private:
  std::string name_;
  std::vector<std::string> symbols_;
};

}  // namespace

TEST_CASE("policy: a virus is held whatever else pushes the score", "[policy][virus]") {
  Scores table;
  table.set("GTUBE", 1000);
  config::Actions a;  // tag 5, quarantine 10, reject 15
  struct Case {
    std::vector<const char*> symbols;
    double discard;
    config::VirusAction virus;
    Action expect;
  };
  auto c = GENERATE(values<Case>({
      {{"VIRUS_FOUND"}, 1e9, config::VirusAction::Quarantine, Action::Quarantine},
      {{"GTUBE", "VIRUS_FOUND"}, 1e9, config::VirusAction::Quarantine, Action::Quarantine},    // over reject
      {{"VIRUS_FOUND", "GTUBE"}, 1e9, config::VirusAction::Quarantine, Action::Quarantine},    // order does not matter
      {{"GTUBE", "VIRUS_FOUND"}, 500, config::VirusAction::Quarantine, Action::Quarantine},    // over discard too
      {{"DMARC_POLICY_REJECT", "VIRUS_FOUND"}, 1e9, config::VirusAction::Quarantine, Action::Quarantine},
      {{"HOPS_LOOP", "VIRUS_FOUND"}, 1e9, config::VirusAction::Quarantine, Action::Quarantine},
      {{"GTUBE", "VIRUS_FOUND"}, 1e9, config::VirusAction::Discard, Action::Discard},
      {{"GTUBE"}, 1e9, config::VirusAction::Quarantine, Action::Reject},                         // the control
  }));
  a.discard = c.discard;
  a.virus = c.virus;
  std::vector<Symbol> syms;
  for (const char* n : c.symbols) syms.push_back(Symbol{n, table.score(n), {}});
  auto v = decide(syms, a, Phase::EndOfData);
  CAPTURE(c.symbols, v.reason);
  CHECK(v.action == c.expect);
  if (c.expect != Action::Reject) CHECK(v.reason == "VIRUS_FOUND");
  // A block list does not bounce it either.
  apply_sender_list(v, SenderList::Block, syms, a);
  CHECK(v.action == c.expect);
}

TEST_CASE("policy: GTUBE and a virus through the pipeline are quarantined, not rejected", "[policy][virus]") {
  auto cfg = std::make_shared<config::Config>();
  cfg->scores = {{"GTUBE", 1000}};
  Pipeline p(cfg);
  config::Filter rules;
  rules.name = "rules";
  config::Filter av;
  av.name = "antivirus";
  p.add(std::make_unique<Adds>("rules", std::vector<std::string>{"GTUBE"}), rules);
  p.add(std::make_unique<Adds>("antivirus", std::vector<std::string>{"VIRUS_FOUND"}), av);
  ScanContext ctx;
  ctx.config = cfg;
  auto v = run_sync(p.run(Phase::EndOfData, ctx));
  CHECK(v.action == Action::Quarantine);
  CHECK(v.reason == "VIRUS_FOUND");
  CHECK(v.score >= 1000);
  // No virus symbol names a reject reply of its own.
  CHECK_FALSE(symbol_reply("VIRUS_FOUND").has_value());
}

TEST_CASE("policy: unscanned content is held, not refused", "[policy][virus]") {
  Scores table;
  table.set("GTUBE", 1000);
  config::Actions a;
  auto v_of = [&](std::initializer_list<const char*> names, SenderList list = SenderList::None) {
    std::vector<Symbol> syms;
    for (const char* n : names) syms.push_back(Symbol{n, table.score(n), {}});
    auto v = decide(syms, a, Phase::EndOfData);
    apply_sender_list(v, list, syms, a);
    return v;
  };
  for (const char* u : {"AV_LIMIT_EXCEEDED", "AV_SCAN_ERROR"}) {
    INFO(u);
    CHECK(is_unscanned_symbol(u));
    CHECK(v_of({u}).action == Action::Quarantine);                 // forced, as before
    auto v = v_of({"GTUBE", u});                                   // over reject: held instead
    CHECK(v.action == Action::Quarantine);
    CHECK(v.reason == u);
    CHECK(v_of({"HOPS_LOOP", u}).action == Action::Quarantine);
    CHECK(v_of({u}, SenderList::Block).action == Action::Quarantine);  // blocked, not bounced
    CHECK(v_of({u}, SenderList::Block).reason == "SENDER_BLOCKED");
    CHECK(v_of({u}, SenderList::Allow).action == Action::Quarantine);  // allowed, not passed unscanned
    CHECK(v_of({u}, SenderList::Allow).reason == u);
    a.discard = 500;
    CHECK(v_of({"GTUBE", u}).action == Action::Discard);           // nothing goes back: stays
    a.discard = 1e9;
    // [scores] AV_LIMIT_EXCEEDED = 0 turns the hold off, as it does the forcing.
    table.set(u, 0);
    CHECK(v_of({"GTUBE", u}).action == Action::Reject);
    CHECK(v_of({u}).action == Action::Accept);
    table.set(u, 1);
  }
  // Policy findings are not unscanned content: a reject stands.
  CHECK_FALSE(is_unscanned_symbol("ATTACHMENT_BLOCKED_EXT"));
  table.set("ATTACHMENT_BLOCKED_EXT", 1);
  CHECK(v_of({"GTUBE", "ATTACHMENT_BLOCKED_EXT"}).action == Action::Reject);
  CHECK(v_of({"ATTACHMENT_BLOCKED_EXT"}, SenderList::Allow).action == Action::Accept);
}

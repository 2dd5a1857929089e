// Verdict policy for issue 4: per-domain thresholds, discard, viruses never
// bounced, sender list precedence, and the Subject prefix rewrite.
#include <catch2/catch.hpp>

#include "filters/policy.hpp"

using namespace moat;
using namespace moat::filters;

namespace {

std::vector<Symbol> syms(std::initializer_list<std::pair<const char*, double>> list) {
  std::vector<Symbol> out;
  for (auto [n, s] : list) out.push_back(Symbol{n, s, {}});
  return out;
}

Envelope to(std::initializer_list<const char*> rcpts) {
  Envelope env;
  for (auto* r : rcpts) env.recipients.push_back(Recipient{r, DsnNotify::Default, ""});
  return env;
}

config::Config config_with_domains() {
  config::Config cfg;
  config::DomainActions strict{"strict.test", cfg.actions};
  strict.actions.tag = 2;
  strict.actions.quarantine = 4;
  strict.actions.reject = 6;
  strict.actions.subject_prefix = "[SPAM] ";
  config::DomainActions lax{"lax.test", cfg.actions};
  lax.actions.reject = 1e9;
  lax.actions.quarantine = 1e9;
  lax.actions.discard = 50;
  cfg.domain_actions = {strict, lax};
  return cfg;
}

}  // namespace

TEST_CASE("actions_for: per recipient domain, strictest of several, default otherwise", "[quarantine][policy]") {
  auto cfg = config_with_domains();
  CHECK(actions_for(cfg, to({"u@other.test"})).reject == 15);
  CHECK(actions_for(cfg, to({"u@STRICT.test"})).reject == 6);
  CHECK(actions_for(cfg, to({"u@strict.test"})).subject_prefix == "[SPAM] ");
  CHECK(actions_for(cfg, to({"u@lax.test"})).reject == 1e9);
  auto mixed = actions_for(cfg, to({"u@lax.test", "v@strict.test"}));
  CHECK(mixed.reject == 6);
  CHECK(mixed.quarantine == 4);
  CHECK(mixed.discard == 50);
  CHECK(mixed.subject_prefix.empty());  // the first recipient's
  CHECK(actions_for(cfg, to({"u@sub.strict.test"})).reject == 15);  // subdomains not included
  CHECK(actions_for(cfg, to({})).reject == 15);
}

TEST_CASE("decide: same score, different verdict per recipient domain", "[quarantine][policy]") {
  auto cfg = config_with_domains();
  auto s = syms({{"X", 7}});
  CHECK(decide(s, actions_for(cfg, to({"u@strict.test"})), Phase::EndOfData).action == Action::Reject);
  CHECK(decide(s, actions_for(cfg, to({"u@other.test"})), Phase::EndOfData).action == Action::Tag);
  CHECK(decide(syms({{"X", 100}}), actions_for(cfg, to({"u@lax.test"})), Phase::EndOfData).action == Action::Discard);
  CHECK(decide(syms({{"X", 30}}), actions_for(cfg, to({"u@lax.test"})), Phase::EndOfData).action == Action::Tag);
}

TEST_CASE("decide: discard only at end of DATA, above reject", "[quarantine][policy]") {
  config::Actions a;
  a.discard = 30;
  CHECK(decide(syms({{"X", 30}}), a, Phase::EndOfData).action == Action::Discard);
  CHECK(decide(syms({{"X", 29}}), a, Phase::EndOfData).action == Action::Reject);
  CHECK(decide(syms({{"X", 30}}), a, Phase::RcptTo).action == Action::Reject);
}

TEST_CASE("decide: a virus is quarantined or discarded, never rejected", "[quarantine][policy]") {
  config::Actions a;
  auto v = decide(syms({{"VIRUS_FOUND", 0}, {"X", 100}}), a, Phase::EndOfData);
  CHECK(v.action == Action::Quarantine);
  CHECK(v.reason == "VIRUS_FOUND");
  CHECK(decide(syms({{"VIRUS_FOUND", 0}}), a, Phase::EndOfData).action == Action::Quarantine);
  a.virus = config::VirusAction::Discard;
  CHECK(decide(syms({{"VIRUS_EICAR", 20}}), a, Phase::EndOfData).action == Action::Discard);
  CHECK(!is_virus_symbol("AV_LIMIT_EXCEEDED"));
  CHECK(is_virus_symbol("VIRUS_FOUND"));
}

TEST_CASE("sender lists: precedence", "[quarantine][policy]") {
  config::Actions a;
  struct Case {
    Action before;
    Errc reply;
    SenderList list;
    bool virus;
    Action after;
  };
  auto c = GENERATE(values<Case>({
      {Action::Quarantine, Errc::PolicyReject, SenderList::Allow, false, Action::Accept},
      {Action::Reject, Errc::PolicyReject, SenderList::Allow, false, Action::Accept},
      {Action::Reject, Errc::DmarcReject, SenderList::Allow, false, Action::Accept},
      {Action::Tag, Errc::PolicyReject, SenderList::Allow, false, Action::Accept},
      {Action::Reject, Errc::LoopDetected, SenderList::Allow, false, Action::Reject},  // loops still stop
      {Action::TempFail, Errc::ScanUnavailable, SenderList::Allow, false, Action::TempFail},  // never unscanned
      {Action::TempFail, Errc::ScanUnavailable, SenderList::Block, false, Action::TempFail},
      {Action::Quarantine, Errc::PolicyReject, SenderList::Allow, true, Action::Quarantine},  // viruses stay
      {Action::Accept, Errc::PolicyReject, SenderList::Block, false, Action::Reject},
      {Action::Quarantine, Errc::PolicyReject, SenderList::Block, true, Action::Quarantine},  // never bounced
      {Action::Accept, Errc::PolicyReject, SenderList::None, false, Action::Accept},
      {Action::Quarantine, Errc::PolicyReject, SenderList::None, false, Action::Quarantine},
  }));
  Verdict v;
  v.action = c.before;
  v.reply = c.reply;
  auto s = c.virus ? syms({{"VIRUS_FOUND", 0}}) : syms({{"X", 1}});
  apply_sender_list(v, c.list, s, a);
  CHECK(v.action == c.after);
  if (c.list == SenderList::Block && c.after == Action::Reject) {
    CHECK(v.reply == Errc::PolicyReject);
    CHECK(v.reason == "SENDER_BLOCKED");
  }
}

TEST_CASE("wants_spam_headers per [actions] spam_headers", "[quarantine][policy]") {
  config::Actions a;
  CHECK(wants_spam_headers(a, Action::Tag));
  CHECK(wants_spam_headers(a, Action::Quarantine));
  CHECK(!wants_spam_headers(a, Action::Accept));
  a.spam_headers = config::SpamHeaders::All;
  CHECK(wants_spam_headers(a, Action::Accept));
  CHECK(!wants_spam_headers(a, Action::Reject));
  a.spam_headers = config::SpamHeaders::None;
  CHECK(!wants_spam_headers(a, Action::Tag));
}

TEST_CASE("prefix_subject: only the Subject field's bytes change", "[quarantine][policy]") {
  struct Case {
    const char* in;
    const char* out;  // nullptr: unchanged
  };
  auto c = GENERATE(values<Case>({
      {"From: a@b\r\nSubject: hello\r\nTo: c@d\r\n", "From: a@b\r\nSubject: [SPAM] hello\r\nTo: c@d\r\n"},
      {"subject:hello\r\n", "subject: [SPAM] hello\r\n"},
      {"Subject :  hello\r\n", "Subject : [SPAM] hello\r\n"},  // obsolete space before the colon
      {"Subject: =?utf-8?q?caf=C3=A9?=\r\n", "Subject: [SPAM] =?utf-8?q?caf=C3=A9?=\r\n"},
      {"Subject: one\r\n two\r\nX: y\r\n", "Subject: [SPAM] one\r\n two\r\nX: y\r\n"},  // folded value kept
      {"Subject: [SPAM] already\r\n", nullptr},
      {"Subject: first\r\nSubject: second\r\n", "Subject: [SPAM] first\r\nSubject: second\r\n"},
      {"X-Subject: no\r\nFrom: a@b\r\n", "X-Subject: no\r\nFrom: a@b\r\nSubject: [SPAM]\r\n"},
      {"From: a@b\r\n Subject: continuation, not a field\r\n",
       "From: a@b\r\n Subject: continuation, not a field\r\nSubject: [SPAM]\r\n"},
      {"", "Subject: [SPAM]\r\n"},
  }));
  CAPTURE(c.in);
  auto out = prefix_subject(c.in, "[SPAM] ");
  if (!c.out) {
    CHECK(!out);
  } else {
    REQUIRE(out);
    CHECK(*out == c.out);
  }
  CHECK(!prefix_subject(c.in, ""));
}

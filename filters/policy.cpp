// Threshold policy and X-Spam-* headers (see policy.hpp).
#include "filters/policy.hpp"

#include <algorithm>
#include <cstdio>

#include "filters/scores.hpp"

namespace moat::filters {
namespace {

// The reply for a Reject or TempFail: the highest-scoring symbol that names
// a hard reason of the right kind (permanent for Reject, temporary for
// TempFail) wins; otherwise the generic policy row.
Errc pick_reply(const std::vector<Symbol>& symbols, bool permanent) {
  std::optional<Errc> best;
  double best_score = 0;
  for (const auto& s : symbols) {
    auto r = symbol_reply(s.name);
    if (!r || is_temporary(*r) == permanent || s.score <= 0) continue;
    if (!best || s.score > best_score) best = r, best_score = s.score;
  }
  return best.value_or(permanent ? Errc::PolicyReject : Errc::PolicyTempFail);
}

// The first deferral symbol (greylisting, rate limits), if any.
const Symbol* deferral(const std::vector<Symbol>& symbols) {
  for (const auto& s : symbols)
    if (symbol_defers(s.name)) return &s;
  return nullptr;
}

// A forced action (symbol_forces) raises the verdict to at least that action.
void force(const std::vector<Symbol>& symbols, Verdict& v) {
  for (const auto& s : symbols) {
    Forced f = s.score > 0 ? symbol_forces(s.name) : Forced::None;
    if (f == Forced::Reject && v.action != Action::Reject) {
      v.action = Action::Reject;
      v.reply = symbol_reply(s.name).value_or(Errc::PolicyReject);
      v.reason = s.name;
    } else if (f == Forced::Quarantine && (v.action == Action::Accept || v.action == Action::Tag)) {
      v.action = Action::Quarantine;
      v.reason = s.name;
    }
  }
}

// Names of the symbols that moved the score, largest first.
std::string reason(const std::vector<Symbol>& symbols) {
  std::vector<const Symbol*> moved;
  for (const auto& s : symbols)
    if (s.score != 0) moved.push_back(&s);
  std::stable_sort(moved.begin(), moved.end(), [](auto* a, auto* b) { return a->score > b->score; });
  std::string out;
  for (const auto* s : moved) out += (out.empty() ? "" : ", ") + s->name;
  return out;
}

}  // namespace

Verdict decide(const std::vector<Symbol>& symbols, const config::Actions& a, Phase phase) {
  Verdict v;
  for (const auto& s : symbols) v.score += s.score;
  v.reason = reason(symbols);
  if (v.score >= a.reject) {
    v.action = Action::Reject;
    v.reply = pick_reply(symbols, true);
  } else if (const Symbol* d = deferral(symbols)) {
    v.action = Action::TempFail;
    v.reply = symbol_reply(d->name).value_or(Errc::PolicyTempFail);
    v.reason = d->name;
  } else if (v.score >= a.tempfail) {
    v.action = Action::TempFail;
    v.reply = pick_reply(symbols, false);
  } else if (phase != Phase::EndOfData) {
    v.action = Action::Accept;  // not decided yet: later symbols may add up
  } else if (v.score >= a.quarantine) {
    v.action = Action::Quarantine;
  } else if (v.score >= a.tag) {
    v.action = Action::Tag;
  }
  if (phase == Phase::EndOfData) force(symbols, v);
  return v;
}

std::string format_score(double score) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", score);
  std::string s(buf);
  s.erase(s.find_last_not_of('0') + 1);
  if (s.back() == '.') s.pop_back();
  return s == "-0" ? "0" : s;
}

std::vector<std::string> spam_headers(const Verdict& verdict, const std::vector<Symbol>& symbols) {
  bool spam = verdict.action == Action::Tag || verdict.action == Action::Quarantine ||
              verdict.action == Action::Reject || verdict.action == Action::Discard;
  std::vector<std::string> out;
  out.push_back(std::string("X-Spam-Flag: ") + (spam ? "YES" : "NO"));
  out.push_back("X-Spam-Score: " + format_score(verdict.score));
  std::string line = "X-Spam-Symbols:";
  std::size_t col = line.size();
  for (std::size_t i = 0; i < symbols.size(); ++i) {
    std::string item = symbols[i].name + "(" + format_score(symbols[i].score) + ")" +
                       (i + 1 < symbols.size() ? "," : "");
    if (col + 1 + item.size() > 78 && col > 1) {
      line += "\r\n\t";
      col = 1;
    } else {
      line += ' ';
      ++col;
    }
    line += item;
    col += item.size();
  }
  out.push_back(std::move(line));
  return out;
}

}  // namespace moat::filters

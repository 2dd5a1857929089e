// Threshold policy and X-Spam-* headers (see policy.hpp).
#include "filters/policy.hpp"

#include <algorithm>
#include <cstdio>

#include "common/text.hpp"
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

const Symbol* first_virus(const std::vector<Symbol>& symbols) {
  for (const auto& s : symbols)
    if (is_virus_symbol(s.name)) return &s;
  return nullptr;
}

void set_virus_action(Verdict& v, const Symbol& virus, const config::Actions& a) {
  v.action = a.virus == config::VirusAction::Discard ? Action::Discard : Action::Quarantine;
  v.reason = virus.name;
}

const Symbol* first_unscanned(const std::vector<Symbol>& symbols) {
  for (const auto& s : symbols)
    if (is_unscanned_symbol(s.name) && s.score > 0) return &s;  // [scores] X = 0 turns it off, as for forcing
  return nullptr;
}

// After the virus rule: content the scanner could not vouch for is held
// rather than refused. Discard stays (nothing goes back to the sender).
void hold_unscanned(Verdict& v, const std::vector<Symbol>& symbols) {
  const Symbol* u = first_unscanned(symbols);
  if (!u || v.action != Action::Reject) return;
  v.action = Action::Quarantine;
  v.reason = u->name;
}

const config::Actions& domain_actions(const config::Config& cfg, std::string_view domain) {
  for (const auto& d : cfg.domain_actions)
    if (iequals(d.domain, domain)) return d.actions;
  return cfg.actions;
}

std::string_view domain_of(std::string_view address) {
  auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

}  // namespace

config::Actions actions_for(const config::Config& cfg, const Envelope& env) {
  if (cfg.domain_actions.empty() || env.recipients.empty()) return cfg.actions;
  config::Actions out = domain_actions(cfg, domain_of(env.recipients.front().address));
  for (std::size_t i = 1; i < env.recipients.size(); ++i) {
    const auto& a = domain_actions(cfg, domain_of(env.recipients[i].address));
    out.tag = std::min(out.tag, a.tag);
    out.quarantine = std::min(out.quarantine, a.quarantine);
    out.tempfail = std::min(out.tempfail, a.tempfail);
    out.reject = std::min(out.reject, a.reject);
    out.discard = std::min(out.discard, a.discard);
  }
  return out;
}

bool is_virus_symbol(std::string_view name) { return name.rfind("VIRUS", 0) == 0; }

bool is_unscanned_symbol(std::string_view name) { return name == "AV_LIMIT_EXCEEDED" || name == "AV_SCAN_ERROR"; }

Verdict decide(const std::vector<Symbol>& symbols, const config::Actions& a, Phase phase) {
  Verdict v;
  for (const auto& s : symbols) v.score += s.score;
  v.reason = reason(symbols);
  if (phase == Phase::EndOfData && v.score >= a.discard) {
    v.action = Action::Discard;
  } else if (v.score >= a.reject) {
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
  if (phase != Phase::EndOfData) return v;
  force(symbols, v);
  if (const Symbol* virus = first_virus(symbols)) set_virus_action(v, *virus, a);
  else hold_unscanned(v, symbols);
  return v;
}

void apply_sender_list(Verdict& v, SenderList list, const std::vector<Symbol>& symbols,
                       const config::Actions& a) {
  if (list == SenderList::None || v.action == Action::TempFail) return;
  if (const Symbol* virus = first_virus(symbols)) return set_virus_action(v, *virus, a);
  if (const Symbol* u = first_unscanned(symbols)) {
    // Neither passed unscanned (allowed) nor bounced with what may be a virus (blocked).
    v.action = Action::Quarantine;
    v.reason = list == SenderList::Block ? "SENDER_BLOCKED" : u->name;
    return;
  }
  if (list == SenderList::Block) {
    v.action = Action::Reject;
    v.reply = Errc::PolicyReject;
    v.reason = "SENDER_BLOCKED";
  } else if (!(v.action == Action::Reject && v.reply == Errc::LoopDetected)) {
    v.action = Action::Accept;
    v.reason = "SENDER_ALLOWED";
  }
}

bool wants_spam_headers(const config::Actions& a, Action action) {
  switch (a.spam_headers) {
    case config::SpamHeaders::None: return false;
    case config::SpamHeaders::All: return action != Action::Reject && action != Action::TempFail;
    case config::SpamHeaders::Spam: return action == Action::Tag || action == Action::Quarantine;
  }
  return false;
}

std::optional<std::string> prefix_subject(std::string_view header, std::string_view prefix) {
  if (prefix.empty()) return std::nullopt;
  constexpr std::string_view kName = "subject";
  std::size_t pos = 0;
  while (pos < header.size()) {
    std::size_t eol = header.find("\r\n", pos);
    std::size_t end = eol == std::string_view::npos ? header.size() : eol;
    std::string_view line = header.substr(pos, end - pos);
    // A field start (not a continuation) named Subject, "Subject :" included.
    std::size_t n = 0;
    while (n < line.size() && line[n] != ':' && !is_wsp(line[n])) ++n;
    std::size_t colon = n;
    while (colon < line.size() && is_wsp(line[colon])) ++colon;
    if (n > 0 && colon < line.size() && line[colon] == ':' && iequals(line.substr(0, n), kName)) {
      std::size_t value = colon + 1;
      while (value < line.size() && is_wsp(line[value])) ++value;
      std::string_view trimmed = prefix;
      while (!trimmed.empty() && is_wsp(trimmed.back())) trimmed.remove_suffix(1);
      if (line.substr(value).rfind(trimmed, 0) == 0) return std::nullopt;
      std::string out;
      out.reserve(header.size() + prefix.size() + 1);
      out.append(header.substr(0, pos + colon + 1));
      out += ' ';
      out.append(prefix);
      // The original value, without the whitespace the prefix now stands for.
      out.append(header.substr(pos + value));
      return out;
    }
    if (eol == std::string_view::npos) break;
    pos = eol + 2;
  }
  std::string out(header);
  if (!out.empty() && !std::string_view(out).ends_with("\r\n")) out += "\r\n";
  std::string_view trimmed = prefix;
  while (!trimmed.empty() && is_wsp(trimmed.back())) trimmed.remove_suffix(1);
  out += "Subject: " + std::string(trimmed) + "\r\n";
  return out;
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

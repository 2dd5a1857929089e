// Default scores and the symbol -> reply table (see scores.hpp). Scores are
// chosen against the default thresholds in etc/moat.toml (tag 5, reject 15):
// a syntax error in HELO or a mail loop rejects alone, hints only add up.
#include "filters/scores.hpp"

#include "rules/load.hpp"

namespace moat::filters {
namespace {

struct Row {
  std::string_view symbol;
  double score;
  std::optional<Errc> reply;
  bool defers = false;  // see symbol_defers()
};

constexpr Row kDefaults[] = {
    // helo: RFC 5321 §4.1.1.1 wants a FQDN or an address literal.
    {"HELO_BAD_SYNTAX", 20, Errc::BadHelo},
    {"HELO_NOT_FQDN", 1, std::nullopt},
    {"HELO_BARE_IP", 2, std::nullopt},       // IP without [brackets]
    {"HELO_IS_OUR_NAME", 6, std::nullopt},   // a stranger claiming to be us
    // hops: RFC 5321 §6.3 loop detection by counting Received:.
    {"HOPS_LOOP", 100, Errc::LoopDetected},
    // size: information only; the hard limit is the session's SIZE check.
    {"MSG_LARGE", 0, std::nullopt},
    // dnsbl: per-zone symbols, scored by each zone's weight ([[dnsbl.zone]]);
    // a name ending in '*' is a prefix row.
    {"DNSBL_*", 0, Errc::DnsblListed},
    {"RHSBL_*", 0, std::nullopt},
    // greylist and ratelimit defer on their own (symbol_defers), scoring nothing.
    {"GREYLIST", 0, Errc::Greylisted, true},
    {"RATELIMIT_CONNECTIONS", 0, Errc::RateLimited, true},
    {"RATELIMIT_MESSAGES", 0, Errc::MessageRateLimited, true},
    {"RATELIMIT_RECIPIENTS", 0, Errc::MessageRateLimited, true},
    {"RATELIMIT_USER_MESSAGES", 0, Errc::MessageRateLimited, true},
    {"RATELIMIT_USER_RECIPIENTS", 0, Errc::MessageRateLimited, true},
    // dmarc (RFC 7489): the policy symbols force their action (symbol_forces);
    // the From-header findings add up ("Composition Kills" spoofs).
    {"DMARC_PASS", -1, std::nullopt},
    {"DMARC_POLICY_REJECT", 15, Errc::DmarcReject},
    {"DMARC_POLICY_QUARANTINE", 10, std::nullopt},
    {"DMARC_POLICY_NONE", 1, std::nullopt},
    {"DMARC_NA", 0, std::nullopt},
    {"DMARC_PERMERROR", 0, std::nullopt},
    {"DMARC_BAD_FROM", 8, std::nullopt},
    {"DMARC_NO_FROM", 3, std::nullopt},
    {"DMARC_MULTI_FROM", 3, std::nullopt},
    // arc (RFC 8617): information for local policy; a broken chain is no
    // worse than none (forwarders and lists break chains), hence no weight.
    {"ARC_PASS", 0, std::nullopt},
    {"ARC_FAIL", 0, std::nullopt},
    {"ARC_NA", 0, std::nullopt},
    // dkim (RFC 6376): evidence for DMARC more than a verdict of its own; a
    // broken signature is suspicious, a missing or unusable one is common.
    {"DKIM_PASS", -0.5, std::nullopt},
    {"DKIM_FAIL", 2, Errc::DkimFail},
    {"DKIM_PERMERROR", 0.5, std::nullopt},
    {"DKIM_TEMPERROR", 0, std::nullopt},
    {"DKIM_NONE", 0, std::nullopt},
    {"DKIM_SIGNED", 0, std::nullopt},       // ours, outbound
    // spf (RFC 7208): hints only; DMARC does the policy. A fail alone tags
    // (5); SPF_FAIL's row names the reply when a score sum rejects (550 5.7.23).
    {"SPF_PASS", 0, std::nullopt},
    {"SPF_FAIL", 5, Errc::SpfFail},
    {"SPF_SOFTFAIL", 2, std::nullopt},
    {"SPF_NEUTRAL", 0, std::nullopt},
    {"SPF_NONE", 0.5, std::nullopt},
    {"SPF_TEMPERROR", 0, std::nullopt},    // fail = "closed" (default) defers instead: 451 4.4.3
    {"SPF_PERMERROR", 2, std::nullopt},
    {"SPF_HELO_PASS", 0, std::nullopt},    // [spf] check_helo
    {"SPF_HELO_FAIL", 2, std::nullopt},
    {"SPF_HELO_SOFTFAIL", 1, std::nullopt},
    {"SPF_HELO_NEUTRAL", 0, std::nullopt},
    {"SPF_HELO_NONE", 0, std::nullopt},
    {"SPF_HELO_TEMPERROR", 0, std::nullopt},
    {"SPF_HELO_PERMERROR", 1, std::nullopt},
    // bayes (filters/bayes): one band per message, SpamAssassin's bands.
    // Only near-certain spam tags on its own (5); the ham bands pull down.
    {"BAYES_00", -3, std::nullopt},
    {"BAYES_05", -1.5, std::nullopt},
    {"BAYES_20", -0.5, std::nullopt},
    {"BAYES_40", 0, std::nullopt},
    {"BAYES_50", 0.5, std::nullopt},
    {"BAYES_60", 1.5, std::nullopt},
    {"BAYES_80", 2.5, std::nullopt},
    {"BAYES_95", 3.5, std::nullopt},
    {"BAYES_99", 5, std::nullopt},
    {"BAYES_999", 6, std::nullopt},
    {"BAYES_AUTOLEARN", 0, std::nullopt},
    // antivirus / attachments (issue 4): each forces Quarantine (symbol_forces);
    // a virus is held, never bounced. Unscanned content (a limit hit) is not clean.
    // Small scores: the forcing holds the message, and several findings must
    // not add up to a reject on their own.
    {"VIRUS_FOUND", 1, std::nullopt},
    {"AV_LIMIT_EXCEEDED", 1, std::nullopt},
    {"AV_SCAN_ERROR", 1, std::nullopt},
    {"ATTACHMENT_BLOCKED_EXT", 1, std::nullopt},
    {"ATTACHMENT_DOUBLE_EXT", 1, std::nullopt},
    {"ATTACHMENT_BLOCKED_TYPE", 1, std::nullopt},
    {"ATTACHMENT_BLOCKED_IN_ARCHIVE", 1, std::nullopt},
    {"ATTACHMENT_ENCRYPTED", 1, std::nullopt},
    {"ATTACHMENT_ARCHIVE_LIMIT", 1, std::nullopt},
    {"ATTACHMENT_MIME_LIMIT", 1, std::nullopt},
    {kFilterFailedOpen, 0, std::nullopt},
};

const Row* find(std::string_view symbol) {
  for (const auto& r : kDefaults)
    if (r.symbol == symbol) return &r;
  for (const auto& r : kDefaults)
    if (r.symbol.ends_with('*') && symbol.starts_with(r.symbol.substr(0, r.symbol.size() - 1))) return &r;
  return nullptr;
}

}  // namespace

std::optional<double> default_score(std::string_view symbol) {
  const Row* r = find(symbol);
  return r ? std::optional<double>(r->score) : std::nullopt;
}

std::optional<Errc> symbol_reply(std::string_view symbol) {
  const Row* r = find(symbol);
  return r ? r->reply : std::nullopt;
}

bool symbol_defers(std::string_view symbol) {
  const Row* r = find(symbol);
  return r && r->defers;
}

Forced symbol_forces(std::string_view symbol) {
  if (symbol == "DMARC_POLICY_REJECT") return Forced::Reject;
  if (symbol == "DMARC_POLICY_QUARANTINE") return Forced::Quarantine;
  if (symbol == "VIRUS_FOUND" || symbol == "AV_LIMIT_EXCEEDED" || symbol == "AV_SCAN_ERROR" ||
      symbol.starts_with("ATTACHMENT_"))
    return Forced::Quarantine;
  return Forced::None;
}

Scores::Scores() {
  for (const auto& r : kDefaults)
    if (!r.symbol.ends_with('*')) table_.emplace(std::string(r.symbol), r.score);
}

Scores::Scores(const config::Config& cfg) : Scores() {
  for (const auto& z : cfg.dnsbl.zones) set(z.symbol, z.weight);  // [scores] may still override
  // The rule folders' .scores files (rules/load.hpp), when the rules filter runs.
  if (const auto* f = cfg.filter("rules"); f && f->enabled)
    for (const auto& [symbol, score] : moat::rules::load_scores(cfg.rules)) set(symbol, score);
  for (const auto& [symbol, score] : cfg.scores) set(symbol, score);
}

double Scores::score(std::string_view symbol) const {
  auto it = table_.find(symbol);
  return it == table_.end() ? 0.0 : it->second;
}

void Scores::set(std::string_view symbol, double score) { table_.insert_or_assign(std::string(symbol), score); }

}  // namespace moat::filters

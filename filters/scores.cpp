// Default scores and the symbol -> reply table (see scores.hpp). Scores are
// chosen against the default thresholds in etc/moat.toml (tag 5, reject 15):
// a syntax error in HELO or a mail loop rejects alone, hints only add up.
#include "filters/scores.hpp"

namespace moat::filters {
namespace {

struct Row {
  std::string_view symbol;
  double score;
  std::optional<Errc> reply;
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
    {kFilterFailedOpen, 0, std::nullopt},
};

const Row* find(std::string_view symbol) {
  for (const auto& r : kDefaults)
    if (r.symbol == symbol) return &r;
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

Scores::Scores() {
  for (const auto& r : kDefaults) table_.emplace(std::string(r.symbol), r.score);
}

Scores::Scores(const config::Config& cfg) : Scores() {
  for (const auto& [symbol, score] : cfg.scores) set(symbol, score);
}

double Scores::score(std::string_view symbol) const {
  auto it = table_.find(symbol);
  return it == table_.end() ? 0.0 : it->second;
}

void Scores::set(std::string_view symbol, double score) { table_.insert_or_assign(std::string(symbol), score); }

}  // namespace moat::filters

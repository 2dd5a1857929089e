// Symbol scores and hard-reason replies. Filters only name symbols; this table
// gives each its weight (built-in defaults, overridden by [scores] in the
// config; later also the rules/ score files), the Rspamd split of detection
// from policy.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/config.hpp"
#include "common/error.hpp"

namespace moat::filters {

// Symbols the pipeline itself adds.
inline constexpr std::string_view kFilterFailedOpen = "FILTER_FAILED_OPEN";

class Scores {
 public:
  Scores();                                      // built-in defaults only
  explicit Scores(const config::Config& cfg);    // defaults, then [scores]

  double score(std::string_view symbol) const;   // unknown symbols score 0
  void set(std::string_view symbol, double score);

 private:
  std::map<std::string, double, std::less<>> table_;
};

// The built-in default score of a symbol, if it has one.
std::optional<double> default_score(std::string_view symbol);

// Which reply row answers when this symbol decides a Reject (e.g. HOPS_LOOP
// -> LoopDetected, "554 5.4.6 Too many hops"); nullopt: the generic policy reply.
std::optional<Errc> symbol_reply(std::string_view symbol);

// Deferral symbols (GREYLIST, RATELIMIT_*) are not judgements that add up:
// any one of them makes the verdict TempFail with its reply row, whatever the
// score (unless the score already rejects).
bool symbol_defers(std::string_view symbol);

// Symbols that carry the sender domain's own published verdict (DMARC
// p=reject / p=quarantine, RFC 7489 §6.3) set at least that action at end of
// DATA, whatever the thresholds, while their score is positive ([scores]
// SYMBOL = 0 turns the forcing off). A forced Reject answers with the
// symbol's reply row.
enum class Forced : std::uint8_t { None, Quarantine, Reject };
Forced symbol_forces(std::string_view symbol);

}  // namespace moat::filters

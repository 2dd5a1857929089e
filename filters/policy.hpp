// Policy: symbols in, one verdict out. Scores add up and the [actions]
// thresholds pick the action (Rspamd actions.conf), so detection never
// decides by itself. Also renders the X-Spam-* header lines for Tag.
#pragma once

#include <string>
#include <vector>

#include "common/config.hpp"
#include "filters/filter.hpp"

namespace moat::filters {

// Symbol scores must already be filled in (the pipeline does it).
// At EndOfData: score >= reject -> Reject, >= tempfail -> TempFail,
// >= quarantine -> Quarantine, >= tag -> Tag, else Accept. Before EndOfData
// only Reject and TempFail are decided; anything else is Accept for now
// (the rest waits for the message). Two kinds of symbols act whatever the
// sum (filters/scores.cpp): deferrals (greylisting, rate limits) make it
// TempFail with their own reply, and forcing symbols with a positive score
// (DMARC p=reject / p=quarantine) raise it to Reject / Quarantine.
Verdict decide(const std::vector<Symbol>& symbols, const config::Actions& actions, Phase phase);

// "7.5", "-2", "0.33": scores in headers and logs.
std::string format_score(double score);

// Header lines, without the final CRLF, long lines folded with CRLF TAB
// (RFC 5322 §2.2.3): X-Spam-Flag, X-Spam-Score, X-Spam-Symbols. Only symbol
// names go in, never details, which can hold client-supplied text.
std::vector<std::string> spam_headers(const Verdict& verdict, const std::vector<Symbol>& symbols);

}  // namespace moat::filters

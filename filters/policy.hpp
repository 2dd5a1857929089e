// Policy: symbols in, one verdict out. Scores add up and the [actions]
// thresholds pick the action (Rspamd actions.conf), so detection never
// decides by itself. Thresholds can differ per recipient domain, sender
// allow/block lists adjust the verdict, viruses are never bounced. Also
// renders the X-Spam-* header lines and the Subject prefix for Tag
// (RFC 5322 §2.2.3 folding, §3.6.5 Subject). docs/quarantine.md.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.hpp"
#include "common/envelope.hpp"
#include "filters/filter.hpp"

namespace moat::filters {

// The [actions] for one message: [[actions.domain]] of each recipient domain
// (else [actions]); when recipients' domains have different settings, the
// lowest of each threshold wins (the strictest recipient protects everyone
// on the message, which is delivered once), and the first recipient's
// subject_prefix, spam_headers and virus settings apply.
config::Actions actions_for(const config::Config& cfg, const Envelope& env);

// Virus symbols (VIRUS_*, from filters/antivirus) make the verdict the
// configured [actions] virus action at end of DATA, whatever the score: never
// Reject, so nothing is bounced for a virus (SECURITY.md promise 4).
bool is_virus_symbol(std::string_view name);

// Content the antivirus could not vouch for (AV_LIMIT_EXCEEDED: a ClamAV or
// MIME limit cut the scan short; AV_SCAN_ERROR) may be a virus too: it is
// held, and a score over reject makes it Quarantine instead of Reject, so it
// is not bounced either. Discard stays Discard. Like the forcing
// (filters/scores.hpp), only while the symbol's score is positive.
bool is_unscanned_symbol(std::string_view name);

// Symbol scores must already be filled in (the pipeline does it).
// At EndOfData: score >= discard -> Discard, >= reject -> Reject, >= tempfail -> TempFail,
// >= quarantine -> Quarantine, >= tag -> Tag, else Accept. Before EndOfData
// only Reject and TempFail are decided; anything else is Accept for now
// (the rest waits for the message). Two kinds of symbols act whatever the
// sum (filters/scores.cpp): deferrals (greylisting, rate limits) make it
// TempFail with their own reply, and forcing symbols with a positive score
// (DMARC p=reject / p=quarantine) raise it to Reject / Quarantine.
Verdict decide(const std::vector<Symbol>& symbols, const config::Actions& actions, Phase phase);

// Sender lists (quarantine/ store, keyed on the DMARC-aligned authenticated
// From domain). Precedence at end of DATA, after decide():
//   1. a fail-closed TempFail stays (a message is never passed unscanned);
//   2. a virus keeps its virus action (quarantine or discard);
//   3. unscanned content (is_unscanned_symbol) is quarantined either way;
//   4. Block -> Reject (550 5.7.1, reason SENDER_BLOCKED);
//   5. Allow -> Accept, except a mail loop (HOPS_LOOP) which still rejects.
enum class SenderList { None, Allow, Block };
void apply_sender_list(Verdict& v, SenderList list, const std::vector<Symbol>& symbols,
                       const config::Actions& actions);

// Whether the message gets X-Spam-* headers ([actions] spam_headers).
bool wants_spam_headers(const config::Actions& actions, Action action);

// The header section (CRLF lines, no empty line) with `prefix` put in front
// of the first Subject field's value; only that field's bytes change. A
// Subject already starting with the prefix is left alone (nullopt); without a
// Subject field one is added at the end. nullopt also when prefix is empty.
std::optional<std::string> prefix_subject(std::string_view header, std::string_view prefix);

// "7.5", "-2", "0.33": scores in headers and logs.
std::string format_score(double score);

// Header lines, without the final CRLF, long lines folded with CRLF TAB
// (RFC 5322 §2.2.3): X-Spam-Flag, X-Spam-Score, X-Spam-Symbols. Only symbol
// names go in, never details, which can hold client-supplied text.
std::vector<std::string> spam_headers(const Verdict& verdict, const std::vector<Symbol>& symbols);

}  // namespace moat::filters

// SPF record syntax (RFC 7208 §4.6, §12 ABNF) and macros (§7), done by us
// before libspf2 sees a record: libspf2 1.2.10 accepts records the RFC calls
// permerror (bad top labels, "%" escapes, exp= twice, ...), refuses valid
// ones (modifier names with "." or "_", redirect= before mechanisms, CIDR
// /0), and its macro expander cuts a character off truncated names and
// mangles text with spaces. So each record is checked here, its macros are
// expanded for the check at hand, and libspf2 gets a literal record it
// evaluates as written (see normalize()).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/net.hpp"

namespace moat::filters::spf {

// The values of §7.3 for one check_host().
struct MacroValues {
  std::string sender;                 // s (l and o are its parts)
  std::string domain;                 // d: the current domain
  IpAddr ip;                          // i, c, v
  std::string helo;                   // h
  std::string receiver;               // r (exp text only)
  long long now = 0;                  // t (exp text only)
  std::function<std::string()> ptr;   // p: the validated name or "unknown"; asks DNS, so called only when used
};

// Longest expansion we build (a 64 KiB TXT record full of %{s} would
// otherwise make megabytes); longer is a syntax error.
inline constexpr std::size_t kMaxExpansion = 65536;

// Expands a macro-string (§7.1). exp_text allows c, r and t (§7.2). nullopt
// on a syntax error (a "%" not followed by "{", "%", "_" or "-", a bad letter
// or transformer, an unclosed "{").
std::optional<std::string> expand_macros(std::string_view s, const MacroValues& v, bool exp_text);

// Escapes literal text as a macro-string that expands back to it.
std::string as_macro_literal(std::string_view text);

// A label appended to a target name whose CIDR length is 0 for the client's
// family ("a/0", "mx//0"): any address matches, which libspf2 cannot say
// (0 means "no CIDR" there). The DNS layer strips it and answers with the
// client's own address when the name has any address of that family.
inline constexpr std::string_view kAnyAddressLabel = "-moat-any-address-";

struct Normalized {
  std::string record;   // for SPF_record_compile(); empty when error is set
  std::string error;    // why the record is a permerror
  std::string exp;      // the expanded exp= target, "" when none
};

// Checks `record` (already selected by §4.5) against the §12 ABNF and writes
// it for libspf2: every domain-spec expanded (§4.8: truncated to 253 octets
// from the left) and escaped back as a literal, unknown modifiers dropped,
// redirect= moved last or dropped when "all" is present (§6.1), CIDR /0
// rewritten. ipv4_client: the family whose CIDR lengths apply.
Normalized normalize(std::string_view record, const MacroValues& v, bool ipv4_client);

}  // namespace moat::filters::spf

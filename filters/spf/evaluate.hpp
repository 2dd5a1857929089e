// SPF check_host() (RFC 7208 §4) through libspf2, with a DNS layer of our
// own: every question libspf2 asks goes to a blocking Lookup (in moatd: the
// daemon's dns::Resolver, see checker.hpp). The layer also enforces what
// libspf2 does not: the limits of §4.6.4 counted across include/redirect
// (libspf2 counts per record and lets an 11th term run), the 2 void lookups,
// and record selection by §4.5 (TXT only, "v=spf1" then space or end, more
// than one is permerror). Blocking: call it from the blocking pool only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/net.hpp"

namespace moat::filters::spf {

// RFC 7208 §2.6.
enum class Result : std::uint8_t { None, Neutral, Pass, Fail, SoftFail, TempError, PermError };
std::string_view result_name(Result r);  // "pass", "temperror", ...

// RFC 7208 §4.6.4: terms that query DNS, lookups answering nothing, and the
// address lookups one "mx" or "ptr" may cause.
inline constexpr int kMaxDnsTerms = 10;
inline constexpr int kMaxVoidLookups = 2;
inline constexpr int kMaxNamesPerTerm = 10;

// One DNS answer, decoded.
struct DnsReply {
  enum class Status : std::uint8_t { Ok, NxDomain, TempFail };
  Status status = Status::TempFail;
  std::vector<std::string> names;  // MX hosts, PTR names or TXT strings (pieces joined, §3.3), answer order
  std::vector<IpAddr> addrs;       // A / AAAA
  std::uint32_t ttl = 0;           // seconds the answer stays valid (DNS TTL)
};

// A blocking DNS question (name, RR type number) → answer.
using Lookup = std::function<DnsReply(const std::string& name, int rrtype)>;

struct Query {
  IpAddr client;
  std::string sender;          // MAIL FROM without <>; "" for the null sender
  std::string helo;            // HELO/EHLO argument
  bool helo_identity = false;  // check the HELO identity (§2.3) rather than MAIL FROM (§2.4)
  std::string receiver;        // our host name: %{r} and the Received-SPF comment
};

struct Outcome {
  Result result = Result::None;
  std::string domain;       // the domain checked (<domain> of check_host)
  std::string sender;       // the <sender> of check_host: "postmaster@helo" for <> (§2.4)
  std::string explanation;  // for fail: the exp= text (§6.2) or our default
  std::string problem;      // why permerror/temperror/none, for logs and the header
  int dns_terms = 0;        // terms that queried DNS, includes and redirects counted
  int void_lookups = 0;
  // How long the same query would give the same outcome: the shortest TTL
  // of the DNS answers it rests on; 0 when a DNS question failed (never
  // reuse), kNoDnsTtl when it asked nothing.
  std::uint32_t ttl = 0;
  // A record or exp= text had macros (§7): the outcome may depend on the
  // whole sender (%{s}, %{l}), not only its domain.
  bool has_macros = false;
};
inline constexpr std::uint32_t kNoDnsTtl = 0xffffffff;

Outcome evaluate(const Query& q, const Lookup& lookup);

// §4.3: a domain check_host() may start with: labels of 1..63 octets, at
// most 253 in all, at least two labels, not an address literal.
bool valid_identity_domain(std::string_view domain);

}  // namespace moat::filters::spf

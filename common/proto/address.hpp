// SMTP envelope addresses (RFC 5321 §4.1.2 Path/Mailbox, §4.5.3.1 limits;
// RFC 6531 SMTPUTF8) and the open-relay guard from SECURITY.md. Addresses are
// data: nothing here expands, rewrites or routes them.
#pragma once

#include <string>
#include <string_view>

#include "common/error.hpp"

namespace moat::proto::smtp {

inline constexpr std::size_t kMaxLocalPart = 64;   // RFC 5321 §4.5.3.1.1
inline constexpr std::size_t kMaxDomain = 255;     // §4.5.3.1.2
inline constexpr std::size_t kMaxPath = 256;       // §4.5.3.1.3, angle brackets included

struct Mailbox {
  std::string local;            // local part; when quoted, the content with quotes and '\' escapes removed
  std::string domain;           // domain as sent, or "[...]" address literal; empty only for <postmaster>
  bool quoted_local = false;    // local part was a Quoted-string
  bool domain_literal = false;  // domain is an address-literal
  bool source_route = false;    // "@a,@b:" prefix was present (and dropped, RFC 5321 §4.1.1.3)
  bool utf8 = false;            // non-ASCII somewhere: needs SMTPUTF8

  // local@domain with the local part re-quoted when needed (for logs and
  // onward envelopes; not a byte-exact copy of what the client sent).
  std::string str() const;
};

// Parses the text between '<' and '>' (Command::path), which must be
// non-empty (the null path <> is the caller's business). allow_utf8: the
// transaction declared SMTPUTF8, so UTF-8 is allowed in atoms, quoted strings
// and domain labels. allow_postmaster: accept the bare "Postmaster" of
// RCPT TO:<Postmaster> (any case), returned with an empty domain.
// Errc::BadAddress with a detail naming the fault.
Result<Mailbox> parse_path(std::string_view path, bool allow_utf8, bool allow_postmaster = false);

// The open-relay tricks (SECURITY.md): '%' or '!' in the local part, '@'
// inside a quoted local part, source routes, address literals, a domain with
// a trailing dot or empty labels, and non-ASCII without SMTPUTF8. Call it for
// every recipient that is not plainly local before any routing decision.
Status check_relay_safe(const Mailbox& mailbox, bool smtputf8 = false);

// ASCII lower case, for case-insensitive domain comparison (U-labels are
// compared byte-wise; IDNA mapping is not done here).
std::string lower_domain(std::string_view domain);

// RFC 5321 Domain (labels of letter/digit/hyphen, 1..63 bytes each, not
// starting or ending with '-', no trailing dot, at most 255 bytes); with
// allow_utf8 a label may also hold UTF-8 (RFC 6531 U-label, not IDNA-checked).
bool is_valid_domain(std::string_view domain, bool allow_utf8 = false);

// RFC 5321 address-literal including the brackets: [1.2.3.4], [IPv6:...],
// or a General-address-literal [tag:content].
bool is_valid_address_literal(std::string_view literal);

// Well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
// Shared with sasl.cpp; could move to a common/utf8.hpp.
bool is_valid_utf8(std::string_view s);

}  // namespace moat::proto::smtp

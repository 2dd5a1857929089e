// Authentication results of one message (RFC 8601): what SPF, DKIM, DMARC
// and ARC found, kept in the ScanContext so later checks read earlier ones
// (DMARC reads SPF and DKIM), and written as one Authentication-Results
// header with our authserv-id. Inbound fields that claim our authserv-id are
// forged or stale and are removed before the message is queued (§5).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moat::filters {

struct AuthResult {
  std::string method;   // "spf", "dkim", "dmarc", "arc", "auth", "iprev"
  std::string result;   // "pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", ...
  std::string reason;   // optional free text, written as reason="..."
  // ptype.property = value, in order: {"smtp.mailfrom", "example.com"},
  // {"header.d", "example.com"}, {"header.s", "sel"}, {"header.b", "abcd1234"}.
  std::vector<std::pair<std::string, std::string>> props;

  std::string_view prop(std::string_view key) const;  // "" when absent
};

// "Authentication-Results: ID;\r\n\tspf=pass smtp.mailfrom=a.example;\r\n..."
// with CRLF at the end; "ID; none" when results is empty. Values that are
// not RFC 2045 tokens are quoted; control characters are dropped.
std::string authentication_results(std::string_view authserv_id, const std::vector<AuthResult>& results);

// The header section without the Authentication-Results fields whose
// authserv-id is `authserv_id` (case-insensitive); nullopt when none is
// present, so the common case copies nothing. `header` is the header section
// as received (CRLF lines, folded fields allowed), without the blank line.
std::optional<std::string> strip_authentication_results(std::string_view header, std::string_view authserv_id);

}  // namespace moat::filters

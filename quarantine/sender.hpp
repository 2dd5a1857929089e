// The sender identity the allow/block lists key on: the From domain, but only
// when it is authenticated, i.e. an SPF or DKIM pass whose domain is aligned
// with it in the DMARC sense (RFC 7489 §3.1, relaxed). A visible From alone
// is trivially forged, so it never selects a list entry.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "filters/authres/authres.hpp"

namespace moat::quarantine {

// A dmarc=pass result names its header.from; otherwise the one From domain of
// `header` (filters/dmarc parse_from: exactly one plain mailbox) when an spf
// (smtp.mailfrom) or dkim (header.d) pass is aligned with it. "" otherwise.
std::string authenticated_domain(const std::vector<filters::AuthResult>& auth, std::string_view header);

}  // namespace moat::quarantine

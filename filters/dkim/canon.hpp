// DKIM signing done by moat itself: relaxed/relaxed canonicalization (RFC
// 6376 §3.4.2, §3.4.4), the body and header hashes (§3.7) and the signature
// (RFC 8463 §3: Ed25519 over the SHA-256 header hash; rsa-sha256 too). Used
// for Ed25519 keys, because Debian's libopendkim 2.11.0~beta2 leaks the
// private key (an EVP_PKEY, about 1.3 KB) on every Ed25519 signature it
// makes; RSA keys are signed by libopendkim (filters/dkim/opendkim.cpp).
// libopendkim, dkimpy and opendkim-testmsg verify what this makes (tests).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "filters/dkim/key.hpp"

namespace moat::filters::dkim {

// §3.4.4: WSP runs to one SP, no WSP at line ends, no empty lines at the end,
// CRLF after the last non-empty line.
std::string relaxed_body(std::string_view body);

// §3.4.2 for one field ("Name: value", folding allowed, no final CRLF):
// "name:value" with the name lower-cased, unfolded, WSP runs to one SP and
// no WSP around the colon or at the end. No CRLF appended.
std::string relaxed_header(std::string_view field);

// The complete "DKIM-Signature: ...\r\n" field, c=relaxed/relaxed. h= names
// each header of `sign_headers` present (in message order), then every name
// of `sign_headers` once more (over-signing), as libopendkim does.
Result<std::string> sign_relaxed(std::string_view header, std::string_view body, const PrivateKey& key,
                                 std::string_view domain, std::string_view selector,
                                 const std::vector<std::string>& sign_headers, std::uint64_t now);

}  // namespace moat::filters::dkim

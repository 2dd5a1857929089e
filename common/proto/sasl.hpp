// SASL framing for SMTP AUTH (RFC 4954) and the PLAIN (RFC 4616) and LOGIN
// (draft-murchison-sasl-login) mechanisms. Decoding only: password checks
// belong to directory/, and AUTH only over TLS is the session's rule.
#pragma once

#include <string>
#include <string_view>

#include "common/error.hpp"

namespace moat::proto::sasl {

inline constexpr std::size_t kMaxField = 255;          // authzid / authcid / password, bytes
inline constexpr std::string_view kLoginUserPrompt = "VXNlcm5hbWU6";      // base64("Username:")
inline constexpr std::string_view kLoginPasswordPrompt = "UGFzc3dvcmQ6";  // base64("Password:")

struct PlainCredentials {
  std::string authzid;   // may be empty: act as authcid (the caller decides whether a different one is allowed)
  std::string authcid;
  std::string password;
};

// The argument of "AUTH mech [initial-response]".
struct AuthRequest {
  std::string mechanism;         // upper-cased, RFC 4422 sasl-mech syntax (1..20 of A-Z 0-9 - _)
  bool has_initial = false;      // an initial response was given ("=" counts: empty response)
  std::string initial;           // base64 as sent ("" for "=")
};
Result<AuthRequest> parse_auth(std::string_view argument);

// A client line sent in answer to a 334 challenge is "*" to cancel
// (RFC 4954 §4: reply 501 5.7.0).
bool is_cancel(std::string_view line);

// Decodes one response or initial response: "=" is the empty response
// (RFC 4954 §4), anything else strict base64. Errc::ParamSyntax.
Result<std::string> decode_response(std::string_view b64);

// PLAIN message: [authzid] NUL authcid NUL passwd, exactly two NULs, authcid
// and password non-empty, each field <= 255 bytes and valid UTF-8. `b64` is
// the initial response or the response to "334 ". Errc::ParamSyntax for bad
// base64, Errc::AuthFailed for a malformed message (both mean 5xx, no retry).
Result<PlainCredentials> decode_plain(std::string_view b64);

// One LOGIN answer (user name or password): base64, non-empty, <= 255 bytes,
// no NUL, valid UTF-8.
Result<std::string> decode_login(std::string_view b64);

}  // namespace moat::proto::sasl

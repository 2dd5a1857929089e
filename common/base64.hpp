// Base64 (RFC 4648 §4) with a strict decoder: SASL (RFC 4954) responses must
// be rejected when malformed rather than silently repaired.
#pragma once

#include <string>
#include <string_view>

#include "common/error.hpp"

namespace moat {

// Standard alphabet, '=' padded, no line breaks.
std::string base64_encode(std::string_view in);

// Strict: length a multiple of 4, only the standard alphabet, padding only at
// the end (at most two '='), and unused bits of the last group zero, so every
// byte string has exactly one accepted encoding. Whitespace is an error.
// Errc::ParamSyntax on any violation.
Result<std::string> base64_decode(std::string_view in);

}  // namespace moat

// xtext (RFC 3461 §4): the encoding of DSN ENVID and ORCPT values, and of the
// RFC 4954 AUTH= parameter of MAIL FROM.
#pragma once

#include <string>
#include <string_view>

#include "common/error.hpp"

namespace moat::proto::smtp {

// xchar is '!'..'~' except '+' and '='; "+XX" (two UPPER-case hex digits, as
// RFC 3461 requires) encodes any other byte.
bool xtext_valid(std::string_view s);

// Errc::ParamSyntax when `s` is not valid xtext.
Result<std::string> xtext_decode(std::string_view s);

// Encodes every byte outside xchar as "+XX"; the result always passes
// xtext_valid and decodes back to `s`.
std::string xtext_encode(std::string_view s);

}  // namespace moat::proto::smtp

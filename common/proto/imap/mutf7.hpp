// Modified UTF-7 for IMAP mailbox names (RFC 3501 §5.1.3, RFC 9051 §5.1
// and Appendix A: IMAP4rev1 clients send it, UTF8=ACCEPT clients send
// UTF-8), and the checks that keep a mailbox name from becoming a path.
#pragma once

#include <string>
#include <string_view>

#include "common/error.hpp"

namespace moat::proto::imap {

// Strict decoding: only the canonical encoding is accepted (no printable
// ASCII inside "&...-", no adjacent "&...-&...-", zero padding bits, paired
// surrogates, no U+0000), so encode(decode(x)) == x. Errc::ParamSyntax.
Result<std::string> mutf7_decode(std::string_view mutf7);
// UTF-8 in, modified UTF-7 out. Errc::ParamSyntax for invalid UTF-8.
Result<std::string> mutf7_encode(std::string_view utf8);

// Well-formed UTF-8 (no overlongs, surrogates or code points over U+10FFFF).
bool valid_utf8(std::string_view s);

inline constexpr char kHierarchyDelimiter = '/';
inline constexpr std::size_t kMaxMailboxName = 255;   // bytes of UTF-8
inline constexpr std::size_t kMaxMailboxLevels = 16;

// Checks a mailbox name (UTF-8, after mutf7_decode for IMAP4rev1 clients)
// and returns it with INBOX in canonical case (RFC 9051 §5.1: INBOX is case-
// insensitive, also as the first level "inbox/x"). Refused with
// Errc::ParamSyntax: empty names, over kMaxMailboxName bytes or
// kMaxMailboxLevels levels, invalid UTF-8, control characters, the list
// wildcards "*" and "%", empty levels (leading, trailing or doubled "/"),
// levels "." and "..", and a leading "~" — so a store may map levels to
// directory names without them escaping its root.
Result<std::string> check_mailbox_name(std::string_view utf8);

}  // namespace moat::proto::imap

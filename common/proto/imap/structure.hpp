// IMAP ENVELOPE, BODY and BODYSTRUCTURE strings (RFC 9051 §7.5.2, RFC 3501
// §7.4.2) from the MIME parser's part tree (common/proto/mime/mime.hpp),
// written the way Dovecot writes them (checked against its recorded output
// in shared/testdata/mime/dovecot-reference; docs/imap.md lists the
// differences). Header text is passed through undecoded, as RFC 9051 asks.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/proto/mime/mime.hpp"

namespace moat::proto::imap {

// IMAP string: quoted when it can be, a literal ({n}CRLF bytes) when it
// holds CR, LF, NUL or 8-bit bytes.
void append_string(std::string& out, std::string_view s);
void append_nstring(std::string& out, const std::string* s);

// ENVELOPE of the message (part 0) or of an embedded message/rfc822 part's
// child: (date subject from sender reply-to to cc bcc in-reply-to message-id).
std::string envelope(const mime::Message& msg, std::size_t part = 0);

// BODYSTRUCTURE (extended = true) or BODY (false) of the message, or of the
// part tree rooted at `part`. `raw` is the message the offsets refer to.
std::string body_structure(const mime::Message& msg, std::string_view raw, bool extended, std::size_t part = 0);

// One address of an RFC 5322 address list as ENVELOPE shows it. Groups are
// a start marker (mailbox = group name, host empty and is_group) and an end
// marker (all empty, is_group).
struct Address {
  std::string name, adl, mailbox, host;
  bool has_name = false, has_adl = false, has_mailbox = false, has_host = false;
  bool is_group = false;
};
std::vector<Address> parse_address_list(std::string_view value, std::size_t max_addresses = 1000);

}  // namespace moat::proto::imap

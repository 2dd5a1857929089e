// IMAP LIST without I/O: the RFC 5258 LIST-EXTENDED syntax (selection
// options SUBSCRIBED REMOTE RECURSIVEMATCH SPECIAL-USE, several patterns,
// RETURN options SUBSCRIBED CHILDREN SPECIAL-USE and RFC 5819 STATUS), the
// RFC 3348 / RFC 6154 attributes, and which mailboxes answer a pattern,
// parents without a mailbox of their own included (\NonExistent in RFC
// 5258 and IMAP4rev2, \Noselect for a plain IMAP4rev1 LIST).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/proto/imap/parser.hpp"
#include "store/mailbox_store.hpp"

namespace moat::store::imap {

struct ListRequest {
  bool extended = false;          // selection or RETURN options or a pattern list were given
  bool sel_subscribed = false, sel_remote = false, sel_recursive = false, sel_special_use = false;
  bool ret_subscribed = false, ret_children = false, ret_special_use = false, ret_status = false;
  std::vector<std::string> status_items;  // RETURN (STATUS (...)), upper-cased, checked by the caller
  std::string reference;                  // as sent (modified UTF-7 or UTF-8: the caller decodes)
  std::vector<std::string> patterns;      // as sent
};

// args of LIST (not LSUB). Errc::ParamSyntax for anything RFC 5258 says BAD to.
Result<ListRequest> parse_list(const std::vector<proto::imap::Arg>& args);

struct ListEntry {
  std::string name;               // UTF-8
  std::string attributes;         // "\\HasNoChildren \\Subscribed \\Sent"
  std::string extra;              // "" or " (\"CHILDINFO\" (\"SUBSCRIBED\"))"
  bool selectable = true;         // false for a parent that is not a mailbox (no STATUS for it)
};

// The LIST (or LSUB) answer for decoded patterns (reference already
// prepended), in name order with INBOX first.
std::vector<ListEntry> list_mailboxes(const ListRequest& req, const std::vector<std::string>& patterns,
                                      const std::vector<MailboxInfo>& boxes, bool lsub, bool rev2);

// LIST pattern match (RFC 9051 §6.3.9): "*" matches anything, "%" anything
// but the hierarchy delimiter "/"; "INBOX" case-insensitively.
bool list_match(std::string_view pattern, std::string_view name);

}  // namespace moat::store::imap

// CONDSTORE and QRESYNC (RFC 7162) argument syntax without I/O: SELECT /
// EXAMINE parameters "(CONDSTORE)" and "(QRESYNC (uidvalidity modseq
// [known-uids [(seq-match-seqs seq-match-uids)]]))", the FETCH modifiers
// "(CHANGEDSINCE n [VANISHED])", the STORE modifier "(UNCHANGEDSINCE n)",
// and the VANISHED response text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/proto/imap/parser.hpp"
#include "common/proto/imap/seqset.hpp"

namespace moat::store::imap {

struct QresyncParams {
  std::uint32_t uidvalidity = 0;
  std::uint64_t modseq = 0;
  std::optional<proto::imap::SeqSet> known_uids;  // absent: every UID
  // seq-match-data is checked but not used: the store keeps every
  // expunge with its modseq, so VANISHED (EARLIER) is exact without it.
};

struct SelectParams {
  bool condstore = false;
  std::optional<QresyncParams> qresync;
};

struct FetchModifiers {
  std::optional<std::uint64_t> changed_since;
  bool vanished = false;
};

// RFC 7162 mod-sequence-value: 1..2^63-1; valzer allows 0.
std::optional<std::uint64_t> parse_modseq(const proto::imap::Arg& a, bool allow_zero);

Result<SelectParams> parse_select_params(const proto::imap::Arg& list);
Result<FetchModifiers> parse_fetch_modifiers(const proto::imap::Arg& list);
Result<std::uint64_t> parse_store_modifiers(const proto::imap::Arg& list);  // the UNCHANGEDSINCE value

// "* VANISHED 3:5,9\r\n" or "* VANISHED (EARLIER) ...\r\n"; "" for none.
std::string vanished_response(const std::vector<std::uint32_t>& ascending_uids, bool earlier);

}  // namespace moat::store::imap

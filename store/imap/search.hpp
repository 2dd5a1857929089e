// IMAP SEARCH without I/O: the criteria (RFC 9051 §6.4.4, RFC 3501 §6.4.4)
// parsed into a tree and evaluated per message, the RFC 7162 MODSEQ key,
// RFC 4731 ESEARCH return options and RFC 5182 SAVE ("$"), and the text of
// both response forms ("* SEARCH ..." and "* ESEARCH ...").
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/proto/imap/parser.hpp"
#include "common/proto/imap/seqset.hpp"
#include "store/mailbox_store.hpp"

namespace moat::mime {
struct Message;
}

namespace moat::store::imap {

// What "*" and "$" mean when the criteria are parsed.
struct SearchScope {
  std::uint32_t messages = 0;                      // largest sequence number
  std::uint32_t max_uid = 0;                       // largest UID
  const std::vector<std::uint32_t>* saved = nullptr;  // "$": UIDs saved by SEARCH RETURN (SAVE)
};

struct SearchKey {
  enum class Kind : std::uint8_t {
    All, None, Flag, NoFlag, Keyword, NoKeyword, Larger, Smaller, Seq, Uid,
    Before, On, Since, SentBefore, SentOn, SentSince, Header, Body, Text, ModSeq, Not, Or, And,
  };
  Kind kind = Kind::All;
  Flags flag = 0;
  std::string field;                               // Header: the field name
  std::string text;                                // Keyword / Header / Body / Text
  std::uint64_t number = 0;                        // sizes, modseq, days since 1970-01-01
  std::vector<proto::imap::SeqRange> ranges;       // Seq / Uid ("$" too), resolved, ascending
  std::vector<SearchKey> kids;
};

// RFC 4731 RETURN options; `esearch` when RETURN was given (or IMAP4rev2
// is enabled), which selects the ESEARCH response.
struct SearchReturn {
  bool esearch = false;
  bool min = false, max = false, count = false, all = false, save = false;
};

class Search {
 public:
  static constexpr std::size_t kMaxDepth = 64;     // NOT/OR chains recurse; bounded like the parser's lists

  // args[first...]: [RETURN (opts)] [CHARSET x] key... (CHARSET: UTF-8 and
  // US-ASCII only, else Errc::Unsupported for NO [BADCHARSET]).
  static Result<Search> parse(const std::vector<proto::imap::Arg>& args, std::size_t first, const SearchScope& scope);

  bool needs_content() const { return needs_content_; }
  // Only BODY and TEXT read past the header; the others (header fields,
  // SENT* dates) can be given the header block alone.
  bool needs_body() const { return needs_body_; }
  bool uses_modseq() const { return uses_modseq_; }
  // Whether `m` is answered from its cached ENVELOPE (SENT* dates and
  // SUBJECT need no message bytes then; matches() gets no message).
  bool from_envelope(const MessageInfo& m) const;
  const SearchReturn& ret() const { return ret_; }
  // IMAP4rev2: ESEARCH even without RETURN, which then means RETURN (ALL)
  void force_esearch() {
    if (!ret_.esearch) ret_.all = true;
    ret_.esearch = true;
  }

  // `parsed`/`content` may be null/empty unless needs_content().
  bool matches(const MessageInfo& m, std::uint32_t seq, const mime::Message* parsed, std::string_view content) const;

 private:
  SearchKey root_;
  SearchReturn ret_;
  bool needs_content_ = false;
  bool needs_body_ = false;
  bool uses_modseq_ = false;
  bool envelope_ok_ = false;
  bool uses_subject_ = false;
};

// Date and Subject of a cached ENVELOPE string as they were in the header
// (unfolded, RFC 2047 words not decoded); nullopt for NIL. nullopt as a
// whole when the string does not start the way structure.cpp writes it.
struct EnvelopeFields {
  std::optional<std::string> date, subject;
  // A literal is how a folded field is written. The ENVELOPE unfolds in
  // its own way (a continuation TAB becomes a space, as Dovecot writes it),
  // not necessarily as the header decoder does, so SUBJECT reads the header
  // of such a message: the answer stays exactly the header's.
  bool subject_folded = false;
};
std::optional<EnvelopeFields> envelope_fields(std::string_view envelope);

// The header of a message with the blank line that ends it (all of it when
// there is no blank line): what a Search without needs_body() is given.
std::string_view header_block(std::string_view message);

// 1..12 for an English month abbreviation in any case ("Jan", "SEP"), else 0.
int month_index(std::string_view m);

// Days since 1970-01-01 for an IMAP date ("1-Feb-1994") or an RFC 5322
// Date field ("Tue, 1 Feb 1994 10:00:00 +0000"; time and zone ignored, as
// SENTBEFORE/SENTON/SENTSINCE want; four-digit years as written, obs-year
// rules for two and three digits; asctime and "2002/09/14" tolerated).
// nullopt for a Date that cannot be read: SENT* then use the INTERNALDATE.
std::optional<std::int64_t> parse_search_date(std::string_view s);
std::optional<std::int64_t> parse_header_date(std::string_view s);

// What text keys compare: ASCII lowered, other UTF-8 characters mapped to
// lower case (Unicode simple mapping); malformed bytes kept as they are.
std::string fold_case(std::string_view s);

// "* SEARCH 2 5[ (MODSEQ 9)]\r\n" (RFC 9051 §7.3.4 / RFC 7162 §3.1.5).
std::string search_response(const std::vector<std::uint32_t>& hits, std::optional<std::uint64_t> modseq);
// "* ESEARCH (TAG "a") UID MIN 2 MAX 5 COUNT 2 ALL 2,5 MODSEQ 9\r\n" (RFC 4731 §3.1);
// empty when only SAVE was asked for (RFC 5182 §2.4).
std::string esearch_response(std::string_view tag, bool uid, const SearchReturn& ret,
                             const std::vector<std::uint32_t>& hits, std::optional<std::uint64_t> modseq);
// What SAVE keeps (UIDs): MIN and/or MAX alone save only those, else all hits.
std::vector<std::uint32_t> saved_result(const SearchReturn& ret, const std::vector<std::uint32_t>& hit_uids);

}  // namespace moat::store::imap

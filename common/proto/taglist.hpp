// The tag=value list of DKIM signatures and key records (RFC 6376 §3.2),
// shared by DKIM, ARC (RFC 8617 §4.1) and DMARC records (RFC 7489 §6.3).
// Sans-I/O and bounded: at most kMaxTags tags; a duplicate tag, an empty
// or invalid tag name, or a missing '=' makes the whole list invalid.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moat::proto {

struct TagList {
  static constexpr std::size_t kMaxTags = 64;
  std::vector<std::pair<std::string, std::string>> tags;  // values with FWS trimmed at both ends

  // The value of `name` (tag names are case-sensitive), nullopt when absent.
  std::optional<std::string_view> get(std::string_view name) const;
};

// tag-list = tag-spec *( ";" tag-spec ) [ ";" ]; tag-spec = [FWS] tag-name
// [FWS] "=" [FWS] tag-value [FWS]. tag-name = ALPHA *ALNUMPUNC ("_" allowed).
std::optional<TagList> parse_tag_list(std::string_view text);

// Removes all FWS (spaces, tabs, CRLF) from a value, as b=, bh= and p= need.
std::string strip_fws(std::string_view value);

}  // namespace moat::proto

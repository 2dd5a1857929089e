// Builds what rules look at (rules::Input) from the message parsed once for
// every content filter (common/proto/mime: RFC 5322 fields, RFC 2045-2047
// decoding, charsets, HTML as text): header fields unfolded and RFC 2047
// decoded, the text parts' scan text, their transfer-decoded bytes and URLs.
// No decoding of its own: what the rules see is what Bayes and the other
// scanners see.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "common/proto/mime/mime.hpp"
#include "rules/ruleset.hpp"

namespace moat::filters::rules {

struct InputLimits {
  std::size_t text_bytes = 2 * 1024 * 1024;  // body and rawbody each; the rest is not scanned
  std::size_t uris = 1000;
};

// The text of leaf part i for scanning (ScanContext::part_text, which makes
// it once however many filters ask).
using PartText = std::function<const std::string&(std::size_t)>;

// tree: the parse of `message`. Only the classes `needs` names are filled
// (RuleSet::needs), so a set without rawbody rules costs no second decode.
moat::rules::Input make_input(const mime::Message& tree, std::string_view message, const PartText& text,
                              const InputLimits& limits = {}, moat::rules::ClassMask needs = moat::rules::kAllClasses);

// Parses the message itself (moatctl, tests, bench): same result.
moat::rules::Input make_input(std::string_view message, const InputLimits& limits = {});

}  // namespace moat::filters::rules

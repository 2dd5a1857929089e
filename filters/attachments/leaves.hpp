// The parts the content scanners look at (antivirus, attachment policy): the
// leaves of the one shared MIME parse (ScanContext::mime, common/proto/mime,
// RFC 2045-2047, RFC 2231 names), transfer-decoded with mime::decode_part,
// plus the parts a lenient second reading finds that the strict parse does not.
//
// Why a second reading: a scanner that trusts the declared boundary can be
// walked around (ClamAV PR #1720: two boundary parameters, two Content-Type
// fields, "Content-Type(comment):" that mail clients forgive). The strict
// parse keeps its one interpretation; then every region it did not read as
// parts (preambles, epilogues, bodies without transfer encoding) is split at
// every "--TOKEN" line, whatever boundary was declared, and each segment that
// opens with a header field is parsed again with the same parser. Composites
// that are themselves base64/QP encoded (message/rfc822, multipart) are
// decoded and parsed too. Finding a part that is not there costs a scan;
// missing one that is there costs a virus. No decoder of our own here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/proto/mime/mime.hpp"

namespace moat::filters::attachments {

struct Leaf {
  std::string filename;      // decoded (mime::Part::filename); "" when none
  std::string content_type;  // lower case "type/subtype"
  std::string body;          // transfer encoding undone
  unsigned depth = 0;        // 0: the message itself
  bool decoded = false;      // body differs from the bytes in the message (a transfer encoding was undone)
  bool hidden = false;       // found by the lenient second reading only
};

struct LeafLimits {
  std::size_t max_parts = 1000;      // leaves in all
  std::size_t max_bytes = 64u << 20; // decoded bytes in all
  unsigned max_reparse = 4;          // nested second readings (a segment inside a segment, an encoded message inside one)
};

// The limits both content filters use, for a message size cap: decoded
// parts up to twice the cap and a megabyte, so that they fit beside the
// message in one moat-scand frame (antivirus::frame_limits: four times).
LeafLimits leaf_limits(std::uint64_t message_size);

struct Leaves {
  std::vector<Leaf> parts;
  std::string limit;  // non-empty: which limit was hit (the rest was not extracted, or the parse was cut short)
};

// `tree` is mime::parse(message) (ScanContext::mime()).
Leaves collect_leaves(std::string_view message, const mime::Message& tree, const LeafLimits& limits = {});

// A line the lenient reading splits at: "--" and one token without blanks
// (which also matches close delimiters "--X--"). Exposed for tests.
bool is_any_delimiter(std::string_view line);

}  // namespace moat::filters::attachments

// Outbound DATA encoding (RFC 5321 §4.5.2): dot-stuffing, and line-ending
// normalisation so that a bare CR or LF in stored content can never reach the
// next hop as an end-of-data ambiguity (SMTP smuggling, CVE-2023-51764).
// Streaming: feed chunks in any split, then finish().
#pragma once

#include <string>
#include <string_view>

namespace moat::proto::smtp {

class DotStuffer {
 public:
  // Appends the wire form of `in` to `out`. Bare CR and bare LF become CRLF.
  void feed(std::string_view in, std::string& out);
  // Ends the last line if needed and appends the ".\r\n" terminator.
  void finish(std::string& out);

 private:
  bool at_line_start_ = true;
  bool pending_cr_ = false;  // saw CR, waiting to see whether LF follows
};

// One-shot convenience: the whole message plus terminator.
std::string dot_stuff(std::string_view message);

}  // namespace moat::proto::smtp

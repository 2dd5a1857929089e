// Internals shared by the MIME parser's translation units (not a public API):
// the incremental transfer decoders, Content-Type/-Disposition parameter
// parsing (RFC 2045 §5.1, RFC 2183, RFC 2231) and small byte helpers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/proto/mime/mime.hpp"

namespace moat::mime::detail {

constexpr bool is_wsp(char c) { return c == ' ' || c == '\t'; }
std::string_view trim(std::string_view s);   // SP, HT, CR, LF at both ends
std::string unfold(std::string_view raw);    // drop CR/LF that precede WSP (and stray ones)
int hex_value(char c);                       // -1 if not a hex digit

// Appends to out, never beyond cap; returns false (and sets capped) when cut.
bool append_capped(std::string& out, std::string_view s, std::size_t cap, bool& capped);

// UTF-8 validation with U+FFFD for every invalid sequence; true if valid.
bool utf8_sanitize(std::string_view in, std::string& out, std::size_t cap, bool& capped);
bool is_valid_utf8(std::string_view in);
void windows1252_to_utf8(std::string_view in, std::string& out, std::size_t cap, bool& capped);

// Incremental transfer decoder: feed raw body bytes in any split, get the
// decoded bytes appended to out (bounded by cap in total).
class StreamDecoder {
 public:
  StreamDecoder(Encoding enc, std::size_t cap) : enc_(enc), cap_(cap) {}
  void feed(std::string_view in, std::string& out);
  void finish(std::string& out);
  bool error() const { return error_; }
  bool capped() const { return capped_; }
  std::size_t produced() const { return produced_; }

 private:
  void emit(std::string& out, std::string_view s);
  void emit_byte(std::string& out, char c) { emit(out, std::string_view(&c, 1)); }
  void feed_base64(std::string_view in, std::string& out);
  void feed_qp(std::string_view in, std::string& out);
  void feed_uu(std::string_view in, std::string& out);
  void qp_line(std::string_view line, bool has_eol, std::string_view eol, std::string& out);
  void uu_line(std::string_view line, std::string& out);

  Encoding enc_;
  std::size_t cap_;
  std::size_t produced_ = 0;
  bool error_ = false;
  bool capped_ = false;
  // base64
  std::uint32_t quad_ = 0;
  int nquad_ = 0;
  bool padded_ = false;
  // QP / uuencode: the current line (QP needs it whole to drop trailing blanks;
  // bounded: past kMaxPending bytes the line is decoded in pieces).
  std::string line_;
  bool uu_begun_ = false, uu_ended_ = false;
};

// Structured field parameters.
struct ParsedParams {
  std::vector<Param> params;
  bool syntax_error = false;
  bool rfc2231_error = false;
  bool charset_error = false;
};
// Parses "; a=b; c*0*=utf-8''%41" starting at rest. Limits apply to count
// and sections.
ParsedParams parse_params(std::string_view rest, const Limits& lim);

// Skips RFC 5322 comments "( ... )" (nested, bounded) and whitespace.
std::string_view skip_cfws(std::string_view s);

// Content-Type: type/subtype + params. ok=false when type/subtype are unusable.
struct ContentType {
  std::string type, subtype;
  ParsedParams params;
  bool ok = false;
};
ContentType parse_content_type(std::string_view value, const Limits& lim);

// Content-Disposition: type + params.
struct Disposition {
  std::string type;
  ParsedParams params;
};
Disposition parse_disposition(std::string_view value, const Limits& lim);

Encoding encoding_from(std::string_view cte_lower);

// A parameter value (possibly raw 8-bit or RFC 2047 words) to UTF-8.
std::string param_text(std::string_view v, bool& bad2047);

}  // namespace moat::mime::detail

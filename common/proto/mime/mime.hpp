// Streaming, bounded MIME parser (RFC 2045, 2046, 5322 header syntax, 2047
// encoded words, 2231 parameter continuations/charsets) plus the decoding
// helpers the scanners share (base64/QP bodies, charset → UTF-8 via iconv,
// HTML → text, URL extraction). Sans-I/O: bytes in, a flat part list with
// exact byte offsets into the original message out; malformations are
// reported as symbol names, never as exceptions. Every loop and every output
// is capped by Limits (SECURITY.md: "every limit is enforced in code").
//
// Consumers: rules engine, Bayes tokenizer, antivirus attachment extraction,
// IMAP BODYSTRUCTURE/ENVELOPE. This header is a published API: add, don't
// rename. See docs/mime.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moat::mime {

// ---------------------------------------------------------------- limits ---

struct Limits {
  std::size_t max_depth = 100;                  // nesting of multipart/message parts (root = depth 0); SECURITY.md, Postfix mime_nesting_limit
  std::size_t max_parts = 1000;                 // parts in Message::parts, root included
  std::size_t max_header_bytes = 100 * 1024;    // header section of ONE part (fields beyond are dropped, MIME_HEADER_TOO_LARGE)
  std::size_t max_header_fields = 1000;         // fields stored per part
  std::size_t max_line_length = 998;            // RFC 5322 §2.1.1, without CRLF; longer lines flag MIME_LONG_LINE (never fatal).
                                                //   Boundary lines are recognised only within this many bytes.
  std::size_t max_boundary_length = 200;        // RFC 2046 says ≤ 70 (longer flags MIME_BAD_BOUNDARY); beyond this the boundary is ignored
  std::size_t max_params = 64;                  // parameters per Content-Type / Content-Disposition
  std::size_t max_param_sections = 64;          // RFC 2231 continuations per parameter
  std::size_t max_decoded_bytes = 32 << 20;     // cap on any decode / charset conversion output
  std::size_t max_anomalies = 256;              // Message::anomalies entries kept
};

// --------------------------------------------------------------- symbols ---
// Malformation symbols (UPPER_SNAKE). Filters may report them as-is.
namespace sym {
inline constexpr std::string_view kTooDeep = "MIME_TOO_DEEP";                    // nesting beyond max_depth: the part is kept as an opaque leaf
inline constexpr std::string_view kTooManyParts = "MIME_TOO_MANY_PARTS";         // beyond max_parts: the rest stays in the last open part
inline constexpr std::string_view kHeaderTooLarge = "MIME_HEADER_TOO_LARGE";     // a part's header exceeds max_header_bytes / max_header_fields
inline constexpr std::string_view kLongLine = "MIME_LONG_LINE";                  // a line longer than max_line_length
inline constexpr std::string_view kHeader8bit = "MIME_HEADER_8BIT";              // raw 8-bit bytes in a header field (not RFC 2047 encoded)
inline constexpr std::string_view kNul = "MIME_NUL";                             // NUL byte in the message
inline constexpr std::string_view kBareCr = "MIME_BARE_CR";                      // CR not followed by LF
inline constexpr std::string_view kMixedEol = "MIME_MIXED_EOL";                  // both CRLF and bare LF line ends
inline constexpr std::string_view kBadHeaderLine = "MIME_BAD_HEADER_LINE";       // a header line that is neither a field nor a continuation
inline constexpr std::string_view kHeaderNoBody = "MIME_HEADER_NO_BODY";         // the header was not ended by an empty line
inline constexpr std::string_view kMissingBoundary = "MIME_MISSING_BOUNDARY";    // multipart/* without a boundary parameter (treated as a leaf)
inline constexpr std::string_view kBadBoundary = "MIME_BAD_BOUNDARY";            // boundary longer than 70, empty, or with characters outside RFC 2046 bchars
inline constexpr std::string_view kBoundaryConflict = "MIME_BOUNDARY_CONFLICT";  // a nested boundary equal to or prefixed by an enclosing one
inline constexpr std::string_view kNoParts = "MIME_MULTIPART_EMPTY";             // a multipart with no body part
inline constexpr std::string_view kMissingClose = "MIME_MISSING_CLOSE_BOUNDARY"; // a multipart ended without its close delimiter
inline constexpr std::string_view kDuplicateField = "MIME_DUPLICATE_FIELD";      // Content-Type/-Transfer-Encoding/-Disposition given twice in one part
inline constexpr std::string_view kBadContentType = "MIME_BAD_CONTENT_TYPE";     // unparsable Content-Type (defaults applied, RFC 2045 §5.2)
inline constexpr std::string_view kBadParams = "MIME_BAD_PARAMS";                // parameter syntax errors in Content-Type / -Disposition
inline constexpr std::string_view kUnknownCte = "MIME_UNKNOWN_CTE";              // Content-Transfer-Encoding not one of RFC 2045's
inline constexpr std::string_view kEncodedComposite = "MIME_ENCODED_COMPOSITE";  // multipart or message/* with base64/quoted-printable (RFC 2045 §6.4)
inline constexpr std::string_view kBadBase64 = "MIME_BAD_BASE64";                // characters outside the alphabet, bad padding, data after padding
inline constexpr std::string_view kBadQp = "MIME_BAD_QP";                        // '=' not followed by two hex digits or a line end
inline constexpr std::string_view kBadRfc2047 = "MIME_BAD_RFC2047";              // malformed encoded word
inline constexpr std::string_view kBadRfc2231 = "MIME_BAD_RFC2231";              // malformed extended parameter / missing continuation section
inline constexpr std::string_view kUnknownCharset = "MIME_UNKNOWN_CHARSET";      // charset iconv does not know (bytes passed as Latin-1 → UTF-8)
inline constexpr std::string_view kBadCharset = "MIME_BAD_CHARSET";              // invalid byte sequence for the declared charset (replaced by U+FFFD)
inline constexpr std::string_view kBody8bitIn7bit = "MIME_8BIT_IN_7BIT";         // 8-bit bytes in a body declared 7bit (or without CTE)
inline constexpr std::string_view kTruncated = "MIME_TRUNCATED";                 // the message ended inside a header or an encoded-word/base64 quantum
inline constexpr std::string_view kDecodeCapped = "MIME_DECODE_CAPPED";          // a decode/conversion output hit max_decoded_bytes
inline constexpr std::string_view kFilenameMismatch = "MIME_FILENAME_MISMATCH";  // Content-Disposition filename differs from Content-Type name
}  // namespace sym

struct Anomaly {
  std::string_view symbol;  // one of sym::k* (static storage)
  std::size_t part = 0;     // index into Message::parts
  std::size_t offset = 0;   // byte offset in the message where it was noticed
};

// --------------------------------------------------------------- message ---

enum class Encoding { SevenBit, EightBit, Binary, Base64, QuotedPrintable, UuEncode, Unknown };
std::string_view encoding_name(Encoding e);  // "7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "unknown"

struct HeaderField {
  std::string name;         // as written (case kept), without the colon and trailing blanks
  std::string raw_value;    // bytes after the colon up to (not incl.) the final line end, folding kept
  std::size_t begin = 0;    // offset of the field name
  std::size_t end = 0;      // offset just past the field's final line end
  std::string value() const;  // raw_value unfolded (CRLF/LF before WSP removed), leading/trailing blanks trimmed
};

struct Param {
  std::string name;   // lower-cased, without RFC 2231 "*" / "*N" suffixes
  std::string value;  // RFC 2231 sections joined and decoded to UTF-8; quoted-strings unquoted.
                      // RFC 2047 words in values are NOT decoded here (see Part::filename)
  bool extended = false;  // came from RFC 2231 syntax
};

struct Part {
  std::size_t index = 0;                 // position in Message::parts (document order, root = 0)
  std::ptrdiff_t parent = -1;            // index of the enclosing part, -1 for the root
  std::size_t depth = 0;                 // root = 0; a child of a multipart or message/rfc822 = parent depth + 1
  std::vector<std::size_t> children;     // indices in document order (a message/rfc822 wrapper has at most one)

  // Byte offsets into the original message, half-open.
  //   [header_begin, header_end): the header fields, each with its line end
  //   [header_end, body_begin):   the empty line ending the header (empty if missing)
  //   [body_begin, body_end):     the body. For a part inside a multipart the CRLF
  //                               before the next delimiter line belongs to the
  //                               delimiter (RFC 2046 §5.1.1), not to the body.
  // A multipart's body covers preamble, children, close delimiter and epilogue.
  std::size_t header_begin = 0, header_end = 0, body_begin = 0, body_end = 0;
  // Multipart only: [preamble_begin, preamble_end) before the first delimiter,
  // [epilogue_begin, body_end) after the close delimiter line (epilogue_begin
  // == body_end when there is no close delimiter).
  std::size_t preamble_begin = 0, preamble_end = 0, epilogue_begin = 0;

  std::vector<HeaderField> fields;       // in order, as in the message

  std::string type = "text";             // lower-cased; RFC 2045 §5.2 default text/plain
  std::string subtype = "plain";         //   (message/rfc822 inside multipart/digest, RFC 2046 §5.1.5)
  std::vector<Param> type_params;        // Content-Type parameters
  bool content_type_given = false;       // a usable Content-Type field was present
  std::string boundary;                  // multipart boundary ("" if none)
  std::string charset;                   // lower-cased charset parameter ("" if none; text/* defaults to us-ascii)
  std::string cte;                       // Content-Transfer-Encoding lower-cased as given ("" if absent)
  Encoding encoding = Encoding::SevenBit;
  std::string disposition;               // lower-cased disposition type ("" if no Content-Disposition)
  std::vector<Param> disposition_params;
  std::string filename;                  // UTF-8: Content-Disposition filename= else Content-Type name=;
                                         //   RFC 2231 or RFC 2047 decoded, path components kept as sent
  std::string content_id;                // Content-ID value unfolded (angle brackets kept)
  std::string description;               // Content-Description, RFC 2047 decoded
  std::string language;                  // Content-Language value
  std::string location;                  // Content-Location value
  std::string md5;                       // Content-MD5 value

  std::size_t size() const { return body_end - body_begin; }  // body octets (IMAP body size)
  std::uint64_t lines = 0;               // body lines for IMAP: the LFs in [body_begin, body_end) (as Dovecot counts)

  bool is_multipart() const { return type == "multipart" && !boundary.empty() && !opaque; }
  bool is_message() const { return message_wrapper; }
  bool message_wrapper = false;          // message/rfc822 or message/global whose content was parsed as a child part
  bool opaque = false;                   // composite type left unparsed (too deep, no boundary, encoded, too many parts)
  bool attachment() const;               // disposition "attachment", or a filename on a non-text leaf
  const HeaderField* field(std::string_view name) const;  // first field with that name (case-insensitive) or nullptr
  std::string mime_type() const { return type + "/" + subtype; }
};

struct Message {
  std::vector<Part> parts;               // document order; parts[0] is the message itself
  std::vector<Anomaly> anomalies;        // in the order noticed, at most Limits::max_anomalies
  std::size_t size = 0;                  // bytes seen
  bool limits_hit = false;               // depth / parts / header limits cut the parse short somewhere

  const Part& root() const { return parts.front(); }
  bool has(std::string_view symbol) const;
  std::vector<std::string_view> symbols() const;  // distinct anomaly symbols, first-seen order

  // Leaf parts by role. text_parts: text/plain and text/html (and text/* with
  // no filename) that are not attachments; attachments: every other leaf with
  // a filename or disposition attachment, plus non-text leaves.
  std::vector<std::size_t> leaves() const;
  std::vector<std::size_t> text_parts() const;
  std::vector<std::size_t> attachments() const;

  // Top-level header fields (part 0). raw: first field's raw_value;
  // decoded: unfolded and RFC 2047 decoded to UTF-8. all: every occurrence.
  std::optional<std::string_view> raw_header(std::string_view name, std::size_t part = 0) const;
  std::optional<std::string> header(std::string_view name, std::size_t part = 0) const;
  std::vector<std::string> headers(std::string_view name, std::size_t part = 0) const;
  std::string subject() const;
  std::string from() const;
  std::string to() const;
  std::string cc() const;
  std::string reply_to() const;
  std::string date() const;
  std::string message_id() const;
};

// ---------------------------------------------------------------- parser ---

// Optional one-pass consumer: the parser calls it while bytes stream in, so
// scanners need not keep the message. Part references are valid for the call
// only (the part vector may grow). Decoded data is the transfer-decoded body
// of leaf parts (not charset converted), capped at max_decoded_bytes per part.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void on_part_begin(const Part&) {}                       // header parsed: type, filename, ... known
  virtual void on_body(const Part&, std::string_view /*raw*/) {}   // raw body bytes of a leaf, in order, exactly [body_begin, body_end)
  virtual void on_decoded(const Part&, std::string_view /*data*/) {}  // transfer-decoded leaf body bytes
  virtual void on_part_end(const Part&) {}                         // body_end final
};

class Parser {
 public:
  explicit Parser(const Limits& limits = {}, Sink* sink = nullptr);
  ~Parser();
  Parser(Parser&&) noexcept;
  Parser& operator=(Parser&&) noexcept;

  void feed(std::string_view bytes);   // any split; keeps O(max line + header) bytes buffered
  Message finish();                    // end of input; closes every open part. Call once.
  const Message& current() const;      // the structure so far (offsets of open parts not final)
  std::size_t buffered_bytes() const;  // bytes the parser holds besides Message (line, decoder state): bounded by the limits

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One call over a whole message: same result as Parser fed in any pieces.
Message parse(std::string_view whole_message, const Limits& limits = {});

// --------------------------------------------------------------- helpers ---

struct Decoded {
  std::string data;
  bool error = false;      // malformed input was repaired or skipped
  bool capped = false;     // output hit the cap and was cut
  bool unknown_charset = false;  // to_utf8 only
};

// Transfer decoding (RFC 2045 §6.7 QP, §6.8 base64; x-uuencode). Lenient:
// base64 skips non-alphabet bytes, QP keeps bad '=' sequences literally;
// both set error. 7bit/8bit/binary/unknown return the bytes unchanged.
Decoded decode_body(std::string_view raw, Encoding enc, std::size_t max_out = Limits{}.max_decoded_bytes);
// The part's body taken from the whole message and decoded.
Decoded decode_part(std::string_view whole_message, const Part& part, std::size_t max_out = Limits{}.max_decoded_bytes);

// Charset → UTF-8 with iconv (aliases like ks_c_5601-1987, x-sjis, gb2312
// mapped to their supersets; us-ascii/iso-8859-1 read as windows-1252 per
// WHATWG). Invalid sequences become U+FFFD and set error; an unknown charset
// is read as windows-1252 and sets unknown_charset. "" and "utf-8" validate only.
Decoded to_utf8(std::string_view bytes, std::string_view charset, std::size_t max_out = Limits{}.max_decoded_bytes);

// RFC 2047 header decoding of an (unfolded or raw) field value: encoded
// words decoded to UTF-8, whitespace between adjacent encoded words dropped,
// raw 8-bit text read as UTF-8 if valid else windows-1252. Also decodes
// words inside quoted strings (common in filename="=?...?="). error on
// malformed words (left as-is).
Decoded decode_header(std::string_view value, std::size_t max_out = 64 * 1024);

// Text of a leaf part for scanning: transfer decoded, converted to UTF-8,
// and for text/html turned into text. Capped at max_out.
Decoded part_text(std::string_view whole_message, const Part& part, std::size_t max_out = Limits{}.max_decoded_bytes);

// HTML → plain text for scanning: tags removed, script/style/comments
// dropped, block elements become line breaks, entities decoded, whitespace
// collapsed. Iterative (no recursion), linear time, output ≤ max_out.
std::string html_to_text(std::string_view html, std::size_t max_out = Limits{}.max_decoded_bytes);

// URLs found in text (http, https, ftp schemes, "www." hosts, mailto:) or in
// HTML href/src/action attributes and text. Normalised: scheme and host
// lower-cased, "www." gets "http://", default port and trailing punctuation
// dropped, HTML entities decoded. Distinct, in first-seen order, at most max_urls.
std::vector<std::string> extract_urls(std::string_view text, bool is_html, std::size_t max_urls = 1000);

}  // namespace moat::mime

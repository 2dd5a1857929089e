// The streaming MIME structure parser (RFC 2045 §5-6, RFC 2046 §5.1
// multipart, §5.2.1 message/rfc822, RFC 5322 §2.2 header fields; RFC 6532
// message/global). Bytes arrive in any split; the parser keeps only the
// current line (at most a window for body lines, at most the header limit for
// header lines), so a 50 MB base64 line costs no memory.
//
// Every open part sits on a stack; the innermost decides what a line means:
//
//   Header ──empty line──▶ Body (leaf) | Preamble (multipart) | Header (child of message/rfc822)
//   Preamble/Body ──"--b"──▶ close parts above the multipart; new child in Header
//   any ──"--b--"──▶ close parts above; multipart goes to Epilogue (b no longer matches)
//   end of input ──▶ close everything
//
// A delimiter line is recognised for any enclosing multipart still open
// (innermost first), as GMime and Dovecot do, so a missing close delimiter
// of an inner multipart cannot hide the outer one's parts.
#include <algorithm>
#include <cstring>
#include <optional>

#include "common/proto/mime/detail.hpp"
#include "common/text.hpp"

namespace moat::mime {

using detail::StreamDecoder;

struct Parser::Impl {
  enum class Mode { Header, Body, Preamble, Children, Epilogue, Skip };

  struct Frame {
    Frame(std::size_t p, Mode m) : part(p), mode(m) {}
    std::size_t part;
    Mode mode;
    std::uint64_t lf0 = 0;                      // LFs before body_begin
    std::optional<StreamDecoder> decoder;       // leaf parts with an encoding to check/decode
    bool header_dropping = false;               // header limit reached: later fields are not stored
    bool long_line_flagged = false, eight_bit_flagged = false;
    std::size_t header_bytes = 0;
  };

  Limits lim;
  Sink* sink;
  Message msg;
  std::vector<Frame> stack;

  std::string line;                  // buffered bytes of the current line (LF excluded)
  std::size_t line_begin = 0;        // offset of the current line
  std::size_t line_len = 0;          // bytes of the current line so far, LF excluded
  bool streaming = false;            // body line longer than the window: already passed on, cannot be a delimiter
  bool stream_cr = false;            // streaming: a trailing CR not yet passed on (may be half of CRLF)
  std::size_t pos = 0;               // bytes consumed
  std::uint64_t total_lf = 0;        // LFs in [0, line_begin)
  std::size_t prev_eol = 0;          // length of the previous line's terminator (0 at start)
  bool prev_delimiter = false;       // the previous line was a delimiter line
  bool this_delimiter = false;       // the current line is one
  bool last_byte_cr = false;
  bool saw_crlf = false, saw_lf = false, mixed_flagged = false;
  std::string held_eol;              // leaf body: the last line end, passed on only once the next line is not a delimiter
  std::string scratch;               // decoder output when no sink wants it
  bool finished = false;

  Impl(const Limits& l, Sink* s) : lim(l), sink(s) {
    Part root;
    root.index = 0;
    msg.parts.push_back(std::move(root));
    stack.push_back(Frame{0, Mode::Header});
  }

  std::size_t window() const { return std::max(lim.max_line_length, lim.max_boundary_length + 8); }

  void flag(std::string_view symbol, std::size_t part, std::size_t offset) {
    for (const auto& a : msg.anomalies)
      if (a.part == part && a.symbol == symbol) return;
    if (msg.anomalies.size() >= lim.max_anomalies) return;
    msg.anomalies.push_back(Anomaly{symbol, part, offset});
  }

  Frame& top() { return stack.back(); }
  Part& part_of(const Frame& f) { return msg.parts[f.part]; }

  // ----------------------------------------------------------- bytes ---

  void feed(std::string_view in) {
    while (!in.empty()) {
      const void* p = std::memchr(in.data(), '\n', in.size());
      std::size_t take = p ? static_cast<std::size_t>(static_cast<const char*>(p) - in.data()) + 1 : in.size();
      consume(in.substr(0, take), p != nullptr);
      in.remove_prefix(take);
    }
  }

  // Byte-level checks for one segment (part of one line).
  void check_bytes(std::string_view seg) {
    Frame& f = top();
    bool header = f.mode == Mode::Header;
    Part& part = part_of(f);
    bool seven = f.mode == Mode::Body && (part.encoding == Encoding::SevenBit || part.encoding == Encoding::Base64 ||
                                          part.encoding == Encoding::QuotedPrintable);
    for (std::size_t i = 0; i < seg.size(); ++i) {
      char c = seg[i];
      if (last_byte_cr && c != '\n') flag(sym::kBareCr, f.part, pos + i);
      last_byte_cr = c == '\r';
      if (c == '\0') flag(sym::kNul, f.part, pos + i);
      if (static_cast<unsigned char>(c) >= 0x80) {
        if (header) flag(sym::kHeader8bit, f.part, pos + i);
        else if (seven && !f.eight_bit_flagged) {
          f.eight_bit_flagged = true;
          flag(sym::kBody8bitIn7bit, f.part, pos + i);
        }
      }
    }
  }

  void consume(std::string_view seg, bool complete) {
    check_bytes(seg);
    std::string_view content = complete ? seg.substr(0, seg.size() - 1) : seg;
    Mode mode = top().mode;
    if (!streaming) {
      std::size_t cap = mode == Mode::Header ? lim.max_header_bytes + 2 : window();
      std::size_t room = cap > line.size() ? cap - line.size() : 0;
      if (content.size() <= room || mode == Mode::Header) {
        line.append(content.substr(0, std::min(room, content.size())));
      } else {
        // Too long to be a delimiter: from here on the line is body text.
        streaming = true;
        if (!line.empty() && line.back() == '\r') {
          line.pop_back();  // may be half of a CRLF split between two feeds
          stream_cr = true;
        }
        if (mode == Mode::Body) {
          body_bytes(held_eol);
          held_eol.clear();
          body_bytes(line);
        }
        line.clear();
        stream_body(content, complete);
      }
    } else {
      stream_body(content, complete);
    }
    line_len += content.size();
    pos += seg.size();
    if (complete) end_line();
  }

  // A streaming line's bytes (leaf bodies only), holding back a trailing CR.
  void stream_body(std::string_view content, bool complete) {
    bool body = top().mode == Mode::Body;
    if (stream_cr) {
      if (complete && content.empty()) return;  // CR LF: end_line sees stream_cr
      if (body) body_bytes("\r");
      stream_cr = false;
    }
    if (!content.empty() && content.back() == '\r') {
      stream_cr = true;
      content.remove_suffix(1);
    }
    if (body) body_bytes(content);
  }

  void body_bytes(std::string_view b) {
    if (b.empty()) return;
    Frame& f = top();
    const Part& part = part_of(f);
    if (sink) sink->on_body(part, b);
    // In slices, so the decoded scratch buffer stays small however large
    // the caller's chunk is.
    constexpr std::size_t kSlice = 64 * 1024;
    for (std::size_t i = 0; f.decoder && i < b.size() && !f.decoder->capped(); i += kSlice) {
      scratch.clear();
      f.decoder->feed(b.substr(i, kSlice), scratch);
      if (sink && !scratch.empty()) sink->on_decoded(part, scratch);
    }
  }

  // ----------------------------------------------------------- lines ---

  void end_line() {
    bool crlf = streaming ? stream_cr : (!line.empty() && line.back() == '\r');
    std::size_t eol = crlf ? 2 : 1;
    std::size_t text_len = line_len - (crlf ? 1 : 0);
    if (!streaming && crlf) line.pop_back();
    stream_cr = false;
    note_eol(crlf);
    this_delimiter = false;
    dispatch(text_len, eol, crlf);
    total_lf += 1;
    prev_eol = eol;
    prev_delimiter = this_delimiter;
    line.clear();
    line_len = 0;
    streaming = false;
    line_begin = pos;
  }

  void note_eol(bool crlf) {
    (crlf ? saw_crlf : saw_lf) = true;
    if (saw_crlf && saw_lf && !mixed_flagged) {
      mixed_flagged = true;
      flag(sym::kMixedEol, top().part, line_begin);
    }
  }

  // What the current complete line means. eol = 0 for a last line without LF.
  void dispatch(std::size_t text_len, std::size_t eol, bool crlf) {
    Frame& f = top();
    if (text_len > lim.max_line_length && !f.long_line_flagged) {
      f.long_line_flagged = true;
      flag(sym::kLongLine, f.part, line_begin);
    }
    if (!streaming) {
      bool close = false;
      int k = match_boundary(line, close);
      if (k >= 0) {
        delimiter(static_cast<std::size_t>(k), close);
        return;
      }
    }
    switch (top().mode) {
      case Mode::Header: header_line(eol, crlf); break;
      case Mode::Body:
        if (!streaming) {
          body_bytes(held_eol);
          body_bytes(line);
        }
        held_eol = eol == 2 ? "\r\n" : eol == 1 ? "\n" : "";
        break;
      default: break;  // preamble, epilogue, skipped: offsets only
    }
  }

  int match_boundary(std::string_view l, bool& close) const {
    if (l.size() < 3 || l[0] != '-' || l[1] != '-') return -1;
    for (std::size_t k = stack.size(); k-- > 0;) {
      const Frame& f = stack[k];
      if (f.mode != Mode::Preamble && f.mode != Mode::Children) continue;
      const Part& p = msg.parts[f.part];
      const std::string& b = p.boundary;
      if (l.size() < 2 + b.size() || l.compare(2, b.size(), b) != 0) continue;
      std::string_view rest = l.substr(2 + b.size());
      bool cl = rest.substr(0, 2) == "--";
      if (cl) rest.remove_prefix(2);
      // RFC 2046 §5.1.1: only linear white space may follow (transport padding).
      if (std::all_of(rest.begin(), rest.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; })) {
        close = cl;
        return static_cast<int>(k);
      }
    }
    return -1;
  }

  // --------------------------------------------------------- headers ---

  void header_line(std::size_t eol, bool crlf) {
    Frame& f = top();
    Part& part = msg.parts[f.part];
    std::size_t line_end = pos;
    if (line_len == 0 || (crlf && line_len == 1)) {  // the empty line: header ends, body follows
      part.header_end = line_begin;
      part.body_begin = line_end;
      end_header(f.part);
      return;
    }
    (void)eol;
    f.header_bytes = line_end - part.header_begin;
    if (!f.header_dropping && (f.header_bytes > lim.max_header_bytes || part.fields.size() >= lim.max_header_fields)) {
      // Past the limit the fields are not stored; the header still ends at
      // its empty line, so the body and later parts stay where they are.
      f.header_dropping = true;
      msg.limits_hit = true;
      flag(sym::kHeaderTooLarge, f.part, line_begin);
    }
    std::string_view l = line;
    if (detail::is_wsp(l.front())) {
      if (part.fields.empty() || (part.fields.back().end != line_begin)) {
        if (part.fields.empty()) flag(sym::kBadHeaderLine, f.part, line_begin);
        return;
      }
      HeaderField& h = part.fields.back();
      h.raw_value += prev_eol == 2 ? "\r\n" : "\n";
      h.raw_value += l;
      h.end = line_end;
      return;
    }
    std::size_t colon = l.find(':');
    std::string_view name = colon == std::string_view::npos ? std::string_view{} : l.substr(0, colon);
    while (!name.empty() && detail::is_wsp(name.back())) name.remove_suffix(1);
    bool valid = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      auto u = static_cast<unsigned char>(c);
      return u > 32 && u < 127;
    });
    if (!valid) {
      // Not a header field (no colon, blanks in the name, an mbox From_
      // line): skipped, and the header goes on to its empty line. GMime
      // and Dovecot read it the same way, so what we scan is what the
      // user's reader and our IMAP server will show.
      flag(sym::kBadHeaderLine, f.part, line_begin);
      return;
    }
    if (f.header_dropping) return;
    HeaderField h;
    h.name = std::string(name);
    h.raw_value = std::string(l.substr(colon + 1));
    h.begin = line_begin;
    h.end = line_end;
    part.fields.push_back(std::move(h));
  }

  void analyse_header(std::size_t idx);   // fills the typed fields from part.fields

  // The header of part idx is complete: decide how its body is read.
  void end_header(std::size_t idx) {
    analyse_header(idx);
    Frame& f = top();
    Part& part = msg.parts[idx];
    f.lf0 = total_lf + 1;  // body starts after the current line
    if (part.body_begin == line_begin) f.lf0 = total_lf;  // body starts at this line (no empty line)
    bool composite_ok = true;
    bool encoded = part.encoding == Encoding::Base64 || part.encoding == Encoding::QuotedPrintable ||
                   part.encoding == Encoding::UuEncode;
    bool is_msg = part.type == "message" &&
                  (part.subtype == "rfc822" || part.subtype == "global" || part.subtype == "news");
    bool is_multi = part.type == "multipart";
    if ((is_multi || is_msg) && part.depth + 1 > lim.max_depth) {
      flag(sym::kTooDeep, idx, part.header_begin);
      msg.limits_hit = true;
      composite_ok = false;
    }
    if ((is_multi || is_msg) && encoded) flag(sym::kEncodedComposite, idx, part.header_begin);
    if (is_multi && part.boundary.empty()) {
      flag(sym::kMissingBoundary, idx, part.header_begin);
      composite_ok = false;
    }
    if (is_msg && encoded) composite_ok = false;  // the encapsulated message is not readable as is
    if ((is_multi || is_msg) && !composite_ok) part.opaque = true;
    if (sink) sink->on_part_begin(part);

    if (is_multi && composite_ok) {
      f.mode = Mode::Preamble;
      part.preamble_begin = part.body_begin;
      check_boundary_conflict(idx);
      return;
    }
    if (is_msg && composite_ok) {
      if (msg.parts.size() >= lim.max_parts) {
        flag(sym::kTooManyParts, idx, part.body_begin);
        msg.limits_hit = true;
        part.opaque = true;
        start_leaf(f, part);
        return;
      }
      part.message_wrapper = true;
      f.mode = Mode::Skip;  // the wrapper's own body is its child
      open_child(idx, part.body_begin);
      return;
    }
    start_leaf(f, part);
  }

  void start_leaf(Frame& f, const Part& part) {
    f.mode = Mode::Body;
    held_eol.clear();
    if (part.encoding == Encoding::Base64 || part.encoding == Encoding::QuotedPrintable ||
        part.encoding == Encoding::UuEncode || sink)
      f.decoder.emplace(part.encoding, lim.max_decoded_bytes);
  }

  void check_boundary_conflict(std::size_t idx) {
    const std::string& b = msg.parts[idx].boundary;
    for (std::size_t k = 0; k + 1 < stack.size(); ++k) {
      const Part& p = msg.parts[stack[k].part];
      if (!p.is_multipart()) continue;
      const std::string& a = p.boundary;
      if (b.compare(0, a.size(), a) == 0 || a.compare(0, b.size(), b) == 0)
        flag(sym::kBoundaryConflict, idx, msg.parts[idx].header_begin);
    }
  }

  void open_child(std::size_t parent, std::size_t begin) {
    Part child;
    child.index = msg.parts.size();
    child.parent = static_cast<std::ptrdiff_t>(parent);
    child.depth = msg.parts[parent].depth + 1;
    child.header_begin = child.header_end = child.body_begin = child.body_end = begin;
    msg.parts[parent].children.push_back(child.index);
    msg.parts.push_back(std::move(child));
    stack.push_back(Frame{msg.parts.size() - 1, Mode::Header});
  }

  // ------------------------------------------------------ delimiters ---

  void delimiter(std::size_t k, bool close) {
    // RFC 2046 §5.1.1: the line end before the delimiter belongs to it,
    // unless that line end closes a delimiter line itself ("--in--" CRLF
    // "--out"): then it is the inner multipart's, as Dovecot counts it.
    this_delimiter = true;
    std::size_t end_at = prev_delimiter ? line_begin : line_begin >= prev_eol ? line_begin - prev_eol : 0;
    while (stack.size() > k + 1) close_top(end_at, true);
    held_eol.clear();
    Frame& f = stack[k];
    Part& m = msg.parts[f.part];
    if (f.mode == Mode::Preamble) m.preamble_end = std::max(m.preamble_begin, end_at);
    std::size_t next = pos;  // after this delimiter line
    if (close) {
      f.mode = Mode::Epilogue;
      m.epilogue_begin = next;
      if (m.children.empty()) flag(sym::kNoParts, f.part, line_begin);
      return;
    }
    if (msg.parts.size() >= lim.max_parts) {
      flag(sym::kTooManyParts, f.part, line_begin);
      msg.limits_hit = true;
      f.mode = Mode::Skip;
      return;
    }
    f.mode = Mode::Children;
    open_child(f.part, next);
  }

  // Closes the innermost part at end_at. by_delimiter: a delimiter line
  // (not the end of input) ends it, so its last line end is not body.
  void close_top(std::size_t end_at, bool by_delimiter) {
    Frame& f = top();
    Part& part = msg.parts[f.part];
    if (f.mode == Mode::Header) {
      // Input or an enclosing delimiter ended the header: no body.
      // By a delimiter: the line end before it is the delimiter's, so the
      // header (and its last field) stop short of it.
      part.header_end = by_delimiter ? std::max(part.header_begin, std::min(line_begin, end_at)) : pos;
      for (auto& h : part.fields) h.end = std::min(h.end, part.header_end);
      part.body_begin = part.header_end;
      part.preamble_begin = part.preamble_end = part.epilogue_begin = part.body_begin;
      flag(sym::kHeaderNoBody, f.part, part.header_end);
      analyse_header(f.part);
      if (sink) sink->on_part_begin(part);
      f.lf0 = total_lf;
    }
    part.body_end = std::max(part.body_begin, end_at);
    // A child that is only an empty delimiter line ends after end_at; keep it nested.
    if (!part.children.empty()) part.body_end = std::max(part.body_end, msg.parts[part.children.back()].body_end);
    part.lines = count_lines(f, part, by_delimiter);
    if (part.is_multipart() && !part.opaque) {
      if (f.mode == Mode::Preamble) {
        part.preamble_end = part.body_end;
        flag(sym::kNoParts, f.part, part.body_begin);
      }
      if (f.mode != Mode::Epilogue) {
        flag(sym::kMissingClose, f.part, part.body_end);
        part.epilogue_begin = part.body_end;
      }
      part.epilogue_begin = std::min(part.epilogue_begin, part.body_end);
      part.preamble_end = std::min(part.preamble_end, part.body_end);
    }
    if (f.mode == Mode::Body && f.decoder) {
      scratch.clear();
      f.decoder->finish(scratch);
      if (sink && !scratch.empty()) sink->on_decoded(part, scratch);
      if (f.decoder->error()) {
        if (part.encoding == Encoding::Base64) flag(sym::kBadBase64, f.part, part.body_begin);
        if (part.encoding == Encoding::QuotedPrintable) flag(sym::kBadQp, f.part, part.body_begin);
      }
      if (f.decoder->capped()) flag(sym::kDecodeCapped, f.part, part.body_begin);
    }
    if (sink) sink->on_part_end(part);
    stack.pop_back();
  }

  // IMAP body lines as Dovecot counts them: the LFs inside the body.
  std::uint64_t count_lines(const Frame& f, const Part& part, bool by_delimiter) const {
    if (part.body_end <= part.body_begin) return 0;
    std::uint64_t lfs = total_lf - std::min(total_lf, f.lf0);
    // body_end is either the delimiter line's start or just before the line
    // end preceding it; in the second case that LF is not body.
    if (by_delimiter && part.body_end < line_begin && lfs > 0) --lfs;
    return lfs;
  }

  Message finish() {
    if (finished) return std::move(msg);
    finished = true;
    if (line_len > 0 || streaming) {
      // A last line without LF: a line like any other, with no line end.
      if (top().mode == Mode::Header) flag(sym::kTruncated, top().part, line_begin);
      if (streaming && stream_cr && top().mode == Mode::Body) body_bytes("\r");
      stream_cr = false;
      dispatch(line_len, 0, false);
      line_begin = pos;  // line_len stays: count_lines sees the unterminated line
      line.clear();
    }
    if (top().mode == Mode::Body) body_bytes(held_eol);
    held_eol.clear();
    while (!stack.empty()) close_top(pos, false);
    msg.size = pos;
    return std::move(msg);
  }
};

// ----------------------------------------------------- header analysis ---

void Parser::Impl::analyse_header(std::size_t idx) {
  Part& part = msg.parts[idx];
  bool have_ct = false, have_cte = false, have_cd = false;
  std::string type_name, disp_name;
  bool bad2047 = false;
  for (const HeaderField& h : part.fields) {
    std::string n = lower(h.name);
    if (n.rfind("content-", 0) != 0) continue;
    if (n == "content-type") {
      if (have_ct) { flag(sym::kDuplicateField, idx, h.begin); continue; }
      have_ct = true;
      detail::ContentType ct = detail::parse_content_type(h.value(), lim);
      if (!ct.ok) {
        flag(sym::kBadContentType, idx, h.begin);
        // RFC 2045 §5.2: an unusable Content-Type means text/plain; us-ascii,
        // but keep a readable charset/name for the reader's sake.
      } else {
        part.type = ct.type;
        part.subtype = ct.subtype;
        part.content_type_given = true;
      }
      if (ct.params.syntax_error) flag(sym::kBadParams, idx, h.begin);
      if (ct.params.rfc2231_error) flag(sym::kBadRfc2231, idx, h.begin);
      if (ct.params.charset_error) flag(sym::kBadCharset, idx, h.begin);
      part.type_params = std::move(ct.params.params);
    } else if (n == "content-transfer-encoding") {
      if (have_cte) { flag(sym::kDuplicateField, idx, h.begin); continue; }
      have_cte = true;
      const std::string value = h.value();
      std::string_view v = detail::skip_cfws(value);
      std::size_t e = 0;
      while (e < v.size() && !detail::is_wsp(v[e]) && v[e] != '(' && v[e] != ';') ++e;
      part.cte = lower(v.substr(0, e));
      part.encoding = detail::encoding_from(part.cte);
      if (part.encoding == Encoding::Unknown) flag(sym::kUnknownCte, idx, h.begin);
    } else if (n == "content-disposition") {
      if (have_cd) { flag(sym::kDuplicateField, idx, h.begin); continue; }
      have_cd = true;
      detail::Disposition d = detail::parse_disposition(h.value(), lim);
      part.disposition = d.type;
      if (d.params.syntax_error) flag(sym::kBadParams, idx, h.begin);
      if (d.params.rfc2231_error) flag(sym::kBadRfc2231, idx, h.begin);
      if (d.params.charset_error) flag(sym::kBadCharset, idx, h.begin);
      part.disposition_params = std::move(d.params.params);
    } else if (n == "content-id") {
      part.content_id = h.value();
    } else if (n == "content-description") {
      Decoded d = decode_header(h.raw_value);
      if (d.error) bad2047 = true;
      part.description = std::string(detail::trim(d.data));
    } else if (n == "content-language") {
      part.language = h.value();
    } else if (n == "content-location") {
      part.location = h.value();
    } else if (n == "content-md5") {
      part.md5 = h.value();
    }
  }
  // RFC 2046 §5.1.5: in a multipart/digest the default is message/rfc822.
  if (!part.content_type_given && part.parent >= 0) {
    const Part& parent = msg.parts[static_cast<std::size_t>(part.parent)];
    if (parent.type == "multipart" && parent.subtype == "digest") {
      part.type = "message";
      part.subtype = "rfc822";
    }
  }
  for (const Param& p : part.type_params) {
    if (p.name == "boundary" && part.boundary.empty()) part.boundary = p.value;
    else if (p.name == "charset" && part.charset.empty()) part.charset = lower(detail::trim(p.value));
    else if (p.name == "name" && type_name.empty()) type_name = detail::param_text(p.value, bad2047);
  }
  for (const Param& p : part.disposition_params)
    if (p.name == "filename" && disp_name.empty()) disp_name = detail::param_text(p.value, bad2047);
  if (bad2047) flag(sym::kBadRfc2047, idx, part.header_begin);
  part.filename = !disp_name.empty() ? disp_name : type_name;
  if (!disp_name.empty() && !type_name.empty() && disp_name != type_name)
    flag(sym::kFilenameMismatch, idx, part.header_begin);
  if (part.type == "multipart") {
    const std::string& b = part.boundary;
    bool bad = b.empty() || b.size() > 70 || b.back() == ' ';
    for (char c : b) {
      // RFC 2046 §5.1.1 bchars.
      bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                std::strchr("'()+_,-./:=? ", c) != nullptr;
      if (!ok || c == '\0') bad = true;
    }
    if (bad && !b.empty()) flag(sym::kBadBoundary, idx, part.header_begin);
    if (b.size() > lim.max_boundary_length) part.boundary.clear();
  }
  for (const HeaderField& h : part.fields) {
    std::string n = lower(h.name);
    if (n == "subject" || n == "from" || n == "to" || n == "cc") {
      Decoded d = decode_header(h.raw_value, 4096);
      if (d.error) flag(sym::kBadRfc2047, idx, h.begin);
    }
  }
}

// ------------------------------------------------------------ Parser ---

Parser::Parser(const Limits& limits, Sink* sink) : impl_(std::make_unique<Impl>(limits, sink)) {}
Parser::~Parser() = default;
Parser::Parser(Parser&&) noexcept = default;
Parser& Parser::operator=(Parser&&) noexcept = default;

void Parser::feed(std::string_view bytes) {
  if (!impl_->finished) impl_->feed(bytes);
}
Message Parser::finish() { return impl_->finish(); }
const Message& Parser::current() const { return impl_->msg; }
std::size_t Parser::buffered_bytes() const {
  std::size_t n = impl_->line.capacity() + impl_->held_eol.capacity() + impl_->scratch.capacity();
  for (const auto& f : impl_->stack) n += sizeof f;
  return n;
}

Message parse(std::string_view whole, const Limits& limits) {
  Parser p(limits);
  p.feed(whole);
  return p.finish();
}

// ------------------------------------------------------ Part / Message ---

bool Part::attachment() const {
  if (is_multipart() || message_wrapper) return false;
  return disposition == "attachment" || !filename.empty() || type != "text";
}

const HeaderField* Part::field(std::string_view name) const {
  for (const auto& h : fields)
    if (iequals(h.name, name)) return &h;
  return nullptr;
}

bool Message::has(std::string_view symbol) const {
  return std::any_of(anomalies.begin(), anomalies.end(), [&](const Anomaly& a) { return a.symbol == symbol; });
}

std::vector<std::string_view> Message::symbols() const {
  std::vector<std::string_view> out;
  for (const auto& a : anomalies)
    if (std::find(out.begin(), out.end(), a.symbol) == out.end()) out.push_back(a.symbol);
  return out;
}

std::vector<std::size_t> Message::leaves() const {
  std::vector<std::size_t> out;
  for (const auto& p : parts)
    if (!p.is_multipart() && !p.message_wrapper) out.push_back(p.index);
  return out;
}

std::vector<std::size_t> Message::text_parts() const {
  std::vector<std::size_t> out;
  for (std::size_t i : leaves())
    if (parts[i].type == "text" && !parts[i].attachment()) out.push_back(i);
  return out;
}

std::vector<std::size_t> Message::attachments() const {
  std::vector<std::size_t> out;
  for (std::size_t i : leaves())
    if (parts[i].attachment()) out.push_back(i);
  return out;
}

std::optional<std::string_view> Message::raw_header(std::string_view name, std::size_t part) const {
  if (part >= parts.size()) return std::nullopt;
  const HeaderField* h = parts[part].field(name);
  if (!h) return std::nullopt;
  return std::string_view(h->raw_value);
}

std::optional<std::string> Message::header(std::string_view name, std::size_t part) const {
  auto raw = raw_header(name, part);
  if (!raw) return std::nullopt;
  return std::string(detail::trim(decode_header(*raw).data));
}

std::vector<std::string> Message::headers(std::string_view name, std::size_t part) const {
  std::vector<std::string> out;
  if (part >= parts.size()) return out;
  for (const auto& h : parts[part].fields)
    if (iequals(h.name, name)) out.emplace_back(detail::trim(decode_header(h.raw_value).data));
  return out;
}

std::string Message::subject() const { return header("Subject").value_or(""); }
std::string Message::from() const { return header("From").value_or(""); }
std::string Message::to() const { return header("To").value_or(""); }
std::string Message::cc() const { return header("Cc").value_or(""); }
std::string Message::reply_to() const { return header("Reply-To").value_or(""); }
std::string Message::date() const { return header("Date").value_or(""); }
std::string Message::message_id() const { return header("Message-ID").value_or(""); }

}  // namespace moat::mime

// Transfer decoding (RFC 2045 §6.7 quoted-printable, §6.8 base64, plus the
// x-uuencode that old mailers still send) and charset conversion to UTF-8
// with iconv (RFC 2046 §4.1.2 charset parameter; WHATWG Encoding aliases).
// Lenient like every mail reader, but each repair is reported and every
// output is bounded.
#include <iconv.h>

#include <cerrno>
#include <cstring>

#include "common/proto/mime/detail.hpp"
#include "common/text.hpp"

namespace moat::mime {
namespace detail {

std::string_view trim(std::string_view s) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

std::string unfold(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (char c : raw)
    if (c != '\r' && c != '\n') out += c;
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool append_capped(std::string& out, std::string_view s, std::size_t cap, bool& capped) {
  if (out.size() >= cap) {
    if (!s.empty()) capped = true;
    return s.empty();
  }
  std::size_t room = cap - out.size();
  if (s.size() > room) {
    out.append(s.substr(0, room));
    capped = true;
    return false;
  }
  out.append(s);
  return true;
}

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence at s[i], 0 if invalid (overlongs,
// surrogates and code points above U+10FFFF are invalid, RFC 3629 §4).
std::size_t utf8_seq(std::string_view s, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  std::uint32_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) n = 3;
  else if (c >= 0xF0 && c <= 0xF4) n = 4;
  else return 0;
  if (i + n > s.size()) return 0;
  if (c == 0xE0) lo = 0xA0;
  if (c == 0xED) hi = 0x9F;
  if (c == 0xF0) lo = 0x90;
  if (c == 0xF4) hi = 0x8F;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  return n;
}

// windows-1252 0x80..0x9F; 0 = undefined (mapped to the C1 control, as WHATWG does).
constexpr std::uint16_t kCp1252High[32] = {
    0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
    0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178};

}  // namespace

bool utf8_sanitize(std::string_view in, std::string& out, std::size_t cap, bool& capped) {
  bool valid = true;
  std::size_t i = 0;
  while (i < in.size()) {
    std::size_t n = utf8_seq(in, i);
    if (n == 0) {
      valid = false;
      if (!append_capped(out, kReplacement, cap, capped)) return valid;
      ++i;
      continue;
    }
    if (!append_capped(out, in.substr(i, n), cap, capped)) return valid;
    i += n;
  }
  return valid;
}

bool is_valid_utf8(std::string_view in) {
  for (std::size_t i = 0; i < in.size();) {
    std::size_t n = utf8_seq(in, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void windows1252_to_utf8(std::string_view in, std::string& out, std::size_t cap, bool& capped) {
  std::string tmp;
  for (char ch : in) {
    auto c = static_cast<unsigned char>(ch);
    tmp.clear();
    if (c >= 0x80 && c <= 0x9F && kCp1252High[c - 0x80]) append_utf8(tmp, kCp1252High[c - 0x80]);
    else append_utf8(tmp, c);
    if (!append_capped(out, tmp, cap, capped)) return;
  }
}

// ------------------------------------------------------ StreamDecoder ---

namespace {
constexpr std::size_t kMaxPending = 8192;  // QP/uu line buffer before it is decoded in pieces

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

void StreamDecoder::emit(std::string& out, std::string_view s) {
  if (produced_ + s.size() > cap_) {
    s = s.substr(0, cap_ - produced_);
    capped_ = true;
  }
  out.append(s);
  produced_ += s.size();
}

void StreamDecoder::feed(std::string_view in, std::string& out) {
  switch (enc_) {
    case Encoding::Base64: feed_base64(in, out); break;
    case Encoding::QuotedPrintable: feed_qp(in, out); break;
    case Encoding::UuEncode: feed_uu(in, out); break;
    default: emit(out, in); break;
  }
}

void StreamDecoder::feed_base64(std::string_view in, std::string& out) {
  char buf[3];
  for (char c : in) {
    if (capped_) return;
    int v = b64_value(c);
    if (v < 0) {
      if (c == '=') {
        // Padding ends a quantum: 2 or 3 symbols carry 1 or 2 bytes.
        if (nquad_ == 2 || nquad_ == 3) {
          buf[0] = char(quad_ >> (nquad_ == 2 ? 4 : 10));
          if (nquad_ == 3) buf[1] = char(quad_ >> 2);
          emit(out, std::string_view(buf, nquad_ - 1));
          padded_ = true;
        } else if (nquad_ == 1) {
          error_ = true;
        } else if (!padded_) {
          error_ = true;  // '=' where no padding can be
        }
        nquad_ = 0;
        quad_ = 0;
      } else if (c != '\r' && c != '\n' && c != ' ' && c != '\t') {
        error_ = true;
      }
      continue;
    }
    if (padded_) {
      error_ = true;  // data after padding: decode on (concatenated blocks), but flag
      padded_ = false;
    }
    quad_ = (quad_ << 6) | std::uint32_t(v);
    if (++nquad_ == 4) {
      buf[0] = char(quad_ >> 16);
      buf[1] = char(quad_ >> 8);
      buf[2] = char(quad_);
      emit(out, std::string_view(buf, 3));
      nquad_ = 0;
      quad_ = 0;
    }
  }
}

void StreamDecoder::qp_line(std::string_view line, bool has_eol, std::string_view eol, std::string& out) {
  if (has_eol) {
    // RFC 2045 §6.7 (3): trailing blanks were added in transport; drop them.
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
  }
  bool soft = false;
  std::size_t run = 0;  // start of a literal run
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] != '=') continue;
    emit(out, line.substr(run, i - run));
    if (i + 1 == line.size()) {
      soft = has_eol;  // "=" at the end of a line: soft break
      if (!has_eol) error_ = true;
      run = i + 1;
      break;
    }
    int h = i + 2 < line.size() ? hex_value(line[i + 1]) : -1;
    int l = i + 2 < line.size() ? hex_value(line[i + 2]) : -1;
    if (h >= 0 && l >= 0) {
      emit_byte(out, char(h * 16 + l));
      i += 2;
    } else {
      error_ = true;
      emit_byte(out, '=');
    }
    run = i + 1;
  }
  if (run < line.size()) emit(out, line.substr(run));
  if (has_eol && !soft) emit(out, eol);
}

void StreamDecoder::feed_qp(std::string_view in, std::string& out) {
  while (!in.empty() && !capped_) {
    std::size_t lf = in.find('\n');
    if (lf == std::string_view::npos) {
      line_.append(in);
      if (line_.size() > kMaxPending) {
        // Decode the bulk of an endless line; keep a tail that may hold "=XX".
        std::size_t cut = line_.size() - 3;
        for (std::size_t j = cut - 2; j < cut; ++j)
          if (line_[j] == '=') { cut = j; break; }
        qp_line(std::string_view(line_).substr(0, cut), false, {}, out);
        line_.erase(0, cut);
      }
      return;
    }
    line_.append(in.substr(0, lf));
    in.remove_prefix(lf + 1);
    bool crlf = !line_.empty() && line_.back() == '\r';
    if (crlf) line_.pop_back();
    qp_line(line_, true, crlf ? "\r\n" : "\n", out);
    line_.clear();
  }
}

void StreamDecoder::uu_line(std::string_view line, std::string& out) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (uu_ended_) return;
  if (!uu_begun_) {
    if (line.substr(0, 6) == "begin ") uu_begun_ = true;
    return;
  }
  if (line == "end") {
    uu_ended_ = true;
    return;
  }
  if (line.empty()) return;
  std::size_t n = (static_cast<unsigned char>(line[0]) - 32) & 63;
  std::size_t k = 1;
  char buf[3];
  auto val = [&](std::size_t i) { return i < line.size() ? (static_cast<unsigned char>(line[i]) - 32) & 63 : 0; };
  while (n > 0) {
    if (k >= line.size()) {
      error_ = true;
      return;
    }
    std::uint32_t q = (std::uint32_t(val(k)) << 18) | (std::uint32_t(val(k + 1)) << 12) |
                      (std::uint32_t(val(k + 2)) << 6) | std::uint32_t(val(k + 3));
    buf[0] = char(q >> 16);
    buf[1] = char(q >> 8);
    buf[2] = char(q);
    std::size_t take = n < 3 ? n : 3;
    emit(out, std::string_view(buf, take));
    n -= take;
    k += 4;
  }
}

void StreamDecoder::feed_uu(std::string_view in, std::string& out) {
  while (!in.empty() && !capped_) {
    std::size_t lf = in.find('\n');
    if (lf == std::string_view::npos) {
      if (line_.size() + in.size() > kMaxPending) error_ = true;  // not uuencode: lines are ≤ 62 bytes
      else line_.append(in);
      return;
    }
    if (line_.size() + lf <= kMaxPending) line_.append(in.substr(0, lf));
    in.remove_prefix(lf + 1);
    uu_line(line_, out);
    line_.clear();
  }
}

void StreamDecoder::finish(std::string& out) {
  if (enc_ == Encoding::Base64) {
    if (nquad_ == 2 || nquad_ == 3) {
      char buf[2] = {char(quad_ >> (nquad_ == 2 ? 4 : 10)), char(quad_ >> 2)};
      emit(out, std::string_view(buf, nquad_ - 1));
      error_ = true;  // missing padding
    } else if (nquad_ == 1) {
      error_ = true;
    }
    nquad_ = 0;
  } else if (enc_ == Encoding::QuotedPrintable) {
    if (!line_.empty()) qp_line(line_, false, {}, out);
    line_.clear();
  } else if (enc_ == Encoding::UuEncode) {
    if (!line_.empty()) uu_line(line_, out);
    line_.clear();
    if (!uu_begun_) error_ = true;
  }
}

Encoding encoding_from(std::string_view c) {
  if (c.empty() || c == "7bit") return Encoding::SevenBit;
  if (c == "8bit") return Encoding::EightBit;
  if (c == "binary") return Encoding::Binary;
  if (c == "base64") return Encoding::Base64;
  if (c == "quoted-printable") return Encoding::QuotedPrintable;
  if (c == "x-uuencode" || c == "uuencode" || c == "x-uue") return Encoding::UuEncode;
  return Encoding::Unknown;
}

}  // namespace detail

std::string_view encoding_name(Encoding e) {
  switch (e) {
    case Encoding::SevenBit: return "7bit";
    case Encoding::EightBit: return "8bit";
    case Encoding::Binary: return "binary";
    case Encoding::Base64: return "base64";
    case Encoding::QuotedPrintable: return "quoted-printable";
    case Encoding::UuEncode: return "x-uuencode";
    case Encoding::Unknown: break;
  }
  return "unknown";
}

Decoded decode_body(std::string_view raw, Encoding enc, std::size_t max_out) {
  Decoded d;
  detail::StreamDecoder dec(enc, max_out);
  dec.feed(raw, d.data);
  dec.finish(d.data);
  d.error = dec.error();
  d.capped = dec.capped();
  return d;
}

Decoded decode_part(std::string_view whole, const Part& part, std::size_t max_out) {
  if (part.body_begin > whole.size() || part.body_end > whole.size() || part.body_end < part.body_begin) return {};
  return decode_body(whole.substr(part.body_begin, part.size()), part.encoding, max_out);
}

// ---------------------------------------------------------- charsets ---

namespace {

// Charset labels as mailers write them → the name glibc iconv knows, with
// the WHATWG Encoding Standard's supersets (a mail labelled gb2312 is really
// GBK/GB18030, iso-8859-1 is really windows-1252, and so on).
std::string iconv_name(std::string_view label) {
  std::string c = lower(detail::trim(label));
  if (c.size() >= 2 && c.front() == '"' && c.back() == '"') c = c.substr(1, c.size() - 2);
  struct Alias { std::string_view from, to; };
  static constexpr Alias kAliases[] = {
      {"us-ascii", "CP1252"}, {"ascii", "CP1252"}, {"iso-8859-1", "CP1252"}, {"iso8859-1", "CP1252"},
      {"iso_8859-1", "CP1252"}, {"latin1", "CP1252"}, {"l1", "CP1252"}, {"ansi_x3.4-1968", "CP1252"},
      {"windows-1252", "CP1252"}, {"cp1252", "CP1252"}, {"x-cp1252", "CP1252"},
      {"ks_c_5601-1987", "CP949"}, {"ks_c_5601", "CP949"}, {"euc-kr", "CP949"}, {"korean", "CP949"},
      {"gb2312", "GB18030"}, {"gbk", "GB18030"}, {"x-gbk", "GB18030"}, {"cn-gb", "GB18030"}, {"gb_2312-80", "GB18030"},
      {"shift_jis", "CP932"}, {"shift-jis", "CP932"}, {"x-sjis", "CP932"}, {"sjis", "CP932"}, {"ms_kanji", "CP932"},
      {"windows-31j", "CP932"}, {"big5", "BIG5-HKSCS"}, {"x-x-big5", "BIG5-HKSCS"}, {"cn-big5", "BIG5-HKSCS"},
      {"iso-8859-8-i", "ISO-8859-8"}, {"iso-8859-9", "CP1254"}, {"iso-8859-11", "CP874"}, {"tis-620", "CP874"},
      {"windows-874", "CP874"}, {"utf8", "UTF-8"}, {"unicode-1-1-utf-7", "UTF-7"},
  };
  for (const auto& a : kAliases)
    if (c == a.from) return std::string(a.to);
  return c;
}

// Labels that name no charset at all (seen in the wild): read as windows-1252.
bool non_charset(std::string_view c) {
  return c == "unknown-8bit" || c == "x-unknown" || c == "unknown" || c == "8bit" || c == "7bit" ||
         c == "default" || c == "x-user-defined" || c == "none" || c == "charset";
}

struct IconvHandle {
  iconv_t cd;
  explicit IconvHandle(const char* from) : cd(iconv_open("UTF-8", from)) {}
  ~IconvHandle() {
    if (ok()) iconv_close(cd);
  }
  IconvHandle(const IconvHandle&) = delete;
  IconvHandle& operator=(const IconvHandle&) = delete;
  bool ok() const { return cd != reinterpret_cast<iconv_t>(-1); }
};

void iconv_convert(iconv_t cd, std::string_view in, Decoded& d, std::size_t cap) {
  char* inp = const_cast<char*>(in.data());
  std::size_t inleft = in.size();
  char buf[4096];
  while (inleft > 0 && !d.capped) {
    char* outp = buf;
    std::size_t outleft = sizeof buf;
    std::size_t r = iconv(cd, &inp, &inleft, &outp, &outleft);
    int err = errno;
    detail::append_capped(d.data, std::string_view(buf, sizeof buf - outleft), cap, d.capped);
    if (r != static_cast<std::size_t>(-1)) continue;
    if (err == E2BIG) continue;
    // EILSEQ: one bad byte; EINVAL: an incomplete sequence at the end.
    d.error = true;
    detail::append_capped(d.data, "\xEF\xBF\xBD", cap, d.capped);  // U+FFFD
    if (err == EINVAL) break;
    ++inp;
    --inleft;
  }
  char* outp = buf;
  std::size_t outleft = sizeof buf;
  iconv(cd, nullptr, nullptr, &outp, &outleft);  // stateful charsets: return to the initial state
  detail::append_capped(d.data, std::string_view(buf, sizeof buf - outleft), cap, d.capped);
}

}  // namespace

Decoded to_utf8(std::string_view bytes, std::string_view charset, std::size_t max_out) {
  Decoded d;
  std::string name = iconv_name(charset);
  bool ascii_only = true;
  for (char c : bytes)
    if (static_cast<unsigned char>(c) >= 0x80) { ascii_only = false; break; }
  bool stateful = name.find("2022") != std::string::npos || name == "UTF-7" || name.rfind("utf-16", 0) == 0 ||
                  name.rfind("utf-32", 0) == 0 || name == "hz-gb-2312";
  if (ascii_only && !stateful) {
    detail::append_capped(d.data, bytes, max_out, d.capped);
    return d;
  }
  if (name.empty() || name == "UTF-8" || name == "utf-8") {
    d.error = !detail::utf8_sanitize(bytes, d.data, max_out, d.capped);
    return d;
  }
  if (name == "CP1252") {
    detail::windows1252_to_utf8(bytes, d.data, max_out, d.capped);
    return d;
  }
  if (!non_charset(name) && name.size() < 64) {
    IconvHandle h(name.c_str());
    if (h.ok()) {
      iconv_convert(h.cd, bytes, d, max_out);
      return d;
    }
  }
  d.unknown_charset = true;
  if (detail::is_valid_utf8(bytes)) detail::append_capped(d.data, bytes, max_out, d.capped);
  else detail::windows1252_to_utf8(bytes, d.data, max_out, d.capped);
  return d;
}

}  // namespace moat::mime

// See smtp_parser.hpp (RFC 5321 §2.3.8, §4.1, §4.5.2; RFC 3030; RFC 3461;
// RFC 1870; RFC 6152; RFC 6531; RFC 4954 §5). The state machine drawing for
// the DATA decoder is in the header.
#include "common/proto/smtp_parser.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "common/proto/xtext.hpp"
#include "common/text.hpp"

namespace moat::proto::smtp {
namespace {

constexpr std::size_t kChunk = 64 * 1024;  // largest DataChunk, so a huge feed is emitted in pieces
constexpr std::size_t kMaxEnvid = 100;     // RFC 3461 §4.4
constexpr std::size_t kMaxOrcpt = 500;     // RFC 3461 §4.2

struct VerbName {
  Verb verb;
  std::string_view name;
};
constexpr std::array kVerbs{
    VerbName{Verb::Helo, "HELO"}, VerbName{Verb::Ehlo, "EHLO"}, VerbName{Verb::Mail, "MAIL"},
    VerbName{Verb::Rcpt, "RCPT"}, VerbName{Verb::Data, "DATA"}, VerbName{Verb::Bdat, "BDAT"},
    VerbName{Verb::Rset, "RSET"}, VerbName{Verb::Noop, "NOOP"}, VerbName{Verb::Quit, "QUIT"},
    VerbName{Verb::Vrfy, "VRFY"}, VerbName{Verb::Expn, "EXPN"}, VerbName{Verb::Help, "HELP"},
    VerbName{Verb::StartTls, "STARTTLS"}, VerbName{Verb::Auth, "AUTH"},
};

char upper(char c) { return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c; }
bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}
std::string to_upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = upper(c);
  return out;
}
std::string_view trim_right(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Space-separated tokens; runs of spaces and trailing spaces are tolerated.
std::vector<std::string_view> split_spaces(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    const auto sp = s.find(' ');
    if (sp != 0) out.push_back(s.substr(0, sp));
    if (sp == std::string_view::npos) break;
    s.remove_prefix(sp + 1);
  }
  return out;
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const std::uint64_t d = std::uint64_t(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

Error param_error(std::string detail) { return Error{Errc::ParamSyntax, std::move(detail)}; }

// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
bool valid_keyword(std::string_view k) {
  if (k.empty() || !is_alnum(k[0])) return false;
  return std::all_of(k.begin(), k.end(), [](char c) { return is_alnum(c) || c == '-'; });
}

// esmtp-value = 1*(%d33-60 / %d62-126)
bool valid_value(std::string_view v) {
  if (v.empty()) return false;
  return std::all_of(v.begin(), v.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c >= 33 && c <= 126 && c != '=';
  });
}

Status parse_params(std::string_view text, std::vector<Param>& out) {
  for (std::string_view tok : split_spaces(text)) {
    const auto eq = tok.find('=');
    const std::string_view key = tok.substr(0, eq);
    if (!valid_keyword(key)) return param_error("bad parameter keyword");
    Param p;
    p.keyword = to_upper(key);
    if (eq != std::string_view::npos) {
      const std::string_view value = tok.substr(eq + 1);
      if (!valid_value(value)) return param_error("bad value for parameter " + p.keyword);
      p.value = std::string(value);
      p.has_value = true;
    }
    for (const auto& q : out)
      if (q.keyword == p.keyword) return param_error("duplicate parameter " + p.keyword);
    out.push_back(std::move(p));
  }
  return {};
}

// "FROM:<path> params" / "TO:<path> params". One space after the colon is
// tolerated (common in the wild); angle brackets are required.
Result<Command> parse_mail_rcpt(Command cmd, std::string_view rest) {
  const bool mail = cmd.verb == Verb::Mail;
  const std::string_view prefix = mail ? "FROM:" : "TO:";
  if (!istarts_with(rest, prefix)) return param_error(mail ? "expected MAIL FROM:<address>" : "expected RCPT TO:<address>");
  rest.remove_prefix(prefix.size());
  if (!rest.empty() && rest[0] == ' ') rest.remove_prefix(1);
  if (rest.empty() || rest[0] != '<') return param_error("address must be enclosed in <>");
  // Find the closing '>' outside quoted strings: a quoted local part may hold '>'.
  bool quoted = false;
  std::size_t i = 1;
  for (; i < rest.size(); ++i) {
    const char c = rest[i];
    if (quoted) {
      if (c == '\\') ++i;
      else if (c == '"') quoted = false;
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      break;
    } else if (c == '<') {
      return param_error("unexpected < in address");
    }
  }
  if (i >= rest.size()) return param_error("address must be enclosed in <>");
  cmd.path = std::string(rest.substr(1, i - 1));
  if (cmd.path.empty() && !mail) return param_error("empty recipient address <>");
  const std::string_view params = rest.substr(i + 1);
  if (!params.empty() && params[0] != ' ') return param_error("expected space after address");
  if (auto st = parse_params(params, cmd.params); !st) return st.error();
  return cmd;
}

// BDAT SP chunk-size [SP "LAST"] (RFC 3030 §2)
Result<Command> parse_bdat(Command cmd, std::string_view rest) {
  const auto toks = split_spaces(rest);
  if (toks.empty() || toks.size() > 2) return param_error("expected BDAT size [LAST]");
  const auto size = parse_u64(toks[0]);
  if (!size) return param_error("bad BDAT chunk size");
  if (toks.size() == 2 && !iequals(toks[1], "LAST")) return param_error("expected BDAT size [LAST]");
  cmd.bdat_size = *size;
  cmd.bdat_last = toks.size() == 2;
  return cmd;
}

}  // namespace

std::string_view verb_name(Verb v) {
  for (const auto& e : kVerbs)
    if (e.verb == v) return e.name;
  return "UNKNOWN";
}

Verb verb_from(std::string_view word) {
  for (const auto& e : kVerbs)
    if (iequals(word, e.name)) return e.verb;
  return Verb::Unknown;
}

Result<Command> parse_command(std::string_view line, std::size_t max_line) {
  if (line.size() + 2 > max_line) return Error{Errc::LineTooLong, "command line too long"};
  for (char ch : line) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return Error{Errc::SyntaxError, "control character in command line"};
  }
  const auto sp = line.find(' ');
  Command cmd;
  cmd.verb = verb_from(line.substr(0, sp));
  if (cmd.verb == Verb::Unknown) return Error{Errc::UnknownCommand, "command not recognized"};
  const std::string_view rest = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
  cmd.argument = std::string(rest);
  switch (cmd.verb) {
    case Verb::Helo:
    case Verb::Ehlo:
    case Verb::Vrfy:
    case Verb::Expn:
    case Verb::Auth:
      cmd.argument = std::string(trim_right(rest));
      if (cmd.argument.empty()) return param_error(std::string(verb_name(cmd.verb)) + " needs an argument");
      return cmd;
    case Verb::Data:
    case Verb::Rset:
    case Verb::Quit:
    case Verb::StartTls:
      if (!trim_right(rest).empty()) return param_error(std::string(verb_name(cmd.verb)) + " takes no argument");
      cmd.argument.clear();
      return cmd;
    case Verb::Noop:
    case Verb::Help:
      return cmd;
    case Verb::Mail:
    case Verb::Rcpt:
      return parse_mail_rcpt(std::move(cmd), rest);
    case Verb::Bdat:
      return parse_bdat(std::move(cmd), rest);
    case Verb::Unknown:
      break;
  }
  return Error{Errc::UnknownCommand, "command not recognized"};
}

Result<MailParams> parse_mail_params(const std::vector<Param>& params) {
  MailParams m;
  for (const auto& p : params) {
    const std::string& k = p.keyword;
    if (k == "SIZE") {
      m.size = p.has_value ? parse_u64(p.value) : std::nullopt;
      if (!m.size) return param_error("SIZE must be a number");
    } else if (k == "BODY") {
      if (iequals(p.value, "7BIT")) m.body = BodyType::SevenBit;
      else if (iequals(p.value, "8BITMIME")) m.body = BodyType::EightBitMime;
      else if (iequals(p.value, "BINARYMIME")) m.body = BodyType::BinaryMime;
      else return param_error("BODY must be 7BIT, 8BITMIME or BINARYMIME");
      m.body_given = true;
    } else if (k == "SMTPUTF8") {
      if (p.has_value) return param_error("SMTPUTF8 takes no value");
      m.smtputf8 = true;
    } else if (k == "RET") {
      if (iequals(p.value, "FULL")) m.ret = DsnRet::Full;
      else if (iequals(p.value, "HDRS")) m.ret = DsnRet::Hdrs;
      else return param_error("RET must be FULL or HDRS");
    } else if (k == "ENVID") {
      if (!p.has_value || p.value.size() > kMaxEnvid || !xtext_valid(p.value)) return param_error("bad ENVID");
      m.envid = p.value;
    } else if (k == "AUTH") {
      auto v = p.has_value ? xtext_decode(p.value) : Result<std::string>(Errc::ParamSyntax);
      if (!v) return param_error("bad AUTH parameter");
      m.auth = std::move(*v);
    } else {
      return Error{Errc::NotImplemented, "unsupported MAIL parameter " + k};
    }
  }
  return m;
}

Result<RcptParams> parse_rcpt_params(const std::vector<Param>& params) {
  RcptParams r;
  for (const auto& p : params) {
    if (p.keyword == "NOTIFY") {
      if (!p.has_value) return param_error("NOTIFY needs a value");
      if (iequals(p.value, "NEVER")) {
        r.notify = DsnNotify::Never;
        continue;
      }
      DsnNotify set = DsnNotify::Default;
      for (std::string_view rest = p.value;;) {
        const auto comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        if (iequals(item, "SUCCESS")) set = set | DsnNotify::Success;
        else if (iequals(item, "FAILURE")) set = set | DsnNotify::Failure;
        else if (iequals(item, "DELAY")) set = set | DsnNotify::Delay;
        else return param_error("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY");
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
      r.notify = set;
    } else if (p.keyword == "ORCPT") {
      // addr-type ";" xtext (RFC 3461 §4.2)
      const auto semi = p.value.find(';');
      if (!p.has_value || p.value.size() > kMaxOrcpt || semi == std::string::npos || semi == 0)
        return param_error("bad ORCPT");
      const std::string_view type = std::string_view(p.value).substr(0, semi);
      if (!valid_keyword(type)) return param_error("bad ORCPT address type");
      auto addr = xtext_decode(std::string_view(p.value).substr(semi + 1));
      if (!addr || addr->empty()) return param_error("bad ORCPT address");
      r.orcpt = p.value;
      r.orcpt_type = lower(type);
      r.orcpt_address = std::move(*addr);
    } else {
      return Error{Errc::NotImplemented, "unsupported RCPT parameter " + p.keyword};
    }
  }
  return r;
}

// ---------------------------------------------------------------- Parser

Parser::Parser(ParserOptions options) : opt_(options) {}

void Parser::compact() {
  if (pos_ == 0) return;
  buf_.erase(0, pos_);
  scan_ = scan_ > pos_ ? scan_ - pos_ : 0;
  pos_ = 0;
}

void Parser::feed(std::string_view bytes) {
  compact();
  buf_.append(bytes);
}

void Parser::discard_buffered() {
  pos_ = scan_ = buf_.size();
  skipping_ = false;
}

Event Parser::next() {
  switch (mode_) {
    case Mode::Command: return next_command();
    case Mode::Data: return next_data();
    case Mode::Bdat: return next_bdat();
  }
  return {};
}

Event Parser::command_error(Errc code, std::string detail, std::size_t resume) {
  Event ev;
  ev.kind = Event::Kind::CommandError;
  ev.error = Error{code, std::move(detail)};
  const std::string_view line(buf_.data() + pos_, resume - pos_);
  ev.command.verb = verb_from(line.substr(0, line.find(' ')));
  // The rest of this line is discarded up to the next CRLF, never buffered.
  pos_ = scan_ = resume;
  skipping_ = true;
  raw_next_ = false;
  return ev;
}

Event Parser::next_command() {
  for (;;) {
    if (skipping_) {
      const std::string_view rest(buf_.data() + pos_, buf_.size() - pos_);
      const auto crlf = rest.find("\r\n");
      if (crlf == std::string_view::npos) {
        // Keep only a trailing CR: it may pair with an LF in the next feed.
        pos_ = buf_.size() - (!rest.empty() && rest.back() == '\r' ? 1 : 0);
        scan_ = pos_;
        return {};
      }
      pos_ = scan_ = pos_ + crlf + 2;
      skipping_ = false;
      continue;
    }
    for (std::size_t i = std::max(scan_, pos_); i < buf_.size(); ++i) {
      const char c = buf_[i];
      if (c == '\r') {
        if (i + 1 == buf_.size()) {
          scan_ = i;
          return {};
        }
        if (buf_[i + 1] != '\n') return command_error(Errc::SyntaxError, "bare CR in command line", i + 1);
        const std::string_view line(buf_.data() + pos_, i - pos_);
        Event ev;
        if (raw_next_) {
          // A SASL response (RFC 4954 §4): base64 or "*", not a command.
          raw_next_ = false;
          ev.kind = Event::Kind::Command;
          ev.command.argument.assign(line);
          pos_ = scan_ = i + 2;
          return ev;
        }
        auto r = parse_command(line, opt_.max_line);
        if (r) {
          ev.kind = Event::Kind::Command;
          ev.command = std::move(*r);
        } else {
          ev.kind = Event::Kind::CommandError;
          ev.error = r.error();
          ev.command.verb = verb_from(line.substr(0, line.find(' ')));
        }
        pos_ = scan_ = i + 2;
        return ev;
      }
      if (c == '\n') return command_error(Errc::SyntaxError, "bare LF in command line", i + 1);
      if (c == '\0') return command_error(Errc::SyntaxError, "NUL in command line", i + 1);
      // content so far plus the CRLF still to come
      if (i - pos_ + 3 > opt_.max_line) return command_error(Errc::LineTooLong, "command line too long", i + 1);
    }
    scan_ = buf_.size();
    return {};
  }
}

void Parser::new_message() {
  out_.clear();
  error_.reset();
  message_size_ = 0;
  header_size_ = 0;
  in_header_ = true;
  line_len_ = 0;
  st_ = LineState::LineStart;
  done_ = false;
  bdat_open_ = false;
}

void Parser::reset_message() {
  new_message();
  binary_ = false;
}

void Parser::start_data() {
  new_message();
  mode_ = Mode::Data;
  st_ = LineState::LineStart;  // the DATA command's own CRLF precedes the first line
}

void Parser::start_bdat(std::uint64_t size, bool last) {
  if (!bdat_open_) {
    new_message();
    st_ = LineState::Mid;  // dots are not special in BDAT
    bdat_open_ = true;
  }
  mode_ = Mode::Bdat;
  bdat_left_ = size;
  bdat_last_ = last;
  done_ = false;
  // Decoding never shrinks the data, so this chunk cannot fit: say so now
  // and swallow it without emitting anything.
  if (size > opt_.max_message - message_size_) set_error(Errc::MessageTooLarge, "message size exceeds limit");
}

void Parser::set_error(Errc code, std::string detail) {
  if (!error_) error_ = Error{code, std::move(detail)};
}

bool Parser::binary_body() const { return binary_ && mode_ == Mode::Bdat; }

void Parser::add_wire(std::size_t n) {
  line_len_ += n;
  if (!binary_body() && line_len_ + 2 > opt_.max_line) set_error(Errc::LineTooLong, "message line too long");
}

// Emits what fits under the size and header limits, then flags the error:
// cutting at the exact limit keeps the events independent of how the input
// was split.
void Parser::emit(std::string_view bytes) {
  if (error_) return;  // swallowing: nothing more reaches the session
  std::size_t n = bytes.size();
  std::optional<Error> hit;
  if (n > opt_.max_message - message_size_) {
    n = static_cast<std::size_t>(opt_.max_message - message_size_);
    hit = Error{Errc::MessageTooLarge, "message size exceeds limit"};
  }
  if (in_header_ && header_size_ + n > opt_.max_header) {
    n = opt_.max_header - header_size_;
    hit = Error{Errc::HeaderTooLarge, "message header exceeds limit"};
  }
  message_size_ += n;
  if (in_header_) header_size_ += n;
  out_.append(bytes.substr(0, n));
  if (hit) set_error(hit->code, std::move(hit->detail));
}

// Line content without CR or LF; like emit(), cut at the line limit.
void Parser::take_span(std::string_view span) {
  std::size_t n = span.size();
  if (!binary_body()) n = std::min(n, opt_.max_line > line_len_ + 2 ? opt_.max_line - line_len_ - 2 : 0);
  emit(span.substr(0, n));
  add_wire(span.size());
}

void Parser::line_end() {
  if (in_header_ && line_len_ == 0) in_header_ = false;  // the empty line ends the header section
  emit("\r\n");
  line_len_ = 0;
}

void Parser::bare(char c) {
  if (binary_body()) {
    emit(std::string_view(&c, 1));  // BINARYMIME: just a byte
    return;
  }
  if (opt_.bare_line == config::BareLinePolicy::Normalize) {
    line_end();
    return;
  }
  set_error(Errc::BareLineEnding, c == '\n' ? "bare LF in message data" : "bare CR in message data");
  line_len_ = 0;
}

void Parser::step(char c, bool dots) {
  switch (st_) {
    case LineState::LineStart:
      if (dots && c == '.') {
        add_wire(1);
        st_ = LineState::Dot;
        return;
      }
      break;
    case LineState::Dot:
      if (c == '\r') {
        st_ = LineState::DotCr;
        return;
      }
      st_ = LineState::Mid;
      if (c == '\n') {  // "." then a bare LF: the dot is data, not stuffing
        emit(".");
        bare('\n');
        return;
      }
      break;  // the stuffing dot is dropped (RFC 5321 §4.5.2); c is line content
    case LineState::DotCr:
      if (c == '\n') {  // CRLF . CRLF: the only end of DATA
        done_ = true;
        return;
      }
      emit(".");
      bare('\r');
      break;
    case LineState::Cr:
      if (c == '\n') {
        line_end();
        st_ = dots ? LineState::LineStart : LineState::Mid;
        return;
      }
      bare('\r');
      break;
    case LineState::Mid:
      break;
  }
  st_ = LineState::Mid;
  if (c == '\r') {
    st_ = LineState::Cr;
  } else if (c == '\n') {
    bare('\n');
  } else {
    take_span(std::string_view(&c, 1));
  }
}

// The common case of a message body, whole CRLF lines that need nothing
// done to them, taken a run at a time: per line one memchr for the LF and
// one for a stray CR, and one append for the run. It stops short of anything
// step() must look at (a leading dot, a bare CR or LF, a line over the
// limit, the size limit, an incomplete line), so the events are the same as
// byte by byte. Only past the header section: the slow path tracks its end.
std::size_t Parser::plain_lines(std::size_t end, bool dots) {
  if (st_ != LineState::LineStart || in_header_ || error_ || binary_body()) return 0;
  const char* b = buf_.data();
  const std::uint64_t room = std::min<std::uint64_t>(kChunk - out_.size(), opt_.max_message - message_size_);
  const std::size_t stop = static_cast<std::size_t>(std::min<std::uint64_t>(end, pos_ + room));
  std::size_t p = pos_;
  while (p < stop && !(dots && b[p] == '.')) {
    const void* hit = std::memchr(b + p, '\n', stop - p);
    if (!hit) break;
    const std::size_t lf = static_cast<std::size_t>(static_cast<const char*>(hit) - b);
    if (lf == p || b[lf - 1] != '\r' || lf + 1 - p > opt_.max_line) break;
    if (std::memchr(b + p, '\r', lf - 1 - p)) break;
    p = lf + 1;
  }
  const std::size_t n = p - pos_;
  if (n == 0) return 0;
  out_.append(b + pos_, n);
  message_size_ += n;
  pos_ = p;
  return n;
}

void Parser::decode(std::size_t limit, bool dots) {
  const std::size_t end = pos_ + limit;
  while (pos_ < end && !done_ && out_.size() < kChunk) {
    if (plain_lines(end, dots) > 0) continue;
    if (st_ == LineState::Mid) {  // fast path: copy a run of line content at once
      const std::string_view rest(buf_.data() + pos_, std::min(end - pos_, kChunk - out_.size()));
      // Two memchr scans, not find_first_of (a set lookup per byte).
      std::size_t n = std::min(rest.find('\r'), rest.find('\n'));
      if (n == std::string_view::npos) n = rest.size();
      if (n > 0) {
        take_span(rest.substr(0, n));
        pos_ += n;
        continue;
      }
    }
    step(buf_[pos_++], dots);
  }
}

Event Parser::chunk_event() {
  Event ev;
  ev.kind = Event::Kind::DataChunk;
  ev.data = out_;
  return ev;
}

Event Parser::finish_body() {
  Event ev;
  const bool bdat = mode_ == Mode::Bdat;
  done_ = false;
  mode_ = Mode::Command;
  scan_ = pos_;
  skipping_ = false;
  if (bdat) {
    ev.last_chunk = bdat_last_;
    if (bdat_last_) bdat_open_ = false;
  }
  if (error_) {
    ev.kind = Event::Kind::DataError;
    ev.error = *error_;
  } else {
    ev.kind = bdat ? Event::Kind::BdatChunkEnd : Event::Kind::DataEnd;
  }
  return ev;
}

Event Parser::next_data() {
  if (done_) return finish_body();
  out_.clear();
  decode(buffered(), true);
  if (!out_.empty()) return chunk_event();
  if (done_) return finish_body();
  return {};
}

Event Parser::next_bdat() {
  if (done_) return finish_body();
  out_.clear();
  const std::size_t before = pos_;
  decode(static_cast<std::size_t>(std::min<std::uint64_t>(buffered(), bdat_left_)), false);
  bdat_left_ -= pos_ - before;
  if (bdat_left_ == 0) {
    if (bdat_last_ && st_ == LineState::Cr) {  // nothing can follow: the CR is bare
      bare('\r');
      st_ = LineState::Mid;
    }
    done_ = true;
  }
  if (!out_.empty()) return chunk_event();
  if (done_) return finish_body();
  return {};
}

}  // namespace moat::proto::smtp

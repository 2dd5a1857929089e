// See smtp_reply.hpp. Byte-at-a-time state machine; nothing here trusts the
// peer: every line and the reply as a whole are bounded.
#include "common/proto/smtp_reply.hpp"
#include "common/text.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace moat::proto::smtp {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// "x.y.z" with x in 2,4,5, y up to 3 digits, z up to 3 digits (RFC 3463 §2),
// followed by a space or the end. Returns its length, 0 if none.
std::size_t enhanced_len(std::string_view s, int klass) {
  if (s.size() < 5 || s[0] != char('0' + klass) || s[1] != '.') return 0;
  std::size_t i = 2, n = 0;
  while (i < s.size() && is_digit(s[i]) && n < 3) ++i, ++n;
  if (n == 0 || i >= s.size() || s[i] != '.') return 0;
  ++i;
  n = 0;
  while (i < s.size() && is_digit(s[i]) && n < 3) ++i, ++n;
  if (n == 0) return 0;
  if (i < s.size() && s[i] != ' ') return 0;
  return i;
}


}  // namespace

std::string Reply::str() const {
  std::string out = std::to_string(code);
  for (const auto& l : lines) {
    if (l.empty()) continue;
    out += ' ';
    out += l;
  }
  return out;
}

std::string Reply::dsn() const {
  if (!enhanced.empty()) return enhanced;
  switch (klass()) {
    case 2: case 3: return "2.0.0";
    case 4: return "4.0.0";
    default: return "5.0.0";
  }
}

void ReplyParser::reset() {
  state_ = State::NeedMore;
  line_.clear();
  line_bytes_ = 0;
  total_ = 0;
  cur_ = Reply{};
  err_ = Error{};
}

Reply ReplyParser::take() {
  Reply r = std::move(cur_);
  reset();
  return r;
}

ReplyParser::State ReplyParser::fail(Errc code, std::string detail) {
  err_ = Error{code, std::move(detail)};
  state_ = State::Error;
  return state_;
}

ReplyParser::State ReplyParser::feed(std::string_view& in) {
  if (state_ != State::NeedMore) return state_;
  while (!in.empty()) {
    char c = in.front();
    in.remove_prefix(1);
    ++line_bytes_;
    ++total_;
    if (line_bytes_ > lim_.line) return fail(Errc::LineTooLong, "reply line too long");
    if (total_ > lim_.total) return fail(Errc::LineTooLong, "reply too long");
    if (c == '\n') {
      // A CR before LF is dropped; LF alone is tolerated from servers (be
      // liberal in what a reply looks like, it never reaches another hop).
      if (!line_.empty() && line_.back() == '\r') line_.pop_back();
      if (finish_line() != State::NeedMore) return state_;
      continue;
    }
    line_ += c;
  }
  return state_;
}

ReplyParser::State ReplyParser::finish_line() {
  std::string_view l = line_;
  if (l.size() < 3 || !is_digit(l[0]) || !is_digit(l[1]) || !is_digit(l[2]) || l[0] < '2' || l[0] > '5' ||
      l[1] > '5')
    return fail(Errc::SyntaxError, "malformed reply code");
  int code = 0;
  std::from_chars(l.data(), l.data() + 3, code);
  bool last = true;
  if (l.size() > 3) {
    if (l[3] == '-') last = false;
    else if (l[3] != ' ') return fail(Errc::SyntaxError, "malformed reply separator");
  }
  if (cur_.code != 0 && cur_.code != code) return fail(Errc::SyntaxError, "reply code changed inside a multi-line reply");
  if (cur_.lines.size() >= lim_.max_lines) return fail(Errc::LineTooLong, "too many reply lines");
  std::string text(l.size() > 4 ? l.substr(4) : std::string_view{});
  for (auto& ch : text) {
    auto u = static_cast<unsigned char>(ch);
    if ((u < 0x20 && ch != '\t') || u == 0x7f) ch = '?';  // log and DSN safety
  }
  if (cur_.code == 0) {
    cur_.code = code;
    if (auto n = enhanced_len(text, code / 100)) cur_.enhanced = text.substr(0, n);
  }
  cur_.lines.push_back(std::move(text));
  line_.clear();
  line_bytes_ = 0;
  if (last) state_ = State::Complete;
  return state_;
}

Result<Reply> parse_reply(std::string_view text) {
  ReplyParser p;
  auto st = p.feed(text);
  if (st == ReplyParser::State::Error) return p.error();
  if (st != ReplyParser::State::Complete) return Error{Errc::SyntaxError, "incomplete reply"};
  if (!text.empty()) return Error{Errc::SyntaxError, "trailing bytes after reply"};
  return p.take();
}

Extensions parse_ehlo(const Reply& ehlo) {
  Extensions ext;
  ext.esmtp = ehlo.klass() == 2;
  for (std::size_t i = 1; i < ehlo.lines.size(); ++i) {
    std::string_view l = ehlo.lines[i];
    auto sp = l.find(' ');
    std::string kw = upper(l.substr(0, sp));
    std::string_view arg = sp == std::string_view::npos ? std::string_view{} : l.substr(sp + 1);
    if (kw == "PIPELINING") ext.pipelining = true;
    else if (kw == "8BITMIME") ext.eightbitmime = true;
    else if (kw == "SMTPUTF8") ext.smtputf8 = true;
    else if (kw == "DSN") ext.dsn = true;
    else if (kw == "STARTTLS") ext.starttls = true;
    else if (kw == "CHUNKING") ext.chunking = true;
    else if (kw == "ENHANCEDSTATUSCODES") ext.enhanced_status = true;
    else if (kw == "SIZE") {
      ext.size_offered = true;
      std::uint64_t n = 0;
      auto r = std::from_chars(arg.data(), arg.data() + arg.size(), n);
      ext.size = (r.ec == std::errc{} && r.ptr == arg.data() + arg.size()) ? n : 0;
    } else if (kw == "AUTH") {
      while (!arg.empty()) {
        auto e = arg.find(' ');
        auto mech = arg.substr(0, e);
        if (!mech.empty()) ext.auth.push_back(upper(mech));
        if (e == std::string_view::npos) break;
        arg.remove_prefix(e + 1);
      }
    }
  }
  return ext;
}

}  // namespace moat::proto::smtp

// See parser.hpp (RFC 9051 §4 data formats, §9 formal syntax; RFC 7888
// literals). Lines end at LF with an optional CR before it, as Dovecot
// accepts; a CR anywhere else is a control character and rejected.
#include "common/proto/imap/parser.hpp"

#include <algorithm>

namespace moat::proto::imap {
namespace {

char upper(char c) { return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c; }

// atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials.
// The list wildcards "%" and "*" and the resp-special "]" are accepted in
// atoms here (they are ASTRING-CHAR or list-mailbox characters, and "*" is
// a sequence-set character); the command handlers check their arguments.
bool atom_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7f) return false;
  return c != '(' && c != ')' && c != '{' && c != '"';
}

// Finds "{n}" or "{n+}" at the end of a segment.
bool trailing_literal(std::string_view seg, std::uint64_t& n, bool& sync) {
  if (seg.empty() || seg.back() != '}') return false;
  seg.remove_suffix(1);
  sync = true;
  if (!seg.empty() && seg.back() == '+') {
    sync = false;
    seg.remove_suffix(1);
  }
  const auto open = seg.rfind('{');
  if (open == std::string_view::npos) return false;
  const auto digits = seg.substr(open + 1);
  if (digits.empty() || digits.size() > 20) return false;
  std::uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    const auto d = std::uint64_t(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  n = v;
  return true;
}

}  // namespace

bool Arg::is_nil() const {
  return type == Type::Atom && text.size() == 3 && upper(text[0]) == 'N' && upper(text[1]) == 'I' &&
         upper(text[2]) == 'L';
}

bool valid_tag(std::string_view tag) {
  if (tag.empty()) return false;
  return std::all_of(tag.begin(), tag.end(), [](char c) { return atom_char(c) && c != '+' && c != '%' && c != '*'; });
}

Parser::Parser(ParserOptions options) : opt_(options) { reset_command(); }

void Parser::feed(std::string_view bytes) {
  compact();
  buf_.append(bytes);
}

void Parser::compact() {
  if (pos_ > 0 && (pos_ == buf_.size() || pos_ > 64 * 1024)) {
    buf_.erase(0, pos_);
    scan_ -= std::min(scan_, pos_);
    pos_ = 0;
  }
}

void Parser::discard_buffered() {
  buf_.clear();
  pos_ = scan_ = 0;
}

void Parser::reset_command() {
  in_command_ = false;
  have_tag_ = false;
  after_token_ = false;
  tag_.clear();
  name_.clear();
  stack_.clear();
  stack_.emplace_back();
  stack_.back().type = Arg::Type::List;
  line_total_ = 0;
  arg_count_ = 0;
  literal_left_ = 0;
  literal_.clear();
  literal8_ = false;
}

Event Parser::next() {
  for (;;) {
    const std::size_t before = pos_;
    const State state = state_;
    Event e = (state_ == State::Literal || state_ == State::DiscardLiteral) ? next_literal() : next_line();
    // Skipping produces no event; go on while it makes progress (bytes or
    // a state change: a skipped literal may be empty).
    if (e.kind != Event::Kind::NeedMore || (pos_ == before && state_ == state)) return e;
  }
}

Event Parser::fail(std::string text, bool fatal, Event::Reply reply) {
  Event e;
  e.kind = Event::Kind::Error;
  e.tag = have_tag_ ? tag_ : std::string();
  e.text = std::move(text);
  e.reply = reply;
  e.fatal = fatal;
  const std::uint64_t skip = literal_left_;  // set by the caller for a DiscardLiteral
  reset_command();
  if (state_ == State::DiscardLiteral) literal_left_ = skip;
  if (fatal) {
    // Nothing after this can be trusted to be a command boundary.
    discard_buffered();
    state_ = State::Discard;
  } else if (state_ != State::DiscardLiteral) {
    state_ = State::Line;
  }
  return e;
}

Event Parser::next_line() {
  const bool raw = raw_next_ && state_ == State::Line && !in_command_;
  const std::size_t limit = raw ? opt_.max_raw_line : opt_.max_line - std::min(opt_.max_line, line_total_);
  const auto lf = buf_.find('\n', std::max(scan_, pos_));
  if (lf == std::string::npos) {
    scan_ = buf_.size();
    if (!raw && buffered() > 0 && state_ == State::Line) in_command_ = true;
    if (buffered() >= limit) {
      if (raw) raw_next_ = false;
      return fail(raw ? "line too long" : "command line too long", true);
    }
    return Event{};
  }
  std::string_view seg(buf_.data() + pos_, lf - pos_);
  const std::size_t used = lf + 1 - pos_;
  pos_ = lf + 1;
  scan_ = pos_;
  if (!seg.empty() && seg.back() == '\r') seg.remove_suffix(1);
  if (used > limit) {
    if (raw) raw_next_ = false;
    return fail(raw ? "line too long" : "command line too long", true);
  }
  if (raw) {
    raw_next_ = false;
    Event e;
    e.kind = Event::Kind::RawLine;
    e.text.assign(seg);
    return e;
  }
  line_total_ += used;
  if (state_ == State::Discard) return discard_segment(seg);
  in_command_ = true;
  return handle_segment(seg);
}

Event Parser::discard_segment(std::string_view seg) {
  std::uint64_t n = 0;
  bool sync = true;
  if (trailing_literal(seg, n, sync) && !sync) {
    if (n > opt_.max_append) return fail("literal too big", true);
    state_ = State::DiscardLiteral;
    literal_left_ = n;
    return Event{};
  }
  state_ = State::Line;
  line_total_ = 0;
  return Event{};
}

Event Parser::next_literal() {
  const std::size_t take = std::size_t(std::min<std::uint64_t>(literal_left_, buffered()));
  if (state_ == State::Literal) literal_.append(buf_, pos_, take);
  pos_ += take;
  scan_ = pos_;
  literal_left_ -= take;
  if (literal_left_ > 0) return Event{};
  if (state_ == State::DiscardLiteral) {
    state_ = State::Discard;
    return Event{};
  }
  state_ = State::Line;
  Arg a;
  a.type = Arg::Type::Literal;
  a.text = std::move(literal_);
  a.literal8 = literal8_;
  literal_.clear();
  literal8_ = false;
  std::string err;
  if (!add_arg(std::move(a), err)) return fail(err);
  after_token_ = true;
  return next_line();
}

Event Parser::handle_segment(std::string_view seg) {
  std::string err;
  std::uint64_t lit = 0;
  bool sync = true;
  bool has_lit = false;
  if (!tokenise(seg, err, lit, sync, has_lit)) {
    // Skip the rest of the command: a non-synchronizing literal announced
    // at the end of this line is on its way and is not a command.
    std::uint64_t n = 0;
    bool s = true;
    if (trailing_literal(seg, n, s) && !s) {
      if (n > opt_.max_append) return fail("literal too big", true);
      state_ = State::DiscardLiteral;
      literal_left_ = n;
    }
    return fail(err);
  }
  if (!has_lit) return finish_command();

  // Limits before the continuation: APPEND's message (a top-level literal)
  // may be up to max_append, every other literal up to max_literal.
  const bool message = name_ == "APPEND" && stack_.size() == 1;
  const std::uint64_t limit = message ? opt_.max_append : opt_.max_literal;
  if (!sync && lit > opt_.max_nonsync && lit <= std::max(limit, opt_.max_nonsync)) {
    // LITERAL- (RFC 7888 §4): the bytes are on their way; skip them and
    // answer BAD [TOOBIG] so the client can retry with "{n}".
    state_ = State::DiscardLiteral;
    literal_left_ = lit;
    return fail("non-synchronizing literal over " + std::to_string(opt_.max_nonsync) + " bytes", false,
                Event::Reply::BadTooBig);
  }
  if (lit > limit) {
    if (!sync) return fail("literal too big", true);
    return fail(message ? "message too big" : "literal too big", false,
                message ? Event::Reply::TooBig : Event::Reply::Bad);
  }
  literal_left_ = lit;
  literal_.clear();
  literal_.reserve(std::size_t(lit));
  state_ = State::Literal;
  if (sync) {
    Event e;
    e.kind = Event::Kind::Continue;
    return e;
  }
  return next_literal();
}

Event Parser::finish_command() {
  Event e;
  e.kind = Event::Kind::Command;
  e.command.tag = std::move(tag_);
  e.command.name = std::move(name_);
  e.command.args = std::move(stack_.front().list);
  reset_command();
  state_ = State::Line;
  return e;
}

bool Parser::add_arg(Arg a, std::string& err) {
  if (++arg_count_ > opt_.max_args) {
    err = "too many arguments";
    return false;
  }
  stack_.back().list.push_back(std::move(a));
  return true;
}

bool Parser::tokenise(std::string_view seg, std::string& err, std::uint64_t& lit, bool& sync, bool& has_lit) {
  std::size_t i = 0;
  const std::size_t n = seg.size();
  if (!have_tag_) {
    const auto sp = seg.find(' ');
    tag_.assign(seg.substr(0, sp));
    if (!valid_tag(tag_)) {
      tag_.clear();
      err = seg.empty() ? "empty line" : "bad tag";
      return false;
    }
    have_tag_ = true;
    if (sp == std::string_view::npos) {
      err = "missing command";
      return false;
    }
    i = sp + 1;
    const auto end = std::min(seg.find(' ', i), n);
    const auto name = seg.substr(i, end - i);
    if (name.empty() || name.size() > 64 ||
        !std::all_of(name.begin(), name.end(), [](char c) { return atom_char(c) && c != '[' && c != ']'; })) {
      err = "bad command name";
      return false;
    }
    name_.clear();
    for (char c : name) name_.push_back(upper(c));
    i = end;
    after_token_ = true;
  }
  while (i < n) {
    const char c = seg[i];
    if (c == ' ') {
      if (!after_token_) {
        err = "unexpected space";
        return false;
      }
      after_token_ = false;
      ++i;
      continue;
    }
    // ")(" is how lists of lists are written (env-from, body-type-mpart)
    if (after_token_ && c != ')' && !(c == '(' && i > 0 && seg[i - 1] == ')')) {
      err = "expected space";
      return false;
    }
    if (c == '(') {
      if (stack_.size() > opt_.max_depth) {
        err = "too deeply nested";
        return false;
      }
      stack_.emplace_back();
      stack_.back().type = Arg::Type::List;
      after_token_ = false;
      ++i;
      continue;
    }
    if (c == ')') {
      if (stack_.size() == 1) {
        err = "unbalanced parenthesis";
        return false;
      }
      Arg list = std::move(stack_.back());
      stack_.pop_back();
      if (!add_arg(std::move(list), err)) return false;
      after_token_ = true;
      ++i;
      continue;
    }
    if (c == '"') {
      Arg a;
      a.type = Arg::Type::Quoted;
      ++i;
      bool closed = false;
      while (i < n) {
        char q = seg[i++];
        if (q == '"') {
          closed = true;
          break;
        }
        if (q == '\\') {
          if (i >= n || (seg[i] != '\\' && seg[i] != '"')) {
            err = "bad escape in quoted string";
            return false;
          }
          q = seg[i++];
        } else if (q == '\0' || q == '\r' || q == '\n') {
          err = "control character in quoted string";
          return false;
        }
        a.text.push_back(q);
      }
      if (!closed) {
        err = "unterminated quoted string";
        return false;
      }
      if (!add_arg(std::move(a), err)) return false;
      after_token_ = true;
      continue;
    }
    if (c == '{' || (c == '~' && i + 1 < n && seg[i + 1] == '{')) {
      // literal8 (RFC 3516 §4.1): only APPEND's message may be binary
      if (c == '~' && !(name_ == "APPEND" && stack_.size() == 1)) {
        err = "literal8 is only for the APPEND message";
        return false;
      }
      if (!trailing_literal(seg.substr(i), lit, sync) || seg.find('}', i) != n - 1 ||
          (c == '~' && seg.rfind('{') != i + 1)) {
        err = "bad literal";
        return false;
      }
      literal8_ = c == '~';
      has_lit = true;
      return true;
    }
    // atom, with "[...]" sections (BODY[HEADER.FIELDS (From)]<0.10>) kept whole
    Arg a;
    std::size_t j = i;
    std::size_t bracket = 0;
    for (; j < n; ++j) {
      const char ch = seg[j];
      const auto u = static_cast<unsigned char>(ch);
      if (bracket > 0) {
        if (u < 0x20 || u >= 0x7f) {
          err = "bad character in section";
          return false;
        }
        if (ch == ']') --bracket;
        else if (ch == '[' && ++bracket > opt_.max_depth) {
          err = "too deeply nested";
          return false;
        }
        continue;
      }
      if (ch == ' ' || ch == '(' || ch == ')' || ch == '"' || ch == '{') break;
      if (!atom_char(ch)) {
        err = "bad character in atom";
        return false;
      }
      if (ch == '[') ++bracket;
    }
    if (bracket > 0) {
      err = "unbalanced bracket";
      return false;
    }
    a.text.assign(seg.substr(i, j - i));
    if (!add_arg(std::move(a), err)) return false;
    after_token_ = true;
    i = j;
  }
  if (stack_.size() > 1) {
    err = "unbalanced parenthesis";
    return false;
  }
  return true;
}

}  // namespace moat::proto::imap

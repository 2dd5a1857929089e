// See parser.hpp (RFC 1939, RFC 2449 §4, RFC 2595 §4, RFC 5034).
#include "common/proto/pop3/parser.hpp"

#include <algorithm>
#include <array>

namespace moat::proto::pop3 {
namespace {

struct VerbInfo {
  Verb verb;
  std::string_view name;
  std::size_t min_args;
  std::size_t max_args;
};
constexpr std::array kVerbs{
    VerbInfo{Verb::User, "USER", 1, 1}, VerbInfo{Verb::Pass, "PASS", 1, 1}, VerbInfo{Verb::Stat, "STAT", 0, 0},
    VerbInfo{Verb::List, "LIST", 0, 1}, VerbInfo{Verb::Retr, "RETR", 1, 1}, VerbInfo{Verb::Dele, "DELE", 1, 1},
    VerbInfo{Verb::Noop, "NOOP", 0, 0}, VerbInfo{Verb::Rset, "RSET", 0, 0}, VerbInfo{Verb::Quit, "QUIT", 0, 0},
    VerbInfo{Verb::Top, "TOP", 2, 2},   VerbInfo{Verb::Uidl, "UIDL", 0, 1}, VerbInfo{Verb::Capa, "CAPA", 0, 0},
    VerbInfo{Verb::Stls, "STLS", 0, 0}, VerbInfo{Verb::Auth, "AUTH", 0, 2},
};

char upper(char c) { return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c; }

Error perr(std::string d) { return Error{Errc::ParamSyntax, std::move(d)}; }

}  // namespace

std::string_view verb_name(Verb v) {
  for (const auto& i : kVerbs)
    if (i.verb == v) return i.name;
  return "UNKNOWN";
}

std::optional<std::uint32_t> parse_number(std::string_view s, bool allow_zero) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + std::uint64_t(c - '0');
  }
  if (v > UINT32_MAX || (v == 0 && !allow_zero)) return std::nullopt;
  return std::uint32_t(v);
}

Result<Command> parse_command(std::string_view line) {
  if (line.size() + 2 > kMaxLine) return Error{Errc::LineTooLong, "line too long"};
  for (char c : line)
    if (c == '\0' || c == '\r' || c == '\n') return Error{Errc::SyntaxError, "control character"};
  if (line.empty()) return Error{Errc::SyntaxError, "empty line"};
  const auto sp = line.find(' ');
  const auto word = line.substr(0, sp);
  std::string up;
  for (char c : word) up.push_back(upper(c));
  const auto it = std::find_if(kVerbs.begin(), kVerbs.end(), [&](const VerbInfo& i) { return i.name == up; });
  if (it == kVerbs.end()) return Error{Errc::UnknownCommand, "unknown command"};
  Command cmd;
  cmd.verb = it->verb;
  std::string_view rest = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  if (cmd.verb == Verb::Pass) {
    // RFC 1939 §7: the password may contain spaces; it is the rest of the line.
    if (rest.empty()) return perr("missing password");
    cmd.args.emplace_back(rest);
    return cmd;
  }
  while (!rest.empty()) {
    const auto s = rest.find(' ');
    const auto arg = rest.substr(0, s);
    if (arg.empty()) return perr("empty argument");
    // AUTH's initial response may be longer (RFC 5034 §4); the line limit still holds.
    if (arg.size() > kMaxArg && !(cmd.verb == Verb::Auth && cmd.args.size() == 1)) return perr("argument too long");
    cmd.args.emplace_back(arg);
    if (s == std::string_view::npos) break;
    rest.remove_prefix(s + 1);
    if (rest.empty()) return perr("trailing space");
  }
  if (cmd.args.size() < it->min_args || cmd.args.size() > it->max_args) return perr("wrong number of arguments");
  switch (cmd.verb) {
    case Verb::List:
    case Verb::Uidl:
    case Verb::Retr:
    case Verb::Dele:
      if (!cmd.args.empty() && !parse_number(cmd.args[0])) return perr("bad message number");
      break;
    case Verb::Top:
      if (!parse_number(cmd.args[0]) || !parse_number(cmd.args[1], true)) return perr("bad TOP arguments");
      break;
    default: break;
  }
  return cmd;
}

void Parser::feed(std::string_view bytes) {
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = scan_ = 0;
  } else if (pos_ > 4096) {
    buf_.erase(0, pos_);
    scan_ -= pos_;
    pos_ = 0;
  }
  buf_.append(bytes);
}

void Parser::discard_buffered() {
  buf_.clear();
  pos_ = scan_ = 0;
  skipping_ = false;
}

Event Parser::next() {
  const std::size_t limit = raw_next_ ? kMaxAuthLine : kMaxLine;
  for (;;) {
    const auto lf = buf_.find('\n', std::max(scan_, pos_));
    if (skipping_) {
      // Discard the tail of an overlong line without buffering it.
      if (lf == std::string::npos) {
        pos_ = scan_ = buf_.size();
        return Event{};
      }
      pos_ = scan_ = lf + 1;
      skipping_ = false;
      continue;
    }
    if (lf == std::string::npos) {
      scan_ = buf_.size();
      if (buffered() >= limit) {
        skipping_ = true;
        pos_ = scan_ = buf_.size();
        raw_next_ = false;
        Event e;
        e.kind = Event::Kind::Error;
        e.error = Error{Errc::LineTooLong, "line too long"};
        return e;
      }
      return Event{};
    }
    std::string_view line(buf_.data() + pos_, lf - pos_);
    const std::size_t used = lf + 1 - pos_;
    pos_ = scan_ = lf + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    Event e;
    if (used > limit) {
      raw_next_ = false;
      e.kind = Event::Kind::Error;
      e.error = Error{Errc::LineTooLong, "line too long"};
      return e;
    }
    if (raw_next_) {
      raw_next_ = false;
      e.kind = Event::Kind::RawLine;
      e.line.assign(line);
      return e;
    }
    auto r = parse_command(line);
    if (!r) {
      e.kind = Event::Kind::Error;
      e.error = r.error();
      return e;
    }
    e.kind = Event::Kind::Command;
    e.command = std::move(*r);
    return e;
  }
}

}  // namespace moat::proto::pop3

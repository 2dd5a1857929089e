// Sans-I/O POP3 command parser, server side (RFC 1939 §3-§7, RFC 2449 CAPA
// and its line limits, RFC 2595 STLS, RFC 5034 AUTH). APOP is deliberately
// not a verb (SECURITY.md: no APOP). The session feeds bytes and pulls
// commands; nothing here does I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace moat::proto::pop3 {

enum class Verb : std::uint8_t { User, Pass, Stat, List, Retr, Dele, Noop, Rset, Quit, Top, Uidl, Capa, Stls, Auth, Unknown };

std::string_view verb_name(Verb v);

inline constexpr std::size_t kMaxLine = 255;      // RFC 2449 §4: a command line, CRLF included
inline constexpr std::size_t kMaxArg = 40;        // RFC 2449 §4: one argument
inline constexpr std::size_t kMaxAuthLine = 8192; // RFC 5034 §4: SASL responses are not bound by 255

struct Command {
  Verb verb = Verb::Unknown;
  std::vector<std::string> args;  // split at single spaces (PASS: one argument, the rest of the line)
};

// Parses one line without its CRLF. Errors: SyntaxError (empty line,
// control bytes), UnknownCommand, ParamSyntax (argument count, length or
// form for the verb: numbers must be 1..2^32-1 message numbers, TOP's line
// count 0..2^32-1).
Result<Command> parse_command(std::string_view line);

// A message number or TOP line count argument, strictly decimal.
std::optional<std::uint32_t> parse_number(std::string_view s, bool allow_zero = false);

struct Event {
  enum class Kind : std::uint8_t { NeedMore, Command, Error, RawLine };
  Kind kind = Kind::NeedMore;
  Command command;
  Error error;
  std::string line;  // RawLine
};

class Parser {
 public:
  void feed(std::string_view bytes);
  // One command (or error) per CRLF-terminated line. A line over kMaxLine
  // gives Error{LineTooLong} as soon as that is known, and the rest of it is
  // discarded unbuffered. A bare CR or LF is accepted as the line end only
  // in the form CRLF or LF (lenient like most servers); NUL is an error.
  Event next();
  // The next line is an AUTH continuation: returned raw, limit kMaxAuthLine.
  void expect_raw_line() { raw_next_ = true; }
  // STLS: drop plaintext pipelined behind the command.
  void discard_buffered();
  std::size_t buffered() const { return buf_.size() - pos_; }
  bool between_commands() const { return !skipping_ && buffered() == 0; }

 private:
  std::string buf_;
  std::size_t pos_ = 0;
  std::size_t scan_ = 0;
  bool skipping_ = false;
  bool raw_next_ = false;
};

}  // namespace moat::proto::pop3

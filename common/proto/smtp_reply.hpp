// Sans-I/O parser for SMTP server replies as the client sees them (RFC 5321
// §4.2 multi-line replies, RFC 3463/2034 enhanced status codes) and the EHLO
// keyword list (RFC 1870 SIZE, 2920, 6152, 6531, 3461, 3207, 3030).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace moat::proto::smtp {

struct Reply {
  int code = 0;                     // 200..599
  std::string enhanced;             // "5.1.1" when the first line carries one, else empty
  std::vector<std::string> lines;   // text after "NNN-"/"NNN ", control bytes replaced by '?'

  int klass() const { return code / 100; }
  bool positive() const { return klass() == 2 || klass() == 3; }
  bool transient() const { return klass() == 4; }
  bool permanent() const { return klass() == 5; }
  // "550 5.1.1 text of line one text of line two": one line, for logs and DSNs.
  std::string str() const;
  // enhanced, or "2.0.0"/"4.0.0"/"5.0.0" from the reply class.
  std::string dsn() const;
};

// Feed bytes in any split; feed() stops right after each complete reply so a
// client reading pipelined replies takes them one at a time.
//
//   NeedMore ──(line "NNN-")──▶ NeedMore ──(line "NNN " / "NNN")──▶ Complete
//        └──(bad code, mismatch, over a limit)──▶ Error (terminal)
class ReplyParser {
 public:
  enum class State { NeedMore, Complete, Error };
  struct Limits {
    std::size_t line = 2048;        // CRLF included, as Postfix's line_length_limit
    std::size_t total = 64 * 1024;  // all lines of one reply
    std::size_t max_lines = 1000;
  };

  ReplyParser() = default;
  explicit ReplyParser(Limits lim) : lim_(lim) {}

  // Consumes from the front of `in`. Complete: take() the reply, then feed the
  // rest. Error: error() says why; the connection cannot be trusted further.
  State feed(std::string_view& in);
  Reply take();                       // resets for the next reply
  const Error& error() const { return err_; }
  State state() const { return state_; }
  // Drops partial input (after STARTTLS nothing from before may survive).
  void reset();

 private:
  State finish_line();
  State fail(Errc code, std::string detail);

  Limits lim_{};
  State state_ = State::NeedMore;
  std::string line_;        // current line without CR/LF
  std::size_t line_bytes_ = 0;
  std::size_t total_ = 0;
  Reply cur_;
  Error err_{};
};

// Parses one complete reply from a string (tests, callers with a whole buffer).
Result<Reply> parse_reply(std::string_view text);

// The EHLO keyword list (RFC 5321 §4.1.1.1: one keyword per line after the
// greeting line, keywords case-insensitive).
struct Extensions {
  bool esmtp = false;              // EHLO accepted (false after a HELO fallback)
  bool pipelining = false;
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool dsn = false;
  bool starttls = false;
  bool chunking = false;
  bool enhanced_status = false;
  bool size_offered = false;
  std::uint64_t size = 0;          // SIZE limit; 0 = no fixed limit (RFC 1870 §4)
  std::vector<std::string> auth;   // AUTH mechanisms, upper-cased
};
Extensions parse_ehlo(const Reply& ehlo);

}  // namespace moat::proto::smtp

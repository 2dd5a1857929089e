// Sans-I/O IMAP command parser, server side: tagged command lines with
// atoms, quoted strings, literals and parenthesised lists (RFC 9051 §4, §9;
// RFC 3501 §9), synchronizing and non-synchronizing literals (RFC 7888
// LITERAL-: non-synchronizing ones up to 4096 bytes), and literal8 ("~{n}",
// RFC 3516 §4.1, RFC 9051 APPEND) for APPEND's message only. Limits are
// checked before any continuation is sent.
// The session feeds bytes in and pulls events out; nothing here does I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moat::proto::imap {

// One parsed argument. The command name is not an argument; "UID FETCH" has
// name "UID" and "FETCH" as its first argument.
struct Arg {
  enum class Type : std::uint8_t { Atom, Quoted, Literal, List };
  Type type = Type::Atom;
  std::string text;       // Atom / Quoted (unescaped) / Literal bytes
  std::vector<Arg> list;  // List
  bool literal8 = false;  // Literal written "~{n}" (may hold NUL; APPEND's message only)

  bool is_list() const { return type == Type::List; }
  bool is_string() const { return type == Type::Quoted || type == Type::Literal; }
  // astring = 1*ASTRING-CHAR / string. Atoms are checked by the parser.
  bool is_astring() const { return !is_list(); }
  // The atom NIL (any case); "NIL" quoted is a string.
  bool is_nil() const;
};

struct Command {
  std::string tag;
  std::string name;        // upper-cased command name
  std::vector<Arg> args;
};

struct ParserOptions {
  std::size_t max_line = 64 * 1024;           // one command outside its literals, line ends included (Dovecot imap_max_line_length)
  std::uint64_t max_literal = 64 * 1024;      // any literal except APPEND's message
  std::uint64_t max_append = 10 * 1024 * 1024;// APPEND message literal (APPENDLIMIT)
  std::size_t max_depth = 32;                 // parenthesis nesting (SEARCH, FETCH, APPEND flags)
  std::size_t max_args = 10000;               // arguments in one command, nested ones included
  std::size_t max_raw_line = 16 * 1024;       // AUTHENTICATE responses and IDLE's DONE
  std::uint64_t max_nonsync = 4096;           // "{n+}" literals (RFC 7888 §4 LITERAL-); larger: BAD [TOOBIG]
};

struct Event {
  enum class Kind : std::uint8_t {
    NeedMore,   // nothing complete buffered
    Continue,   // a synchronizing literal was accepted: send "+ ..." now
    Command,    // one complete command
    Error,      // the command was rejected and skipped
    RawLine,    // after expect_raw_line(): the line without its CRLF
  };
  // Error: "tag BAD" / "tag NO [TOOBIG]" (APPEND over the size limit) /
  // "tag BAD [TOOBIG]" (a non-synchronizing literal over 4096 bytes, RFC 7888 §4)
  enum class Reply : std::uint8_t { Bad, TooBig, BadTooBig };
  Kind kind = Kind::NeedMore;
  Command command;     // Command
  std::string tag;     // Error: the tag if one was read, else "" (reply "* BAD")
  std::string text;    // Error: the reason; RawLine: the line
  Reply reply = Reply::Bad;
  // Error: the stream cannot be resynchronised (a line over max_line, a
  // non-synchronizing literal over its limit); answer "* BYE" and close.
  bool fatal = false;
};

// Parser state, per command:
//
//   Line --CRLF--> tokenise segment --complete--> Command
//     ^                |   |
//     |                |   +--ends "{n}"  (n <= limit)--> Continue, Literal
//     |                |   +--ends "{n+}" (n <= limit)-----------> Literal
//     |                +--error--> Error; Discard (skips the rest of the
//     |                            command and its non-sync literals)
//     +----- literal bytes complete <-- Literal
//
// A literal over its limit is refused before any continuation ("{n}") or
// is fatal ("{n+}": the client sends it anyway and it cannot be skipped
// safely without reading it). A "{n+}" over max_nonsync but within what
// may be skipped (max_append) is read and dropped, and the command gets
// BAD [TOOBIG] (LITERAL-).
class Parser {
 public:
  explicit Parser(ParserOptions options = {});

  // Appends to the buffer. Memory stays bounded (max_line plus the literal
  // limits) as long as the caller drains next() until NeedMore in between.
  void feed(std::string_view bytes);
  Event next();

  // The next complete line is handed over raw (AUTHENTICATE responses, IDLE
  // DONE). Lines end at LF; a CR before it is dropped.
  void expect_raw_line() { raw_next_ = true; }
  // STARTTLS: plaintext pipelined after the command must not survive the
  // handshake (CVE-2011-0411 class).
  void discard_buffered();

  std::size_t buffered() const { return buf_.size() - pos_; }
  // No byte of a command has arrived (the session starts its per-command
  // deadline only when one has).
  bool between_commands() const { return state_ == State::Line && !in_command_ && buffered() == 0; }

 private:
  enum class State : std::uint8_t { Line, Literal, Discard, DiscardLiteral };

  Event next_line();
  Event next_literal();
  Event handle_segment(std::string_view seg);
  Event finish_command();
  Event fail(std::string text, bool fatal = false, Event::Reply reply = Event::Reply::Bad);
  Event discard_segment(std::string_view seg);
  bool tokenise(std::string_view seg, std::string& err, std::uint64_t& lit, bool& lit_sync, bool& has_lit);
  bool add_arg(Arg a, std::string& err);
  void reset_command();
  void compact();

  ParserOptions opt_;
  std::string buf_;
  std::size_t pos_ = 0;
  std::size_t scan_ = 0;          // bytes of the current line already searched for LF
  State state_ = State::Line;
  bool raw_next_ = false;

  // the command being assembled
  bool in_command_ = false;
  bool have_tag_ = false;
  bool after_token_ = false;      // the last item was a token: SP, ")" or end must follow
  std::string tag_;
  std::string name_;
  std::vector<Arg> stack_;        // stack_[0] is the argument list, the rest open "("
  std::size_t line_total_ = 0;    // non-literal bytes of this command
  std::size_t arg_count_ = 0;
  std::uint64_t literal_left_ = 0;
  std::string literal_;
  bool literal8_ = false;         // the literal being read was announced "~{n}"

};

// Validates an atom used as a tag: 1*<ASTRING-CHAR except "+">.
bool valid_tag(std::string_view tag);

}  // namespace moat::proto::imap

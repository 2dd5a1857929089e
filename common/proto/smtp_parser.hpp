// Sans-I/O SMTP server-side parser: command lines (RFC 5321 §4.1, RFC 1869
// ESMTP parameters, RFC 3030 BDAT, RFC 3461 DSN, RFC 6152/6531/1870/4954
// MAIL parameters) and the DATA/BDAT decoder that enforces the SECURITY.md
// limits and closes SMTP smuggling (CVE-2023-51764): only CRLF.CRLF ends DATA.
// The session feeds bytes in and pulls events out; nothing here does I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.hpp"
#include "common/envelope.hpp"
#include "common/error.hpp"

namespace moat::proto::smtp {

enum class Verb { Helo, Ehlo, Mail, Rcpt, Data, Bdat, Rset, Noop, Quit, Vrfy, Expn, Help, StartTls, Auth, Unknown };

std::string_view verb_name(Verb v);           // "MAIL", ...; "UNKNOWN"
Verb verb_from(std::string_view word);        // case-insensitive; Unknown if not a verb

struct Param {
  std::string keyword;  // upper-cased
  std::string value;
  bool has_value = false;
};

struct Command {
  Verb verb = Verb::Unknown;
  std::string argument;          // text after the verb and one space; trimmed of trailing blanks for HELO/EHLO/AUTH/VRFY/EXPN
  std::string path;              // MAIL/RCPT: the address between < >, exactly as sent (empty for <>)
  std::vector<Param> params;     // MAIL/RCPT ESMTP parameters, in order; duplicates are a syntax error
  std::uint64_t bdat_size = 0;
  bool bdat_last = false;        // BDAT
};

// Parses one command line (without CRLF). max_line counts the CRLF, as
// Limits::line_length does. Errors: LineTooLong; SyntaxError (control bytes,
// NUL); UnknownCommand (verb unknown); ParamSyntax (bad arguments for a known
// verb: missing/extra arguments, MAIL FROM/RCPT TO form, <> in RCPT, bad
// parameter syntax or duplicates, bad BDAT size).
Result<Command> parse_command(std::string_view line, std::size_t max_line = 2048);

// Typed MAIL FROM parameters. Unknown keywords give Errc::NotImplemented
// (the session may first drop ones it offers itself); bad values ParamSyntax.
struct MailParams {
  std::optional<std::uint64_t> size;     // RFC 1870 SIZE
  BodyType body = BodyType::SevenBit;    // RFC 6152 / RFC 3030 BODY
  bool body_given = false;
  bool smtputf8 = false;                 // RFC 6531
  DsnRet ret = DsnRet::Default;          // RFC 3461 RET
  std::string envid;                     // RFC 3461 ENVID, xtext as received (<= 100 bytes)
  std::optional<std::string> auth;       // RFC 4954 AUTH=, xtext-decoded ("<>" kept as is)
};
Result<MailParams> parse_mail_params(const std::vector<Param>& params);

struct RcptParams {
  DsnNotify notify = DsnNotify::Default; // RFC 3461 NOTIFY
  std::string orcpt;                     // ORCPT value as received ("rfc822;a+2Bb@x"), empty if none
  std::string orcpt_type;                // lower-cased addr-type ("rfc822", "utf-8")
  std::string orcpt_address;             // xtext-decoded address
};
Result<RcptParams> parse_rcpt_params(const std::vector<Param>& params);

struct ParserOptions {
  std::size_t max_line = 2048;             // command and DATA lines, CRLF included
  std::size_t max_header = 100 * 1024;     // header section of a message
  std::uint64_t max_message = 10 * 1024 * 1024;
  config::BareLinePolicy bare_line = config::BareLinePolicy::Reject;
};

struct Event {
  enum class Kind { NeedMore, Command, CommandError, DataChunk, DataEnd, DataError, BdatChunkEnd };
  Kind kind = Kind::NeedMore;
  Command command;          // Command; for CommandError, command.verb is set when the verb was recognised
  Error error;              // CommandError / DataError (Errc + detail)
  std::string_view data;    // DataChunk: decoded bytes (dot-unstuffed, CRLF line ends), valid until the next call
  bool last_chunk = false;  // BdatChunkEnd / DataError in BDAT mode: the chunk was BDAT ... LAST
};

// State machine of the DATA decoder (the BDAT decoder uses Mid and Cr only;
// dots are not special there). "real CRLF" is CR immediately followed by LF.
//
//              '.'              CR                LF
//  LineStart ------> Dot -----------> DotCr -----------> end of DATA
//     |  ^            | other: drop '.'  | other: '.' is data, the CR is bare
//     |  | real CRLF  v                  v
//     +--+-------- Mid <----------------+
//        |          | CR         bare LF: reject/normalize, stay Mid
//        +-- Cr <---+
//            other after CR: bare CR (reject/normalize), back to Mid
//
// Bare CR/LF never lead to LineStart, so LF.LF, LF.CRLF, CR.CR and CRLF.LF
// cannot end DATA whatever the policy.
class Parser {
 public:
  explicit Parser(ParserOptions options);

  // Appends to the internal buffer. Memory stays bounded as long as the
  // caller drains next() until NeedMore before feeding again.
  void feed(std::string_view bytes);
  // One event at a time; NeedMore when the buffer holds no complete unit.
  //
  // Command mode: Command or CommandError per CRLF-terminated line. A bare
  // LF, bare CR or NUL gives CommandError{SyntaxError} as soon as it is seen,
  // and a line over max_line CommandError{LineTooLong} as soon as it is
  // known to be too long; either way the rest of that line, up to the next
  // CRLF, is discarded unbuffered. (Postfix answers a bare LF with 521 and
  // hangs up; the session may do the same on detail "bare LF".)
  //
  // DATA mode (after start_data()): DataChunk* then DataEnd or DataError.
  // Errors (BareLineEnding with Reject, MessageTooLarge, HeaderTooLarge,
  // LineTooLong; the first one wins) stop the chunks but the data is
  // swallowed up to CRLF.CRLF and only then reported, so the client's
  // reply lines stay in step. Afterwards the parser is in command mode and
  // bytes after the terminator stay buffered.
  //
  // BDAT mode (after start_bdat()): DataChunk* then BdatChunkEnd, or
  // DataError instead of BdatChunkEnd. Design choice: an error is reported
  // at the end of the chunk in which it is found (the earliest point where
  // the session can answer that BDAT), and every later chunk of the same
  // message also ends in DataError until reset_message() or a new message.
  // A chunk that would take the message over max_message is flagged before
  // any of its bytes are emitted. A CR at the end of a chunk pairs with an
  // LF at the start of the next; at the end of the LAST chunk it is bare.
  Event next();

  std::size_t buffered() const { return buf_.size() - pos_; }
  // No part of a command line has been received (the session starts the
  // per-command deadline only then, so a byte-a-second client cannot
  // stretch it).
  bool between_commands() const { return mode_ == Mode::Command && !skipping_ && buffered() == 0; }
  void discard_buffered();
  // The next complete line is returned unparsed as a Command with verb
  // Unknown and the whole line in `argument` (AUTH continuation lines).
  // Framing checks (bare CR/LF, NUL, length) still apply.
  void expect_raw_line() { raw_next_ = true; }

  void start_data();                               // after 354; starts a new message
  void start_bdat(std::uint64_t size, bool last);  // the next `size` bytes are raw chunk content
  void reset_message();                            // RSET / new transaction
  std::uint64_t message_size() const { return message_size_; }
  std::size_t header_size() const { return header_size_; }

  // BODY=BINARYMIME (RFC 3030): bare CR/LF are data and lines have no
  // length limit in BDAT chunks. Reset by reset_message().
  void set_binary(bool binary) { binary_ = binary; }

  enum class Mode { Command, Data, Bdat };
  Mode mode() const { return mode_; }

 private:
  enum class LineState : std::uint8_t { LineStart, Dot, DotCr, Mid, Cr };

  Event next_command();
  Event next_data();
  Event next_bdat();
  Event finish_body();
  Event chunk_event();
  void new_message();          // counters and error to zero, a fresh line state
  bool binary_body() const;
  Event command_error(Errc code, std::string detail, std::size_t resume);
  void decode(std::size_t limit, bool dots);   // consumes up to `limit` input bytes
  std::size_t plain_lines(std::size_t end, bool dots);
  void step(char c, bool dots);
  void take_span(std::string_view span);       // line content without CR/LF
  void add_wire(std::size_t n);
  void emit(std::string_view bytes);
  void line_end();
  void bare(char c);
  void set_error(Errc code, std::string detail);
  void compact();

  ParserOptions opt_;
  std::string buf_;
  std::size_t pos_ = 0;      // first unconsumed byte of buf_
  std::size_t scan_ = 0;     // command mode: bytes before this in the current line are checked
  bool skipping_ = false;    // command mode: discarding the rest of a bad line
  bool raw_next_ = false;    // command mode: hand the next line over unparsed
  Mode mode_ = Mode::Command;

  // message state (DATA, or all BDAT chunks of one message)
  std::string out_;
  LineState st_ = LineState::LineStart;
  bool done_ = false;          // terminator seen / chunk consumed; end event pending
  bool binary_ = false;
  bool in_header_ = true;
  bool bdat_open_ = false;     // a BDAT message has started and not seen LAST
  bool bdat_last_ = false;
  std::uint64_t bdat_left_ = 0;
  std::size_t line_len_ = 0;   // wire bytes of the current line, line ending excluded
  std::size_t header_size_ = 0;
  std::uint64_t message_size_ = 0;
  std::optional<Error> error_;
};

}  // namespace moat::proto::smtp

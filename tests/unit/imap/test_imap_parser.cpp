// Streaming tests of imap::Parser: arguments, literals (RFC 7888), limits
// checked before the continuation, nesting and resynchronisation after
// errors; every input fed whole, byte by byte and at odd split points.
#include <catch2/catch.hpp>

#include "tests/unit/imap/imap_drive.hpp"

using namespace moat::proto::imap;
using moat::proto::imap::test::drive;
using moat::proto::imap::test::drive_all_splits;
using moat::proto::imap::test::Evs;
using namespace std::string_view_literals;
using namespace std::string_literals;

TEST_CASE("simple commands, names upper-cased, CRLF or LF", "[imap]") {
  CHECK(drive_all_splits("a1 noop\r\nA2 CAPABILITY\nx LOGOUT\r\n") ==
        Evs{"CMD a1 NOOP", "CMD A2 CAPABILITY", "CMD x LOGOUT"});
}

TEST_CASE("atoms, quoted strings, NIL and lists", "[imap]") {
  CHECK(drive_all_splits("t LOGIN \"us\\\"er\" \"p\\\\w d\"\r\n") == Evs{"CMD t LOGIN \"us\"er\" \"p\\w d\""});
  CHECK(drive_all_splits("t STORE 1:*,5 +FLAGS.SILENT (\\Seen $Junk)\r\n") ==
        Evs{"CMD t STORE 1:*,5 +FLAGS.SILENT (\\Seen $Junk)"});
  CHECK(drive_all_splits("t LIST \"\" %\r\n") == Evs{"CMD t LIST \"\" %"});
  CHECK(drive_all_splits("t X ((a)(b))(c)\r\n") == Evs{"CMD t X ((a) (b)) (c)"});
  const auto e = drive_all_splits("t SEARCH (OR (FROM a) (TO b)) ()\r\n");
  CHECK(e == Evs{"CMD t SEARCH (OR (FROM a) (TO b)) ()"});
  Parser p;
  p.feed("t X nil NIL \"NIL\"\r\n");
  auto ev = p.next();
  REQUIRE(ev.kind == Event::Kind::Command);
  CHECK(ev.command.args[0].is_nil());
  CHECK(ev.command.args[1].is_nil());
  CHECK_FALSE(ev.command.args[2].is_nil());
}

TEST_CASE("FETCH sections keep their brackets, spaces and partials", "[imap]") {
  CHECK(drive_all_splits("f UID FETCH 1:3 (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100> BODY[1.2.MIME])\r\n") ==
        Evs{"CMD f UID FETCH 1:3 (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100> BODY[1.2.MIME])"});
  CHECK(drive_all_splits("f FETCH 1 BODY[\r\n") == Evs{"ERR f BAD"});
}

TEST_CASE("synchronizing literal: continuation, then the bytes", "[imap]") {
  CHECK(drive_all_splits("a LOGIN {4}\r\nuser {3}\r\np\r\x01\r\n") == Evs{"+", "+", "CMD a LOGIN {4}user {3}p\r\x01"});
  CHECK(drive_all_splits("a APPEND INBOX (\\Seen) {5}\r\nhello\r\nb NOOP\r\n") ==
        Evs{"+", "CMD a APPEND INBOX (\\Seen) {5}hello", "CMD b NOOP"});
  CHECK(drive_all_splits("a X {0}\r\n\r\n") == Evs{"+", "CMD a X {0}"});
}

TEST_CASE("non-synchronizing literal (LITERAL-) has no continuation", "[imap]") {
  CHECK(drive_all_splits("a APPEND INBOX {5+}\r\nhello\r\nb NOOP\r\n") ==
        Evs{"CMD a APPEND INBOX {5}hello", "CMD b NOOP"});
  // literal inside a list, then more arguments
  CHECK(drive_all_splits("a X ({2+}\r\nab c)\r\n") == Evs{"CMD a X ({2}ab c)"});
}

TEST_CASE("literal8 (RFC 3516) for APPEND's message only", "[imap]") {
  // NUL and CR/LF inside are data; the continuation and LITERAL- work as for "{n}"
  CHECK(drive_all_splits("a APPEND INBOX ~{6}\r\nh\0\r\nlo\r\nb NOOP\r\n"sv) ==
        Evs{"+", "CMD a APPEND INBOX ~{6}h\0\r\nlo"s, "CMD b NOOP"});
  CHECK(drive_all_splits("a APPEND INBOX (\\Seen) ~{3+}\r\n\0\0\0\r\n"sv) ==
        Evs{"CMD a APPEND INBOX (\\Seen) ~{3}\0\0\0"s});
  CHECK(drive_all_splits("a APPEND INBOX ~{0}\r\n\r\n") == Evs{"+", "CMD a APPEND INBOX ~{0}"});
  // anywhere else it is a syntax error, and the next command still works
  for (std::string_view bad : {"a LOGIN ~{3}\r\nb NOOP\r\n"sv, "a APPEND INBOX (~{3}\r\nb NOOP\r\n"sv,
                               "a FETCH 1 ~{3}\r\nb NOOP\r\n"sv, "a APPEND INBOX ~{{3}\r\nb NOOP\r\n"sv,
                               "a APPEND INBOX ~{3}x\r\nb NOOP\r\n"sv}) {
    INFO(bad);
    CHECK(drive_all_splits(bad) == Evs{"ERR a BAD", "CMD b NOOP"});
  }
  // the APPEND size limit applies before the continuation
  ParserOptions o;
  o.max_append = 100;
  CHECK(drive_all_splits("a APPEND INBOX ~{101}\r\nb NOOP\r\n", o) == Evs{"ERR a TOOBIG", "CMD b NOOP"});
  // a plain literal is not marked literal8
  Parser p;
  p.feed("a APPEND INBOX {1+}\r\nx\r\n");
  auto e = p.next();
  REQUIRE(e.kind == Event::Kind::Command);
  CHECK_FALSE(e.command.args.back().literal8);
}

TEST_CASE("FETCH BINARY items keep their brackets and partials", "[imap]") {
  CHECK(drive_all_splits("f UID FETCH 1:* (BINARY[2] BINARY.PEEK[1.2]<0.10> BINARY.SIZE[2] BINARY[])\r\n") ==
        Evs{"CMD f UID FETCH 1:* (BINARY[2] BINARY.PEEK[1.2]<0.10> BINARY.SIZE[2] BINARY[])"});
  CHECK(drive_all_splits("f FETCH 1 BINARY[2\r\n") == Evs{"ERR f BAD"});
}

TEST_CASE("literal limits are checked before the continuation", "[imap]") {
  ParserOptions o;
  o.max_literal = 10;
  o.max_append = 100;
  // over the limit: no "+", a tagged answer, and the next command works
  CHECK(drive_all_splits("a LOGIN {11}\r\nb NOOP\r\n", o) == Evs{"ERR a BAD", "CMD b NOOP"});
  CHECK(drive_all_splits("a APPEND INBOX {101}\r\nb NOOP\r\n", o) == Evs{"ERR a TOOBIG", "CMD b NOOP"});
  CHECK(drive_all_splits("a APPEND INBOX {100}\r\n", o) == Evs{"+"});
  // a huge non-synchronizing literal cannot be skipped: fatal
  CHECK(drive_all_splits("a APPEND INBOX {99999999999+}\r\nxx", o) == Evs{"ERR a BAD FATAL"});
  // a huge number does not overflow
  CHECK(drive_all_splits("a LOGIN {184467440737095516150}\r\nb NOOP\r\n", o) == Evs{"ERR a BAD", "CMD b NOOP"});
}

TEST_CASE("memory stays bounded by the announced literal, not the input", "[imap]") {
  ParserOptions o;
  o.max_append = 1000;
  Parser p(o);
  p.feed("a APPEND INBOX {1000}\r\n");
  REQUIRE(p.next().kind == Event::Kind::Continue);
  p.feed(std::string(1000, 'x'));
  CHECK(p.next().kind == Event::Kind::NeedMore);
  CHECK(p.buffered() == 0);  // taken into the literal
  p.feed("\r\n");
  auto e = p.next();
  REQUIRE(e.kind == Event::Kind::Command);
  CHECK(e.command.args[1].text.size() == 1000);
}

TEST_CASE("errors resynchronise at the next command, skipping non-sync literals", "[imap]") {
  // a bad command announcing a non-sync literal: its bytes are not commands
  CHECK(drive_all_splits("a X (\"unterminated {16+}\r\nb NOOP\r\nc NOOP\r\n\r\nd NOOP\r\n") ==
        Evs{"ERR a BAD", "CMD d NOOP"});
  // the literal ended the line of a bad command; the command goes on after it and is skipped too
  CHECK(drive_all_splits("a X ) {3+}\r\nabc more {2+}\r\nxy\r\nd NOOP\r\n") == Evs{"ERR a BAD", "CMD d NOOP"});
  CHECK(drive_all_splits("a X ) {0+}\r\n\r\nb NOOP\r\n") == Evs{"ERR a BAD", "CMD b NOOP"});
  CHECK(drive_all_splits("\r\n+bad NOOP\r\ngood\r\nt NOOP\r\n") == Evs{"ERR * BAD", "ERR * BAD", "ERR good BAD", "CMD t NOOP"});
}

TEST_CASE("syntax errors", "[imap]") {
  const std::string_view bads[] = {"a X (a\r\n", "a X a)\r\n", "a X \"a\"b\r\n", "a X \"a\\n\"\r\n", "a X a\x01\r\n",
                               "a X a\rb\r\n", "a X {3}x\r\n", "a X ~{3}\r\n", "a X \"\xff\0\"\r\n"sv,
                               "a X a  b\r\n", "a X[ y\r\n", "a X \xc3\xa9\r\n"};
  for (std::string_view bad : bads) {
    INFO(bad);
    CHECK(drive_all_splits(bad) == Evs{"ERR a BAD"});
  }
  // 8-bit text is fine inside quoted strings (RFC 9051 UTF-8)
  CHECK(drive_all_splits("a X \"caf\xc3\xa9\"\r\n") == Evs{"CMD a X \"caf\xc3\xa9\""});
}

TEST_CASE("nesting depth is bounded", "[imap]") {
  ParserOptions o;
  o.max_depth = 4;
  CHECK(drive_all_splits("a S ((((x))))\r\n", o) == Evs{"CMD a S ((((x))))"});
  CHECK(drive_all_splits("a S (((((x)))))\r\nb NOOP\r\n", o) == Evs{"ERR a BAD", "CMD b NOOP"});
  // default limit against a deep attack
  CHECK(drive(std::string("a S ") + std::string(100000, '(') + "\r\nb NOOP\r\n", 4096) == Evs{"ERR * BAD FATAL"});
  CHECK(drive(std::string("a S ") + std::string(1000, '(') + "\r\nb NOOP\r\n", 1000) == Evs{"ERR a BAD", "CMD b NOOP"});
}

TEST_CASE("command line and argument count limits", "[imap]") {
  ParserOptions o;
  o.max_line = 32;
  // (the tag of a line that was never complete is not known: "* BAD", then BYE)
  CHECK(drive_all_splits("a NOOP 123456789012345678901234\r\n", o) == Evs{"ERR * BAD FATAL"});
  CHECK(drive_all_splits("a NOOP 12345678901234567890123\r\n", o) == Evs{"CMD a NOOP 12345678901234567890123"});
  // the limit counts every line of a command, not only the last one
  CHECK(drive_all_splits("a X 1234567890 {1+}\r\nx 123456789012\r\n", o) == Evs{"ERR a BAD FATAL"});
  // detected without waiting for an end of line
  Parser p(o);
  p.feed(std::string(40, 'a'));
  auto e = p.next();
  CHECK(e.kind == Event::Kind::Error);
  CHECK(e.fatal);
  ParserOptions n;
  n.max_args = 3;
  CHECK(drive_all_splits("a X 1 2 3\r\na X 1 (2) 3\r\n", n) == Evs{"CMD a X 1 2 3", "ERR a BAD"});
}

TEST_CASE("raw lines for AUTHENTICATE and IDLE", "[imap]") {
  CHECK(drive_all_splits("a AUTHENTICATE PLAIN\r\nAGpvZQBzZWNyZXQ=\r\nb NOOP\r\n", {}, "AUTHENTICATE") ==
        Evs{"CMD a AUTHENTICATE PLAIN", "RAW AGpvZQBzZWNyZXQ=", "CMD b NOOP"});
  CHECK(drive_all_splits("i IDLE\r\nDONE\r\n", {}, "IDLE") == Evs{"CMD i IDLE", "RAW DONE"});
  Parser p;
  p.expect_raw_line();
  p.feed(std::string(20000, 'x'));
  CHECK(p.next().fatal);
}

TEST_CASE("between_commands and STARTTLS discarding", "[imap]") {
  Parser p;
  CHECK(p.between_commands());
  p.feed("a");
  CHECK(p.next().kind == Event::Kind::NeedMore);
  CHECK_FALSE(p.between_commands());
  p.feed(" STARTTLS\r\nb LOGIN injected x\r\n");
  auto e = p.next();
  REQUIRE(e.kind == Event::Kind::Command);
  CHECK(e.command.name == "STARTTLS");
  p.discard_buffered();
  CHECK(p.next().kind == Event::Kind::NeedMore);
  CHECK(p.between_commands());
}

TEST_CASE("valid_tag", "[imap]") {
  CHECK(valid_tag("A001"));
  CHECK(valid_tag("a]b"));
  CHECK_FALSE(valid_tag("a+b"));
  CHECK_FALSE(valid_tag("a*"));
  CHECK_FALSE(valid_tag(""));
  CHECK_FALSE(valid_tag("a\"b"));
}

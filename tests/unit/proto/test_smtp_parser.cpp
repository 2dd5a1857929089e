// Streaming tests of smtp::Parser: command framing, DATA and BDAT decoding,
// SMTP smuggling variants (CVE-2023-51764) and every limit, each input fed
// whole, one byte at a time and at odd split points (drive_all_splits).
#include <catch2/catch.hpp>

#include "tests/unit/proto/smtp_drive.hpp"

using namespace moat;
using namespace moat::proto::smtp;
using moat::proto::smtp::test::drive;
using moat::proto::smtp::test::drive_all_splits;
using moat::proto::smtp::test::Evs;

namespace {

ParserOptions normalize() {
  ParserOptions o;
  o.bare_line = config::BareLinePolicy::Normalize;
  return o;
}

}  // namespace

TEST_CASE("pipelined commands in one feed come out in order") {
  const auto ev = drive_all_splits(
      "EHLO client.example\r\nMAIL FROM:<a@b.example> SIZE=10\r\nRCPT TO:<c@d.example>\r\nNOOP\r\nQUIT\r\n");
  CHECK(ev == Evs{"CMD EHLO", "CMD MAIL <a@b.example> SIZE=10", "CMD RCPT <c@d.example>", "CMD NOOP", "CMD QUIT"});
}

TEST_CASE("an incomplete command waits for its CRLF") {
  Parser p({});
  p.feed("NOOP");
  CHECK(p.next().kind == Event::Kind::NeedMore);
  p.feed("\r");
  CHECK(p.next().kind == Event::Kind::NeedMore);
  CHECK(p.buffered() == 5);
  p.feed("\n");
  auto e = p.next();
  REQUIRE(e.kind == Event::Kind::Command);
  CHECK(e.command.verb == Verb::Noop);
  CHECK(p.buffered() == 0);
}

TEST_CASE("bare LF, bare CR and NUL in command lines are errors, never line ends") {
  using Row = std::pair<std::string, Evs>;
  auto row = GENERATE(
      Row{"NOOP\nQUIT\r\nRSET\r\n", {"CERR syntax_error", "CMD RSET"}},
      Row{"NOOP\rQUIT\r\nRSET\r\n", {"CERR syntax_error", "CMD RSET"}},
      Row{std::string("NO\0OP\r\nRSET\r\n", 13), {"CERR syntax_error", "CMD RSET"}},
      Row{"RSET\n\r\nQUIT\r\n", {"CERR syntax_error", "CMD QUIT"}},
      Row{"\n", {"CERR syntax_error"}},
      Row{"NOOP\r\r\nQUIT\r\n", {"CERR syntax_error", "CMD QUIT"}},
      Row{"NOOP\x01\r\n", {"CERR syntax_error"}});
  const std::string& in = row.first;
  CHECK(drive_all_splits(in) == row.second);
}

TEST_CASE("command line length: max_line counts the CRLF") {
  ParserOptions o;
  o.max_line = 16;
  const std::string ok = "NOOP " + std::string(9, 'x');  // 14 + CRLF = 16
  CHECK(drive_all_splits(ok + "\r\n", o) == Evs{"CMD NOOP"});
  const std::string bad = ok + "y";                        // 17
  CHECK(drive_all_splits(bad + "\r\nQUIT\r\n", o) == Evs{"CERR line_too_long", "CMD QUIT"});
}

TEST_CASE("an overlong command line is skipped without being buffered") {
  ParserOptions o;
  o.max_line = 64;
  Parser p(o);
  std::size_t errors = 0;
  for (int i = 0; i < 1000; ++i) {
    p.feed(std::string(1000, 'A'));
    for (Event e = p.next(); e.kind != Event::Kind::NeedMore; e = p.next()) {
      CHECK(e.error.code == Errc::LineTooLong);
      ++errors;
    }
    CHECK(p.buffered() < 64);
  }
  CHECK(errors == 1);
  p.feed("\r");  // the CR stays: it may pair with the next LF
  CHECK(p.next().kind == Event::Kind::NeedMore);
  p.feed("\nQUIT\r\n");
  auto e = p.next();
  REQUIRE(e.kind == Event::Kind::Command);
  CHECK(e.command.verb == Verb::Quit);
}

TEST_CASE("command errors carry the verb when it is known") {
  Parser p({});
  p.feed("MAIL FROM:bad\r\nXYZZY\r\n");
  auto e = p.next();
  CHECK(e.kind == Event::Kind::CommandError);
  CHECK(e.error.code == Errc::ParamSyntax);
  CHECK(e.command.verb == Verb::Mail);
  e = p.next();
  CHECK(e.error.code == Errc::UnknownCommand);
  CHECK(e.command.verb == Verb::Unknown);
}

TEST_CASE("DATA: unstuffing, terminator, and the next command stays buffered") {
  const std::string in =
      "DATA\r\nSubject: x\r\n\r\n..leading dot\r\n...two\r\n.\r\nQUIT\r\n";
  CHECK(drive_all_splits(in) ==
        Evs{"CMD DATA", "CHUNK Subject: x\r\n\r\n.leading dot\r\n..two\r\n", "END", "CMD QUIT"});
  Parser p({});
  p.feed("DATA\r\n");
  REQUIRE(p.next().kind == Event::Kind::Command);
  p.start_data();
  p.feed("body\r\n.\r\nMAIL FROM:<>\r\nRCPT");
  CHECK(p.next().kind == Event::Kind::DataChunk);
  CHECK(p.next().kind == Event::Kind::DataEnd);
  CHECK(p.mode() == Parser::Mode::Command);
  CHECK(p.buffered() == std::string_view("MAIL FROM:<>\r\nRCPT").size());
  CHECK(p.message_size() == 6);
  auto e = p.next();
  CHECK(e.kind == Event::Kind::Command);
  CHECK(e.command.verb == Verb::Mail);
}

TEST_CASE("DATA: empty message and a dot-only first line") {
  CHECK(drive_all_splits("DATA\r\n.\r\n") == Evs{"CMD DATA", "END"});
  CHECK(drive_all_splits("DATA\r\n..\r\n.\r\n") == Evs{"CMD DATA", "CHUNK .\r\n", "END"});
}

TEST_CASE("DATA: smuggling variants never end the data (CVE-2023-51764)") {
  // Each candidate terminator is followed by a smuggled command and only
  // then the real CRLF.CRLF.
  auto fake = GENERATE(as<std::string>{}, "\n.\n", "\n.\r\n", "\r.\r", "\r\n.\n", "\r.\n", "\n.\r", "\r\n.\r");
  const std::string smuggled = "MAIL FROM:<evil@x.example>\r\nRCPT TO:<v@y.example>\r\nDATA\r\n";
  const std::string in = "DATA\r\nSubject: hi\r\n\r\nbody" + fake + smuggled + "more\r\n.\r\nQUIT\r\n";
  INFO("fake terminator: " << Catch::Detail::stringify(fake));
  // Reject policy: swallowed up to the real terminator, then one error.
  const auto rej = drive_all_splits(in);
  REQUIRE(rej.size() == 4);
  CHECK(rej[1].rfind("CHUNK Subject: hi\r\n\r\nbody", 0) == 0);
  CHECK(rej[1].find("MAIL") == std::string::npos);
  CHECK(rej[2] == "DERR bare_line_ending");
  CHECK(rej[3] == "CMD QUIT");
  // Normalize policy: the bare endings become CRLF, the fake command is body text.
  const auto ev = drive_all_splits(in, normalize());
  REQUIRE(ev.size() == 4);
  CHECK(ev[0] == "CMD DATA");
  CHECK(ev[1].find("MAIL FROM:<evil@x.example>\r\n") != std::string::npos);
  CHECK(ev[2] == "END");
  CHECK(ev[3] == "CMD QUIT");
  // what leaves the decoder has CRLF line ends only
  for (std::size_t i = 0; i < ev[1].size(); ++i) {
    if (ev[1][i] == '\r') CHECK(ev[1][i + 1] == '\n');
    if (ev[1][i] == '\n') CHECK(ev[1][i - 1] == '\r');
  }
}

TEST_CASE("DATA: bare line endings under Normalize become CRLF") {
  using Row = std::pair<std::string, std::string>;
  auto row = GENERATE(Row{"a\nb\r\n", "a\r\nb\r\n"}, Row{"a\rb\r\n", "a\r\nb\r\n"}, Row{"a\r\r\n", "a\r\n\r\n"},
                      Row{".\nx\r\n", ".\r\nx\r\n"}, Row{"x\n.\r\n", "x\r\n.\r\n"});
  CHECK(drive_all_splits("DATA\r\n" + row.first + ".\r\n", normalize()) == Evs{"CMD DATA", "CHUNK " + row.second, "END"});
}

TEST_CASE("DATA: CR CRLF . CRLF does end (the last CRLF.CRLF is real)") {
  CHECK(drive_all_splits("DATA\r\nx\r\r\n.\r\nNOOP\r\n", normalize()) ==
        Evs{"CMD DATA", "CHUNK x\r\n\r\n", "END", "CMD NOOP"});
  CHECK(drive_all_splits("DATA\r\nx\r\r\n.\r\nNOOP\r\n") == Evs{"CMD DATA", "CHUNK x", "DERR bare_line_ending", "CMD NOOP"});
}

TEST_CASE("DATA: message size limit swallows to the terminator") {
  ParserOptions o;
  o.max_message = 22;
  CHECK(drive_all_splits("DATA\r\n0123456789\r\n01234567\r\n.\r\nNOOP\r\n", o) ==
        Evs{"CMD DATA", "CHUNK 0123456789\r\n01234567\r\n", "END", "CMD NOOP"});
  // exactly max_message bytes are emitted, the rest is swallowed
  CHECK(drive_all_splits("DATA\r\n0123456789\r\n012345678\r\n" + std::string(500, 'z') + "\r\n.\r\nNOOP\r\n", o) ==
        Evs{"CMD DATA", "CHUNK 0123456789\r\n012345678\r", "DERR message_too_large", "CMD NOOP"});
}

TEST_CASE("DATA: header section limit") {
  ParserOptions o;
  o.max_header = 30;
  const std::string hdr = "Subject: 0123456789012345\r\n";  // 27 bytes
  CHECK(drive_all_splits("DATA\r\n" + hdr + "\r\n" + std::string(100, 'b') + "\r\n.\r\n", o).back() == "END");
  CHECK(drive_all_splits("DATA\r\n" + hdr + "X: y\r\n\r\nbody\r\n.\r\nRSET\r\n", o) ==
        Evs{"CMD DATA", "CHUNK " + hdr + "X: ", "DERR header_too_large", "CMD RSET"});
}

TEST_CASE("DATA: line length limit counts the CRLF and the stuffing dot") {
  ParserOptions o;
  o.max_line = 12;
  CHECK(drive_all_splits("DATA\r\n0123456789\r\n.\r\n", o).back() == "END");
  CHECK(drive_all_splits("DATA\r\n..23456789\r\n.\r\n", o).back() == "END");
  CHECK(drive_all_splits("DATA\r\n..234567890\r\n.\r\n", o).back() == "DERR line_too_long");
  CHECK(drive_all_splits("DATA\r\n01234567890\r\n.\r\nNOOP\r\n", o) ==
        Evs{"CMD DATA", "CHUNK 0123456789", "DERR line_too_long", "CMD NOOP"});
}

TEST_CASE("DATA: body lines past the header (taken in runs) keep every check") {
  // Past the empty line the decoder copies plain CRLF lines a run at a time;
  // each case here must stop that run exactly where byte-by-byte decoding
  // would, whatever the split (drive_all_splits compares them).
  ParserOptions o;
  o.max_line = 12;
  CHECK(drive_all_splits("DATA\r\nS: x\r\n\r\n0123456789\r\n..23456789\r\n\r\nab\r\n.\r\n", o) ==
        Evs{"CMD DATA", "CHUNK S: x\r\n\r\n0123456789\r\n.23456789\r\n\r\nab\r\n", "END"});
  CHECK(drive_all_splits("DATA\r\n\r\nab\r\n01234567890\r\n.\r\nNOOP\r\n", o) ==
        Evs{"CMD DATA", "CHUNK \r\nab\r\n0123456789", "DERR line_too_long", "CMD NOOP"});
  CHECK(drive_all_splits("DATA\r\n\r\nab\r\ncd\ref\r\n.\r\n", o).back() == "DERR bare_line_ending");
  CHECK(drive_all_splits("DATA\r\n\r\nab\r\ncd\nef\r\n.\r\n", o).back() == "DERR bare_line_ending");
  CHECK(drive_all_splits("DATA\r\n\r\nab\r\n\n.\r\n.\r\n", o).back() == "DERR bare_line_ending");
  // Smuggling forms inside the body never end it.
  CHECK(drive_all_splits("DATA\r\n\r\nab\r\n.\nMAIL\r\n.\r\n", normalize()) ==
        Evs{"CMD DATA", "CHUNK \r\nab\r\n.\r\nMAIL\r\n", "END"});
  ParserOptions small;
  small.max_message = 10;
  CHECK(drive_all_splits("DATA\r\n\r\nabcdef\r\nghijkl\r\n.\r\nNOOP\r\n", small) ==
        Evs{"CMD DATA", "CHUNK \r\nabcdef\r\n", "DERR message_too_large", "CMD NOOP"});
  CHECK(drive_all_splits("DATA\r\n\r\nabcdefg\r\nhijkl\r\n.\r\nNOOP\r\n", small) ==
        Evs{"CMD DATA", "CHUNK \r\nabcdefg\r", "DERR message_too_large", "CMD NOOP"});
}

TEST_CASE("DATA: a new DATA starts a clean message") {
  ParserOptions o;
  o.max_message = 8;
  CHECK(drive_all_splits("DATA\r\n0123456789\r\n.\r\nDATA\r\nok\r\n.\r\n", o) ==
        Evs{"CMD DATA", "CHUNK 01234567", "DERR message_too_large", "CMD DATA", "CHUNK ok\r\n", "END"});
}

TEST_CASE("DATA: large input is emitted in bounded chunks") {
  Parser p({});
  p.start_data();
  std::string body = "Subject: big\r\n\r\n";
  for (int i = 0; i < 20000; ++i) body += "line of text number " + std::to_string(i) + "\r\n";
  p.feed(body + ".\r\n");
  std::string got;
  for (Event e = p.next(); e.kind != Event::Kind::DataEnd; e = p.next()) {
    REQUIRE(e.kind == Event::Kind::DataChunk);
    CHECK(e.data.size() <= 64 * 1024 + 2);
    got += e.data;
  }
  CHECK(got == body);
  CHECK(p.message_size() == body.size());
}

TEST_CASE("BDAT: raw chunks, no unstuffing, then the next command") {
  const std::string in = "BDAT 9\r\n.x\r\n.\r\nabBDAT 3 LAST\r\nxyzQUIT\r\n";
  CHECK(drive_all_splits(in) == Evs{"CMD BDAT", "CHUNK .x\r\n.\r\nab", "BEND", "CMD BDAT", "CHUNK xyz", "BEND LAST", "CMD QUIT"});
  CHECK(drive_all_splits("BDAT 0 LAST\r\nNOOP\r\n") == Evs{"CMD BDAT", "BEND LAST", "CMD NOOP"});
}

TEST_CASE("BDAT: CR at the end of a chunk pairs with LF in the next one") {
  CHECK(drive_all_splits("BDAT 2\r\na\rBDAT 2 LAST\r\n\nb") == Evs{"CMD BDAT", "CHUNK a", "BEND", "CMD BDAT", "CHUNK \r\nb", "BEND LAST"});
  // a CR ending the LAST chunk is bare
  CHECK(drive_all_splits("BDAT 2 LAST\r\na\r") == Evs{"CMD BDAT", "CHUNK a", "DERR bare_line_ending"});
  CHECK(drive_all_splits("BDAT 2 LAST\r\na\r", normalize()) == Evs{"CMD BDAT", "CHUNK a\r\n", "BEND LAST"});
}

TEST_CASE("BDAT: bare LF is reported at the end of its chunk and on every later chunk") {
  CHECK(drive_all_splits("BDAT 3\r\na\nbBDAT 2 LAST\r\ncdNOOP\r\n") ==
        Evs{"CMD BDAT", "CHUNK a", "DERR bare_line_ending", "CMD BDAT", "DERR bare_line_ending", "CMD NOOP"});
  CHECK(drive_all_splits("BDAT 3 LAST\r\na\nb", normalize()) == Evs{"CMD BDAT", "CHUNK a\r\nb", "BEND LAST"});
}

TEST_CASE("BDAT: BINARYMIME passes bare CR and LF") {
  Parser p({});
  p.set_binary(true);
  p.start_bdat(5, true);
  p.feed(std::string("a\n\rb\0", 5));
  auto e = p.next();
  REQUIRE(e.kind == Event::Kind::DataChunk);
  CHECK(e.data == std::string_view("a\n\rb\0", 5));
  CHECK(p.next().kind == Event::Kind::BdatChunkEnd);
}

TEST_CASE("BDAT: size limit across chunks is flagged before the chunk is read") {
  ParserOptions o;
  o.max_message = 10;
  CHECK(drive_all_splits("BDAT 6\r\n012345BDAT 6 LAST\r\n6789abNOOP\r\n", o) ==
        Evs{"CMD BDAT", "CHUNK 012345", "BEND", "CMD BDAT", "DERR message_too_large", "CMD NOOP"});
  Parser p(o);
  p.start_bdat(6, false);
  p.feed("012345");
  CHECK(p.next().kind == Event::Kind::DataChunk);
  CHECK(p.next().kind == Event::Kind::BdatChunkEnd);
  CHECK(p.message_size() == 6);
  p.start_bdat(1000, true);
  p.feed(std::string(1000, 'x'));
  auto e = p.next();
  CHECK(e.kind == Event::Kind::DataError);
  CHECK(e.error.code == Errc::MessageTooLarge);
  CHECK(e.last_chunk);
  CHECK(p.message_size() <= 10);
}

TEST_CASE("BDAT: header and line limits apply across chunks") {
  ParserOptions o;
  o.max_header = 10;
  CHECK(drive_all_splits("BDAT 6\r\nA: 123BDAT 6 LAST\r\n4567\r\n", o) ==
        Evs{"CMD BDAT", "CHUNK A: 123", "BEND", "CMD BDAT", "CHUNK 4567", "DERR header_too_large"});
  ParserOptions l;
  l.max_line = 14;
  CHECK(drive_all_splits("BDAT 6\r\n123456BDAT 7 LAST\r\n789abcd", l) ==
        Evs{"CMD BDAT", "CHUNK 123456", "BEND", "CMD BDAT", "CHUNK 789abc", "DERR line_too_long"});
}

TEST_CASE("reset_message clears a failed BDAT message") {
  Parser p({});
  p.start_bdat(2, false);
  p.feed("\n.");
  CHECK(p.next().kind == Event::Kind::DataError);
  p.reset_message();
  p.start_bdat(2, true);
  p.feed("ok");
  CHECK(p.next().data == "ok");
  CHECK(p.next().kind == Event::Kind::BdatChunkEnd);
  CHECK(p.message_size() == 2);
}

TEST_CASE("discard_buffered drops plaintext pipelined after STARTTLS") {
  Parser p({});
  p.feed("STARTTLS\r\nMAIL FROM:<injected@x.example>\r\n");
  auto e = p.next();
  REQUIRE(e.command.verb == Verb::StartTls);
  CHECK(p.buffered() > 0);
  p.discard_buffered();
  CHECK(p.buffered() == 0);
  CHECK(p.next().kind == Event::Kind::NeedMore);
  p.feed("EHLO x\r\n");
  CHECK(p.next().command.verb == Verb::Ehlo);
}

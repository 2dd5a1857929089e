// POP3 command parsing (RFC 1939, RFC 2449 limits, RFC 5034 AUTH), fed
// whole, byte by byte and at odd split points; APOP is not a command.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/proto/pop3/parser.hpp"

using namespace moat;
using namespace moat::proto::pop3;
using namespace std::string_literals;

namespace {

using Evs = std::vector<std::string>;

Evs drive(std::string_view in, std::size_t step) {
  Parser p;
  Evs out;
  auto drain = [&] {
    for (;;) {
      Event e = p.next();
      if (e.kind == Event::Kind::NeedMore) return;
      if (e.kind == Event::Kind::RawLine) {
        out.push_back("RAW " + e.line);
      } else if (e.kind == Event::Kind::Error) {
        out.push_back("ERR " + std::string(errc_name(e.error.code)));
      } else {
        std::string s(verb_name(e.command.verb));
        for (const auto& a : e.command.args) s += "|" + a;
        out.push_back(s);
        if (e.command.verb == Verb::Auth && e.command.args.size() == 1) p.expect_raw_line();
      }
    }
  };
  for (std::size_t i = 0; i < in.size(); i += step) {
    p.feed(in.substr(i, step));
    drain();
    REQUIRE(p.buffered() <= kMaxAuthLine);
  }
  return out;
}

Evs drive_all(std::string_view in) {
  const Evs whole = drive(in, in.size());
  for (std::size_t step : {1u, 2u, 5u, 11u})
    if (drive(in, step) != whole) return {"SPLIT MISMATCH"};
  return whole;
}

}  // namespace

TEST_CASE("POP3 session commands", "[pop3]") {
  CHECK(drive_all("capa\r\nUSER joe\r\nPASS my secret pw\r\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL 1\r\nTOP 1 0\r\nRETR 1\r\n"
                  "DELE 1\r\nRSET\r\nNOOP\r\nQUIT\r\n") ==
        Evs{"CAPA", "USER|joe", "PASS|my secret pw", "STAT", "LIST", "LIST|2", "UIDL|1", "TOP|1|0", "RETR|1",
            "DELE|1", "RSET", "NOOP", "QUIT"});
}

TEST_CASE("AUTH with and without initial response, continuation raw", "[pop3]") {
  CHECK(drive_all("AUTH PLAIN AGpvZQBzZWNyZXQ=\r\nAUTH PLAIN\r\nAGpvZQBzZWNyZXQ=\r\nAUTH\r\nSTLS\r\n") ==
        Evs{"AUTH|PLAIN|AGpvZQBzZWNyZXQ=", "AUTH|PLAIN", "RAW AGpvZQBzZWNyZXQ=", "AUTH", "STLS"});
}

TEST_CASE("POP3 errors", "[pop3]") {
  CHECK(drive_all("APOP joe c4c9334bac560ecc979e58001b3e22fb\r\n") == Evs{"ERR unknown_command"});
  CHECK(drive_all("RETR 0\r\nRETR -1\r\nRETR x\r\nRETR 4294967296\r\nTOP 1\r\nTOP 1 -1\r\nSTAT 1\r\nUSER\r\n") ==
        Evs(8, "ERR param_syntax"));
  CHECK(drive_all("RETR  1\r\nLIST 1 \r\n\r\nNO\0OP\r\n"s) ==
        Evs{"ERR param_syntax", "ERR param_syntax", "ERR syntax_error", "ERR syntax_error"});
  CHECK(drive_all("USER " + std::string(41, 'u') + "\r\n") == Evs{"ERR param_syntax"});
  CHECK(drive_all("TOP 4294967295 4294967295\r\n") == Evs{"TOP|4294967295|4294967295"});
}

TEST_CASE("POP3 line limit: reported early, tail discarded unbuffered", "[pop3]") {
  CHECK(drive_all("NOOP " + std::string(249, 'x') + "\r\nNOOP\r\n") == Evs{"ERR line_too_long", "NOOP"});
  CHECK(drive_all("PASS " + std::string(249, 'x') + "\r\n") == Evs{"ERR line_too_long"});
  CHECK(drive_all("PASS " + std::string(248, 'x') + "\r\n") == Evs{"PASS|" + std::string(248, 'x')});
  Parser p;
  p.feed(std::string(100000, 'x'));
  CHECK(p.next().kind == Event::Kind::Error);
  CHECK(p.next().kind == Event::Kind::NeedMore);
  CHECK(p.buffered() == 0);
  p.feed("\r\nQUIT\r\n");
  auto e = p.next();
  REQUIRE(e.kind == Event::Kind::Command);
  CHECK(e.command.verb == Verb::Quit);
}

TEST_CASE("STLS drops plaintext pipelined after it", "[pop3]") {
  Parser p;
  p.feed("STLS\r\nUSER injected\r\n");
  REQUIRE(p.next().command.verb == Verb::Stls);
  p.discard_buffered();
  CHECK(p.next().kind == Event::Kind::NeedMore);
}

// The SMTP reply parser fed byte by byte and at every split point, its
// limits, and EHLO keyword parsing.
#include <catch2/catch.hpp>
#include <string>

#include "common/proto/smtp_reply.hpp"

using namespace moat;
using namespace moat::proto::smtp;

namespace {

// All replies in `wire`, fed with a split after `split` bytes then byte by byte.
std::vector<Reply> feed_all(std::string_view wire, std::size_t split, ReplyParser::State* last = nullptr) {
  ReplyParser p;
  std::vector<Reply> out;
  ReplyParser::State st = ReplyParser::State::NeedMore;
  auto run = [&](std::string_view part) {
    while (!part.empty() && st != ReplyParser::State::Error) {
      st = p.feed(part);
      if (st == ReplyParser::State::Complete) {
        out.push_back(p.take());
        st = ReplyParser::State::NeedMore;
      }
    }
  };
  run(wire.substr(0, split));
  for (std::size_t i = split; i < wire.size(); ++i) run(wire.substr(i, 1));
  if (last) *last = st;
  return out;
}

}  // namespace

TEST_CASE("smtp reply: pipelined replies at every split point", "[smtp_reply]") {
  const std::string wire =
      "250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
      "250 2.1.0 Ok\r\n550 5.1.1 <x@y>: Recipient address rejected\r\n354 End data\r\n";
  for (std::size_t split = 0; split <= wire.size(); ++split) {
    auto rs = feed_all(wire, split);
    REQUIRE(rs.size() == 4);
    CHECK(rs[0].code == 250);
    CHECK(rs[0].lines == std::vector<std::string>{"mx.example.org", "PIPELINING", "SIZE 1000"});
    CHECK(rs[1].enhanced == "2.1.0");
    CHECK(rs[2].code == 550);
    CHECK(rs[2].enhanced == "5.1.1");
    CHECK(rs[2].permanent());
    CHECK(rs[2].str() == "550 5.1.1 <x@y>: Recipient address rejected");
    CHECK(rs[3].code == 354);
    CHECK(rs[3].dsn() == "2.0.0");
  }
}

TEST_CASE("smtp reply: table of single replies", "[smtp_reply]") {
  struct Case {
    std::string wire;
    bool ok;
    int code;
    std::string enhanced;
    std::size_t lines;
  };
  auto c = GENERATE(values<Case>({
      {"220 ready\r\n", true, 220, "", 1},
      {"250\r\n", true, 250, "", 1},                          // bare code is legal
      {"421 4.3.2 shutting down\n", true, 421, "4.3.2", 1},   // LF only tolerated
      {"451-4.7.1 a\r\n451-b\r\n451 c\r\n", true, 451, "4.7.1", 3},
      {"550 4.1.1 wrong class\r\n", true, 550, "", 1},        // enhanced class must match
      {"250 2.0.0\r\n", true, 250, "2.0.0", 1},
      {"250 2.0.0x\r\n", true, 250, "", 1},
      {"250 2.1234.0 too long\r\n", true, 250, "", 1},
      {"250-a\r\n251 b\r\n", false, 0, "", 0},               // code changed
      {"25 short\r\n", false, 0, "", 0},
      {"abc\r\n", false, 0, "", 0},
      {"650 bad class\r\n", false, 0, "", 0},
      {"260 bad second digit\r\n", false, 0, "", 0},
      {"250xok\r\n", false, 0, "", 0},
      {"250 ok\r\nextra", false, 0, "", 0},                   // parse_reply: trailing bytes
      {"250-unfinished\r\n", false, 0, "", 0},
  }));
  auto r = parse_reply(c.wire);
  CAPTURE(c.wire);
  REQUIRE(r.ok() == c.ok);
  if (c.ok) {
    CHECK(r->code == c.code);
    CHECK(r->enhanced == c.enhanced);
    CHECK(r->lines.size() == c.lines);
  }
}

TEST_CASE("smtp reply: limits", "[smtp_reply]") {
  SECTION("line of 2048 bytes with CRLF passes, 2049 fails") {
    std::string ok = "250 " + std::string(2048 - 6, 'a') + "\r\n";
    REQUIRE(ok.size() == 2048);
    CHECK(parse_reply(ok));
    std::string bad = "250 " + std::string(2048 - 5, 'a') + "\r\n";
    auto r = parse_reply(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::LineTooLong);
  }
  SECTION("total reply size") {
    std::string wire;
    while (wire.size() < 70 * 1024) wire += "250-" + std::string(1000, 'x') + "\r\n";
    wire += "250 end\r\n";
    ReplyParser::State st{};
    auto rs = feed_all(wire, 0, &st);
    CHECK(rs.empty());
    CHECK(st == ReplyParser::State::Error);
  }
  SECTION("control bytes are neutralised") {
    auto r = parse_reply(std::string("550 evil\x1b[31m\x00 text\r\n", 21));
    REQUIRE(r);
    CHECK(r->lines[0] == "evil?[31m? text");
  }
  SECTION("after an error the parser stays in error") {
    ReplyParser p;
    std::string_view in = "xyz\r\n250 ok\r\n";
    CHECK(p.feed(in) == ReplyParser::State::Error);
    CHECK(p.feed(in) == ReplyParser::State::Error);
    p.reset();
    CHECK(p.feed(in) == ReplyParser::State::Complete);
  }
}

TEST_CASE("smtp reply: EHLO keywords", "[smtp_reply]") {
  auto r = parse_reply(
      "250-mx.example.org greets you\r\n250-pipelining\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
      "250-SMTPUTF8\r\n250-DSN\r\n250-STARTTLS\r\n250-CHUNKING\r\n250-AUTH plain LOGIN\r\n"
      "250 ENHANCEDSTATUSCODES\r\n");
  REQUIRE(r);
  auto e = parse_ehlo(*r);
  CHECK(e.esmtp);
  CHECK(e.pipelining);
  CHECK(e.size_offered);
  CHECK(e.size == 10240000);
  CHECK(e.eightbitmime);
  CHECK(e.smtputf8);
  CHECK(e.dsn);
  CHECK(e.starttls);
  CHECK(e.chunking);
  CHECK(e.enhanced_status);
  CHECK(e.auth == std::vector<std::string>{"PLAIN", "LOGIN"});

  auto bare = parse_ehlo(*parse_reply("250-x\r\n250 SIZE\r\n"));
  CHECK(bare.size_offered);
  CHECK(bare.size == 0);
  CHECK_FALSE(bare.pipelining);
  auto junk = parse_ehlo(*parse_reply("250-x\r\n250 SIZE 12ab\r\n"));
  CHECK(junk.size == 0);
  // The greeting line is never a keyword.
  CHECK_FALSE(parse_ehlo(*parse_reply("250 PIPELINING\r\n")).pipelining);
}

// DotStuffer (outbound, RFC 5321 §4.5.2) and its round trip through the
// inbound DATA decoder: decode(stuff(x)) == x with line ends made CRLF.
#include <catch2/catch.hpp>

#include <random>

#include "common/proto/dotstuff.hpp"
#include "common/proto/smtp_parser.hpp"

using namespace moat::proto::smtp;

namespace {

// Bare CR and bare LF become CRLF; a last line without ending gets one.
std::string crlf_normalise(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r') {
      out += "\r\n";
      if (i + 1 < in.size() && in[i + 1] == '\n') ++i;
    } else if (in[i] == '\n') {
      out += "\r\n";
    } else {
      out += in[i];
    }
  }
  if (!out.empty() && (out.size() < 2 || out.substr(out.size() - 2) != "\r\n")) out += "\r\n";
  return out;
}

std::string decode(std::string_view wire, std::size_t step) {
  ParserOptions o;
  o.max_line = 1 << 20;
  o.max_header = 1 << 20;
  Parser p(o);
  p.start_data();
  std::string got;
  bool ended = false;
  for (std::size_t i = 0; i < wire.size(); i += step) {
    p.feed(wire.substr(i, step));
    for (Event e = p.next(); e.kind != Event::Kind::NeedMore; e = p.next()) {
      REQUIRE(!ended);
      if (e.kind == Event::Kind::DataChunk) got += e.data;
      else {
        REQUIRE(e.kind == Event::Kind::DataEnd);
        ended = true;
      }
    }
  }
  REQUIRE(ended);
  REQUIRE(p.buffered() == 0);
  return got;
}

}  // namespace

TEST_CASE("DotStuffer stuffs leading dots and normalises line ends") {
  using Row = std::pair<std::string, std::string>;
  auto [in, wire] = GENERATE(Row{"", ".\r\n"}, Row{"a", "a\r\n.\r\n"}, Row{".", "..\r\n.\r\n"},
                             Row{"a\r\n.b\r\n", "a\r\n..b\r\n.\r\n"}, Row{"a\n.\n", "a\r\n..\r\n.\r\n"},
                             Row{"a\r.\r", "a\r\n..\r\n.\r\n"}, Row{"x.y\r\n", "x.y\r\n.\r\n"},
                             Row{"\r\n.\r\n", "\r\n..\r\n.\r\n"});
  CHECK(dot_stuff(in) == wire);
  // any split of the input gives the same wire form
  for (std::size_t step = 1; step < 4; ++step) {
    DotStuffer s;
    std::string out;
    for (std::size_t i = 0; i < in.size(); i += step) s.feed(std::string_view(in).substr(i, step), out);
    s.finish(out);
    CHECK(out == wire);
  }
}

TEST_CASE("dot-stuff then DATA-decode gives the CRLF-normalised input") {
  std::mt19937 rng(7);
  const char alphabet[] = {'.', '\r', '\n', 'a', ' ', '.', '\r', '\n'};
  for (int n = 0; n < 2000; ++n) {
    std::string in(rng() % 30, 'x');
    for (auto& c : in) c = alphabet[rng() % sizeof alphabet];
    const std::string wire = dot_stuff(in);
    INFO(Catch::Detail::stringify(in));
    CHECK(decode(wire, wire.size()) == crlf_normalise(in));
    CHECK(decode(wire, 1 + rng() % 5) == crlf_normalise(in));
  }
}

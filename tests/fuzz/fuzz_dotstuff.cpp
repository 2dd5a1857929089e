// Fuzz target: round trip of the outbound DotStuffer and the inbound DATA
// decoder (RFC 5321 §4.5.2). Stuffing any bytes, split anywhere, then
// decoding must give back the input with CR/LF normalised to CRLF, and the
// decoder must see exactly one terminator at the very end.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/proto/dotstuff.hpp"
#include "common/proto/smtp_parser.hpp"

using namespace moat::proto::smtp;

namespace {

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
  if (!out.empty() && (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0)) out += "\r\n";
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t step = 1 + data[0] % 17;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  DotStuffer s;
  std::string wire;
  for (std::size_t i = 0; i < in.size(); i += step) s.feed(in.substr(i, step), wire);
  s.finish(wire);
  wire += "NOOP\r\n";  // what follows the terminator stays for the command parser

  ParserOptions o;
  o.max_line = 1 << 20;
  o.max_header = 1 << 20;
  Parser p(o);
  p.start_data();
  std::string got;
  int ends = 0;
  for (std::size_t i = 0; i < wire.size(); i += step + 1) {
    p.feed(std::string_view(wire).substr(i, step + 1));
    for (Event e = p.next(); e.kind != Event::Kind::NeedMore; e = p.next()) {
      if (e.kind == Event::Kind::DataChunk) {
        if (ends) std::abort();
        got += e.data;
      } else if (e.kind == Event::Kind::DataEnd) {
        ++ends;
      } else if (e.kind == Event::Kind::Command) {
        if (ends != 1 || e.command.verb != Verb::Noop) std::abort();
        ++ends;
      } else {
        std::abort();
      }
    }
  }
  if (ends != 2 || got != crlf_normalise(in)) std::abort();
  return 0;
}

// Fuzz target: the POP3 command parser (RFC 1939, RFC 2449 limits). Oracles:
// the same events whatever the split, the 255-octet line limit holds for
// every accepted command, and buffering stays bounded.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/proto/pop3/parser.hpp"

using namespace moat::proto::pop3;

namespace {

std::vector<std::string> run(std::string_view in, std::size_t step) {
  Parser p;
  std::vector<std::string> out;
  for (std::size_t i = 0; i < in.size(); i += step) {
    p.feed(in.substr(i, step));
    for (;;) {
      Event e = p.next();
      if (e.kind == Event::Kind::NeedMore) break;
      std::string s = std::to_string(int(e.kind)) + e.line + std::string(moat::errc_name(e.error.code));
      if (e.kind == Event::Kind::Command) {
        std::size_t len = verb_name(e.command.verb).size();
        s += verb_name(e.command.verb);
        for (const auto& a : e.command.args) {
          s += "|" + a;
          len += 1 + a.size();
          if (a.empty()) std::abort();
        }
        if (len + 2 > kMaxLine) std::abort();
        if (e.command.verb == Verb::Auth && e.command.args.size() == 1) p.expect_raw_line();
      }
      out.push_back(s);
    }
    if (p.buffered() > kMaxAuthLine + step) std::abort();
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t step = 1 + data[0] % 13;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  if (run(in, in.size() + 1) != run(in, step)) std::abort();
  return 0;
}

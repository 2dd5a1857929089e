// libFuzzer target for the SMTP reply parser (common/proto/smtp_reply.hpp):
// arbitrary bytes fed at a split point from the first byte; every complete
// reply must survive a round trip (write back as wire lines, parse again).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/proto/smtp_reply.hpp"

using moat::proto::smtp::ReplyParser;

namespace {

std::string to_wire(const moat::proto::smtp::Reply& r) {
  std::string out;
  for (std::size_t i = 0; i < r.lines.size(); ++i) {
    out += std::to_string(r.code);
    out += i + 1 == r.lines.size() ? ' ' : '-';
    out += r.lines[i];
    out += "\r\n";
  }
  return out;
}

void check_round_trip(const moat::proto::smtp::Reply& r) {
  auto again = moat::proto::smtp::parse_reply(to_wire(r));
  // Lines can only have grown by the separator space, so limits still hold
  // unless the original was right at a limit; then an error is acceptable.
  if (!again) return;
  if (again->code != r.code || again->lines != r.lines || again->enhanced != r.enhanced) std::abort();
  (void)moat::proto::smtp::parse_ehlo(r);
  (void)r.str();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::size_t split = data[0];
  std::string_view all(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (split > all.size()) split = all.size();
  ReplyParser p(ReplyParser::Limits{256, 4096, 64});
  for (std::string_view part : {all.substr(0, split), all.substr(split)}) {
    while (!part.empty()) {
      auto st = p.feed(part);
      if (st == ReplyParser::State::Error) return 0;
      if (st == ReplyParser::State::Complete) check_round_trip(p.take());
    }
  }
  return 0;
}

// Fuzz target: the streaming smtp::Parser as a session drives it. The first
// bytes choose options; then each step takes a chunk size from the input and
// feeds that many bytes. DATA and BDAT commands switch modes. Checks the
// invariants: message_size() <= max_message, bounded buffering, chunks free
// of bare CR/LF unless BINARYMIME, and a body that never outgrows max_message.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/proto/smtp_parser.hpp"

using namespace moat;
using namespace moat::proto::smtp;

namespace {

void check_crlf_only(std::string_view d, char& prev) {
  for (char c : d) {
    if (prev == '\r' && c != '\n') std::abort();
    if (c == '\n' && prev != '\r') std::abort();
    prev = c;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  ParserOptions opt;
  opt.max_line = 8 + data[0] % 120;
  opt.max_header = data[1] % 200;
  opt.max_message = data[2] % 2 ? 300 : 5000;
  opt.bare_line = data[3] & 1 ? config::BareLinePolicy::Normalize : config::BareLinePolicy::Reject;
  const bool binary = data[3] & 2;
  Parser p(opt);
  p.set_binary(binary);
  std::size_t i = 4;
  std::string body;  // decoded DATA body so far
  char prev = '\n';
  bool in_data = false;
  while (i < size) {
    const std::size_t n = std::min<std::size_t>(1 + data[i] % 64, size - i - 1);
    ++i;
    p.feed(std::string_view(reinterpret_cast<const char*>(data + i), n));
    i += n;
    for (;;) {
      Event e = p.next();
      if (e.kind == Event::Kind::NeedMore) break;
      if (p.message_size() > opt.max_message) std::abort();
      switch (e.kind) {
        case Event::Kind::Command:
          if (e.command.verb == Verb::Data) {
            p.start_data();
            in_data = true;
            body.clear();
            prev = '\n';
          } else if (e.command.verb == Verb::Bdat) {
            p.start_bdat(e.command.bdat_size % 4096, e.command.bdat_last);
            in_data = false;
            prev = '\n';
          } else if (e.command.verb == Verb::Rset) {
            p.reset_message();
            p.set_binary(binary);
          }
          break;
        case Event::Kind::DataChunk:
          if (e.data.empty() || e.data.size() > 64 * 1024 + 2) std::abort();
          if (!(binary && p.mode() == Parser::Mode::Bdat)) check_crlf_only(e.data, prev);
          if (in_data) body += e.data;
          break;
        case Event::Kind::DataEnd:
          if (body.size() != p.message_size()) std::abort();
          [[fallthrough]];
        case Event::Kind::DataError:
        case Event::Kind::BdatChunkEnd:
          if (p.mode() != Parser::Mode::Command) std::abort();
          in_data = false;
          break;
        default:
          break;
      }
    }
    if (p.mode() == Parser::Mode::Command && p.buffered() >= opt.max_line) std::abort();
    if (p.mode() != Parser::Mode::Command && p.buffered() != 0) std::abort();
  }
  return 0;
}

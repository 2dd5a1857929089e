// libFuzzer target for the queue file reader (gateway/queue/queue_file.hpp).
// Parses with and without the checksum (so the fuzzer reaches the record
// parsers); a file that parses must re-encode to a file that parses alike.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/queue/queue_file.hpp"

using namespace moat::gateway;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)qf::parse_queue_file(bytes);
  auto f = qf::parse_queue_file(bytes, {false});
  if (!f) return 0;
  // Round trip: envelope and content re-encoded, then parsed again.
  std::string out = qf::encode_head(f->envelope);
  for (auto [off, len] : f->content) qf::put_record(out, qf::Rec::Content, bytes.substr(off, len));
  for (const auto& p : f->prepend) qf::put_record(out, qf::Rec::Prepend, p);
  out += qf::encode_end(out.size(), qf::crc32c(0, out));
  auto g = qf::parse_queue_file(out);
  if (!g || g->envelope.sender != f->envelope.sender ||
      g->envelope.recipients.size() != f->envelope.recipients.size() || g->content_size != f->content_size ||
      g->prepend != f->prepend)
    std::abort();
  for (std::size_t i = 0; i < f->envelope.recipients.size(); ++i)
    if (g->envelope.recipients[i].address != f->envelope.recipients[i].address) std::abort();
  return 0;
}

// Fuzz target: the moat-scand frame decoder and payload readers
// (common/proto/scand). The input is fed at a split point taken from its
// first byte; every decoded payload must survive encode -> decode unchanged
// (round-trip oracle), and the decoder must never hold more than one frame.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/proto/scand/scand.hpp"

using namespace moat::proto::scand;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t step = 1 + data[0] % 17;
  Limits lim;
  lim.max_frame = 4096;
  lim.max_items = 64;
  lim.max_name = 256;
  Decoder d(lim);
  for (std::size_t i = 0; i < in.size(); i += step) {
    if (!d.feed(in.substr(i, step))) return 0;
    if (d.buffered() > 4 + lim.max_frame + step) std::abort();
    while (d.has_frame()) {
      Frame f = d.next();
      if (f.type == FrameType::ScanRequest) {
        auto r = decode_request(f.payload, lim);
        if (!r) continue;
        std::string again = encode(*r);
        if (again.substr(5) != f.payload) std::abort();
        auto r2 = decode_request(std::string_view(again).substr(5), lim);
        if (!r2 || !(*r2 == *r)) std::abort();
      } else if (f.type == FrameType::ScanReply) {
        auto r = decode_reply(f.payload, lim);
        if (!r) continue;
        std::string again = encode(*r);
        if (again.substr(5) != f.payload) std::abort();
      }
    }
  }
  return 0;
}

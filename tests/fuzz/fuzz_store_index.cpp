// libFuzzer target for the mailbox store's readers (store/index_format.hpp):
// the input is read as an index log as found on disk, then framed with a
// correct CRC so the record parsers are reached, and as a body file header.
// A record that parses must re-encode to one that parses to the same fields.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "store/index_format.hpp"

using namespace moat::store;
using namespace moat::store::format;

namespace {

bool same(const Record& a, const Record& b) {
  return a.type == b.type && a.header.uidvalidity == b.header.uidvalidity &&
         a.header.mailbox_guid == b.header.mailbox_guid && a.header.uidnext == b.header.uidnext &&
         a.header.modseq == b.header.modseq && a.msg.uid == b.msg.uid && a.msg.modseq == b.msg.modseq &&
         a.msg.internaldate == b.msg.internaldate && a.msg.size == b.msg.size && a.msg.guid == b.msg.guid &&
         a.msg.flags == b.msg.flags && a.msg.keywords == b.msg.keywords && a.msg.envelope == b.msg.envelope &&
         a.msg.bodystructure == b.msg.bodystructure && a.msg.pack == b.msg.pack &&
         a.msg.pack_offset == b.msg.pack_offset && a.modseq == b.modseq && a.uids == b.uids;
}

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(char((v >> (8 * i)) & 0xFF));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // As a log on disk.
  std::string_view rest = bytes;
  while (!rest.empty()) {
    auto r = decode(rest);
    if (r.state != ReadState::Ok) break;
    if (r.consumed == 0 || r.consumed > rest.size()) std::abort();
    rest.remove_prefix(r.consumed);
  }
  // As one payload with a good frame.
  if (!bytes.empty() && bytes.size() <= kMaxRecord) {
    std::string frame;
    put_u32(frame, std::uint32_t(bytes.size()));
    put_u32(frame, crc32(bytes));
    frame += bytes;
    auto r = decode(frame);
    if (r.state == ReadState::NeedMore) std::abort();
    if (r.state == ReadState::Ok) {
      auto again = decode(encode(r.record));
      if (again.state != ReadState::Ok || !same(r.record, again.record)) std::abort();
    }
  }
  // As a body file.
  auto h = decode_body_header(bytes);
  if (h) {
    auto again = decode_body_header(encode_body_header(h->first));
    if (!again || again->first.guid != h->first.guid || again->first.size != h->first.size ||
        again->first.owners != h->first.owners || again->first.crc != h->first.crc)
      std::abort();
  }
  return 0;
}

// Unit tests for the store's byte formats (store/index_format): index
// records round trip, are read back when fed in pieces (one byte at a time
// and at odd split points), and damage is told apart from a torn tail.
#include <catch2/catch.hpp>

#include "store/index_format.hpp"

using namespace moat;
using namespace moat::store;
using namespace moat::store::format;

namespace {

std::vector<Record> sample_records() {
  std::vector<Record> out;
  Record h;
  h.type = RecordType::Header;
  h.header = {1700000000, std::string(32, 'b'), 7, 42};
  out.push_back(h);
  Record a;
  a.type = RecordType::Append;
  a.msg.uid = 300;
  a.msg.modseq = 1ull << 40;
  a.msg.internaldate = -5;  // before 1970 survives (zigzag)
  a.msg.size = 123456789;
  a.msg.guid = "0123456789abcdef0123456789abcdef";
  a.msg.flags = kSeen | kDraft;
  a.msg.keywords = {"$Forwarded", "Ünïcode"};
  a.msg.envelope = "(\"Mon, 1 Jan 2026 00:00:00 +0000\" \"hi\" NIL NIL NIL NIL NIL NIL NIL NIL)";
  a.msg.bodystructure = std::string(5000, 'B');
  out.push_back(a);
  Record packed = a;  // a body in a pack file: number and offset ride along
  packed.msg.uid = 301;
  packed.msg.pack = 7;
  packed.msg.pack_offset = 1ull << 33;
  out.push_back(packed);
  Record f;
  f.type = RecordType::Flags;
  f.msg.uid = 300;
  f.msg.modseq = 99;
  f.msg.flags = kDeleted;
  out.push_back(f);
  Record moved;
  moved.type = RecordType::Relocate;
  moved.msg.uid = 301;
  moved.msg.pack = 8;
  moved.msg.pack_offset = 4096;
  out.push_back(moved);
  Record c;
  c.type = RecordType::Cache;
  c.msg.uid = 300;
  c.msg.envelope = "E";
  out.push_back(c);
  Record e;
  e.type = RecordType::Expunge;
  e.modseq = 100;
  e.uids = {{300, 100}, {301, 100}};
  out.push_back(e);
  Record v;
  v.type = RecordType::Vanished;
  v.uids = {{1, 5}, {2, 9}};
  out.push_back(v);
  return out;
}

void check_same(const Record& a, const Record& b) {
  REQUIRE(a.type == b.type);
  CHECK(a.header.uidvalidity == b.header.uidvalidity);
  CHECK(a.header.mailbox_guid == b.header.mailbox_guid);
  CHECK(a.header.uidnext == b.header.uidnext);
  CHECK(a.header.modseq == b.header.modseq);
  CHECK(a.msg.uid == b.msg.uid);
  CHECK(a.msg.modseq == b.msg.modseq);
  CHECK(a.msg.internaldate == b.msg.internaldate);
  CHECK(a.msg.size == b.msg.size);
  CHECK(a.msg.guid == b.msg.guid);
  CHECK(a.msg.flags == b.msg.flags);
  CHECK(a.msg.keywords == b.msg.keywords);
  CHECK(a.msg.envelope == b.msg.envelope);
  CHECK(a.msg.bodystructure == b.msg.bodystructure);
  CHECK(a.msg.pack == b.msg.pack);
  CHECK(a.msg.pack_offset == b.msg.pack_offset);
  CHECK(a.uids == b.uids);
}

// Reads records from a buffer that grows by `step` bytes at a time, the way
// a reader following a file being appended to sees it.
std::vector<Record> read_in_steps(const std::string& log, std::size_t step) {
  std::vector<Record> out;
  std::size_t pos = 0, avail = 0;
  while (pos < log.size()) {
    avail = std::min(log.size(), avail + step);
    for (;;) {
      auto r = decode(std::string_view(log).substr(pos, avail - pos));
      if (r.state == ReadState::Damaged) FAIL("damaged at " << pos);
      if (r.state == ReadState::NeedMore) break;
      out.push_back(r.record);
      pos += r.consumed;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("CRC-32 matches the reference value", "[store][format]") {
  CHECK(crc32("123456789") == 0xCBF43926u);
  CHECK(crc32("") == 0);
  CHECK(crc32("6789", crc32("12345")) == 0xCBF43926u);
}

TEST_CASE("CRC-32 eight bytes at a time equals the bitwise definition", "[store][format]") {
  // The reference: one bit at a time, straight from the polynomial.
  auto slow = [](std::string_view s, std::uint32_t crc) {
    crc = ~crc;
    for (unsigned char c : s) {
      crc ^= c;
      for (int k = 0; k < 8; ++k) crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
  };
  std::string data;
  std::uint32_t x = 12345;
  for (int i = 0; i < 300; ++i) {
    x = x * 1103515245u + 12345u;
    data.push_back(char(x >> 24));
  }
  for (std::size_t len = 0; len <= data.size(); ++len) {
    INFO("length " << len);
    const auto part = std::string_view(data).substr(0, len);
    REQUIRE(crc32(part) == slow(part, 0));
    // Split at every odd point: chaining gives the same CRC.
    const std::size_t cut = len / 3;
    REQUIRE(crc32(part.substr(cut), crc32(part.substr(0, cut))) == slow(part, 0));
  }
}

TEST_CASE("index records round trip, whole and in pieces", "[store][format]") {
  auto recs = sample_records();
  std::string log;
  for (const auto& r : recs) log += encode(r);
  for (std::size_t step : {std::size_t(1), std::size_t(2), std::size_t(7), std::size_t(13), std::size_t(4096),
                           log.size()}) {
    INFO("step " << step);
    auto back = read_in_steps(log, step);
    REQUIRE(back.size() == recs.size());
    for (std::size_t i = 0; i < recs.size(); ++i) check_same(recs[i], back[i]);
  }
}

TEST_CASE("every truncation of a record is NeedMore, every bit flip is Damaged", "[store][format]") {
  auto recs = sample_records();
  const auto frame = encode(recs[1]);
  for (std::size_t cut = 0; cut < frame.size(); ++cut) {
    INFO("cut " << cut);
    CHECK(decode(std::string_view(frame).substr(0, cut)).state == ReadState::NeedMore);
  }
  // Flips in the payload or CRC are caught by the CRC; in the length field
  // they read as damage or as a longer record (NeedMore), never as a record.
  for (std::size_t i = 0; i < frame.size(); i += 5) {
    for (int bit : {0, 3, 7}) {
      auto bad = frame;
      bad[i] = char(bad[i] ^ (1 << bit));
      INFO("byte " << i << " bit " << bit);
      CHECK(decode(bad).state != ReadState::Ok);
    }
  }
}

TEST_CASE("hostile lengths do not allocate", "[store][format]") {
  // A length field of 4 GiB and a record claiming a 2^60-byte string.
  std::string huge("\xff\xff\xff\xff\0\0\0\0", 8);
  CHECK(decode(huge).state == ReadState::Damaged);
  Record a = sample_records()[1];
  auto frame = encode(a);
  // Patch the guid length varint to something enormous and fix the CRC.
  std::string payload = frame.substr(8);
  auto pos = payload.find(a.msg.guid);
  REQUIRE(pos != std::string::npos);
  payload[pos - 1] = char(0xFF);
  payload.insert(pos, "\xff\xff\xff\xff\xff\xff\xff\x0f");
  std::string patched;
  for (int i = 0; i < 4; ++i) patched.push_back(char((payload.size() >> (8 * i)) & 0xFF));
  auto crc = crc32(payload);
  for (int i = 0; i < 4; ++i) patched.push_back(char((crc >> (8 * i)) & 0xFF));
  patched += payload;
  CHECK(decode(patched).state == ReadState::Damaged);
}

TEST_CASE("body file headers round trip and reject damage", "[store][format]") {
  BodyHeader h;
  h.guid = "00112233445566778899aabbccddeeff";
  h.size = 1000;
  h.stored = 400;
  h.codec = Codec::Lz4;
  h.crc = 0xDEADBEEF;
  h.date = 1700000000;
  h.owners = {{"alice@example.test", std::string(32, 'a')}, {"bob", std::string(32, 'c')}};
  auto bytes = encode_body_header(h) + std::string(400, 'z');
  auto back = decode_body_header(bytes);
  REQUIRE(back.ok());
  CHECK(back->first.guid == h.guid);
  CHECK(back->first.size == 1000);
  CHECK(back->first.stored == 400);
  CHECK(back->first.codec == Codec::Lz4);
  CHECK(back->first.crc == 0xDEADBEEF);
  CHECK(back->first.date == 1700000000);
  CHECK(back->first.owners == h.owners);
  CHECK(back->second == bytes.size() - 400);
  for (std::size_t cut = 0; cut < back->second; ++cut) {
    INFO("cut " << cut);
    CHECK_FALSE(decode_body_header(std::string_view(bytes).substr(0, cut)).ok());
  }
  auto bad = bytes;
  bad[0] = 'X';
  CHECK_FALSE(decode_body_header(bad).ok());
  auto no_guid = bytes;
  no_guid.replace(no_guid.find("guid "), 5, "gxid ");
  CHECK_FALSE(decode_body_header(no_guid).ok());
}

TEST_CASE("body headers name their codec; an unknown one is damage", "[store][format]") {
  BodyHeader h;
  h.guid = "00112233445566778899aabbccddeeff";
  for (const auto codec : {Codec::None, Codec::Lz4, Codec::Zstd}) {
    h.codec = codec;
    const auto bytes = encode_body_header(h);
    CHECK(bytes.find("compression " + std::string(codec_name(codec)) + "\n") != std::string::npos);
    auto back = decode_body_header(bytes);
    REQUIRE(back.ok());
    CHECK(back->first.codec == codec);
  }
  h.codec = Codec::Zstd;
  auto bytes = encode_body_header(h);
  // same length, so the length prefix still holds
  bytes.replace(bytes.find("compression zstd"), 16, "compression gzip");
  CHECK(decode_body_header(bytes).error().code == moat::Errc::Corrupt);
}

// The mailbox index log and the body file header: byte formats only, no I/O
// (sans-I/O, so the readers can be fuzzed and tested byte by byte). The
// index is append-only (Dovecot's lesson): every change is one record
//   u32 payload length | u32 CRC-32 of payload | payload (u8 type, fields)
// little-endian, fields as LEB128 varints and length-prefixed strings. A
// record that runs past the end of the file is a torn tail (crash during
// write); a CRC mismatch with more data after it is damage.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "store/mailbox_store.hpp"

namespace moat::store::format {

constexpr std::uint32_t kMaxRecord = 16u << 20;   // envelope/bodystructure strings are bounded by this
constexpr std::size_t kMaxKeywords = 256;         // per message
constexpr std::size_t kMaxString = 4u << 20;

std::uint32_t crc32(std::string_view data, std::uint32_t crc = 0);

enum class RecordType : std::uint8_t {
  Header = 1,    // uidvalidity, mailbox guid, uidnext floor, modseq floor
  Append = 2,    // a message (also copies and rebuilt entries); ends with pack number and offset when packed
  Flags = 3,     // new flags/keywords of one message
  Expunge = 4,   // UIDs removed at one modseq
  Cache = 5,     // cached envelope/bodystructure of one message
  Vanished = 6,  // compacted history: (uid, modseq) of expunged messages
  Relocate = 7,  // the body of one message moved to another pack (uid, pack, offset)
};

struct Header {
  std::uint32_t uidvalidity = 0;
  std::string mailbox_guid;
  std::uint32_t uidnext = 1;
  std::uint64_t modseq = 1;
};

struct Record {
  RecordType type = RecordType::Header;
  Header header;                 // Header
  MessageInfo msg;               // Append (all), Flags (uid, modseq, flags, keywords), Cache (uid, strings),
                                 // Relocate (uid, pack, pack_offset)
  std::uint64_t modseq = 0;      // Expunge
  std::vector<std::pair<std::uint32_t, std::uint64_t>> uids;  // Expunge (modseq ignored), Vanished
};

// One framed record, ready to append.
std::string encode(const Record& r);

enum class ReadState { Ok, NeedMore, Damaged };
struct ReadResult {
  ReadState state = ReadState::NeedMore;
  Record record;
  std::size_t consumed = 0;      // bytes of the frame when Ok
};
// Decodes the record at the start of `data`. NeedMore: the frame is longer
// than `data` (torn tail if at end of file). Damaged: bad CRC, bad length or
// a payload that does not parse.
ReadResult decode(std::string_view data);

// --- body files ---
// "MOATMSG1" | u32 header length | header | stored bytes. The header is text
// lines "key value": guid, size (raw bytes), stored (bytes on disk),
// compression (none|lz4|zstd), crc (of the raw bytes, hex), date, and one
// "owner USER MAILBOX-GUID" per delivery target so a lost index can be rebuilt.
enum class Codec : std::uint8_t { None, Lz4, Zstd };
std::string_view codec_name(Codec c);
std::optional<Codec> codec_named(std::string_view name);
struct BodyHeader {
  std::string guid;
  std::uint64_t size = 0;
  std::uint64_t stored = 0;
  Codec codec = Codec::None;
  std::uint32_t crc = 0;
  std::int64_t date = 0;
  std::vector<std::pair<std::string, std::string>> owners;
};
constexpr std::string_view kBodyMagic = "MOATMSG1";
constexpr std::size_t kMaxBodyHeader = 1u << 20;
std::string encode_body_header(const BodyHeader& h);
// Parses the prefix (magic, length, header) of a body file. Returns the
// header and the offset where the stored bytes begin; NeedMore as a Corrupt
// error with detail "short" when `data` is shorter than the header.
Result<std::pair<BodyHeader, std::size_t>> decode_body_header(std::string_view data);

bool valid_guid(std::string_view s);  // 32 lower-case hex digits

}  // namespace moat::store::format

// The queue file format (docs/queue.md): magic, typed records
// [type:1][len:u32 LE][payload], an END record with a CRC32C over every byte
// before it, then append-only progress records. Postfix's record files
// (src/global/rec_type.h) are the model; a file without a valid END is torn.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/envelope.hpp"
#include "common/error.hpp"

namespace moat::gateway::qf {

inline constexpr std::string_view kMagic = "MOATQF1\n";

// Record types. Values are on disk: never renumber, only add.
enum class Rec : std::uint8_t {
  Arrival = 0x01,     // i64 LE microseconds since the Unix epoch
  ClientIp = 0x02,    // text
  ClientPort = 0x03,  // u16 LE
  ClientName = 0x04,  // reverse DNS name
  Helo = 0x05,
  Protocol = 0x06,
  AuthUser = 0x07,
  Tls = 0x08,         // str(version) str(cipher)
  Envid = 0x09,       // xtext as received
  Params = 0x0a,      // ret:u8 body:u8 smtputf8:u8 declared_size:u64
  Sender = 0x0b,      // "" is <>
  Recipient = 0x0c,   // notify:u8 str(address) str(orcpt)
  Content = 0x10,     // message bytes, CRLF lines; many chunks allowed
  Prepend = 0x11,     // one complete header line (CRLF) added after spooling
  End = 0x1f,         // u64 length of everything before this record, u32 CRC32C of it
  // --- after END: progress (each payload ends with its own CRC32C) ---
  RcptFinal = 0x20,   // idx:u32 status:u8 str(dsn) str(relay) str(diagnostic)
  Attempt = 0x21,     // attempts:u32 next_attempt_us:i64
  Notified = 0x22,    // idx:u32 (a DSN for this bounced recipient was queued or skipped)
};

// Per-recipient delivery state; Deferred entries carry the last reason.
enum class RcptState : std::uint8_t { Pending = 0, Sent = 1, Bounced = 2, Deferred = 3 };

struct RcptProgress {
  RcptState state = RcptState::Pending;
  std::string dsn;         // "5.1.1"
  std::string relay;       // "mx.example.org[192.0.2.1]:25" or "none"
  std::string diagnostic;  // remote reply or local reason
  bool notified = false;   // the bounce for this recipient was handled
  bool final() const { return state == RcptState::Sent || state == RcptState::Bounced; }
};

struct QueueFile {
  Envelope envelope;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> content;  // (offset, length) in the file
  std::uint64_t content_size = 0;
  std::vector<std::string> prepend;    // header lines, CRLF-terminated
  std::vector<RcptProgress> progress;  // one per envelope recipient
  std::uint32_t attempts = 0;
  std::optional<std::chrono::system_clock::time_point> next_attempt;
  std::uint64_t end_offset = 0;        // first byte after END: where progress starts
  // The file as read by read_queue_file when it is at most kKeepBytes, so
  // delivery sends from memory instead of reading the file a second time.
  std::string bytes;
  static constexpr std::size_t kKeepBytes = 1 << 20;
};

// Bounds on what a reader accepts, so a hostile or damaged file cannot make
// it allocate without limit (lengths are checked against the bytes present too).
inline constexpr std::uint32_t kMaxContentRecord = 16u << 20;
inline constexpr std::uint32_t kMaxTextRecord = 64u << 10;
inline constexpr std::size_t kMaxRecipients = 100000;

std::uint32_t crc32c(std::uint32_t crc, std::string_view data);

// --- writing ---
void put_record(std::string& out, Rec type, std::string_view payload);
// Magic + envelope records.
std::string encode_head(const Envelope& env);
// END record for `before` (every byte written so far, magic included).
std::string encode_end(std::uint64_t length, std::uint32_t crc);
// Progress records carry their own CRC so a torn or zero-filled tail is ignored.
std::string encode_rcpt_final(std::size_t idx, const RcptProgress& p);
std::string encode_attempt(std::uint32_t attempts, std::chrono::system_clock::time_point next);
std::string encode_notified(std::size_t idx);

// --- reading ---
struct ParseOptions {
  bool verify_checksum = true;  // the fuzzer turns this off to reach deeper code
};
// Errc::Corrupt with a detail naming the malformation and its offset.
Result<QueueFile> parse_queue_file(std::string_view bytes, ParseOptions opt = {});
// Reads the whole file (blocking: call it on the blocking pool).
Result<QueueFile> read_queue_file(const std::filesystem::path& path);
// The message bytes as stored (content records only, no prepend).
Result<std::string> read_content(const std::filesystem::path& path, const QueueFile& qf,
                                 std::uint64_t limit = UINT64_MAX);

// Appends bytes to an existing queue file with one write(2); no fsync (a lost
// progress record means a duplicate delivery, never a lost message).
Status append_progress(const std::filesystem::path& path, std::string_view records);

// ^[0-9A-Za-z]{10,20}$: checked before any id from outside touches a path.
bool valid_queue_id(std::string_view id);

}  // namespace moat::gateway::qf

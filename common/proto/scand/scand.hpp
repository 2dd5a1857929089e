// The moatd <-> moat-scand protocol, sans-I/O: length-prefixed frames over a
// SOCK_STREAM Unix socket. moatd sends one ScanRequest (the raw message plus
// the parts its MIME parser decoded) and moat-scand answers one ScanReply.
//
//   frame   = length:u32be  type:u8  payload        (length counts type+payload)
//   request = id:u32 count:u16 { kind:u8 name_len:u16 name data_len:u32 data }*
//   reply   = id:u32 verdict:u8 detail_len:u16 detail count:u16
//             { item:u16 verdict:u8 sig_len:u16 signature }*
//   ping / pong: empty payload (supervisor health check)
//
// Every length is checked against Limits before anything is buffered past
// it, so a hostile or broken peer costs at most max_frame bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace moat::proto::scand {

enum class FrameType : std::uint8_t { ScanRequest = 1, ScanReply = 2, Ping = 3, Pong = 4 };

enum class ItemKind : std::uint8_t { Message = 1, Part = 2 };

struct Item {
  ItemKind kind = ItemKind::Part;
  std::string name;  // the part's file name, or "" (never a path on the scanner side)
  std::string data;
  bool operator==(const Item&) const = default;
};

struct ScanRequest {
  std::uint32_t id = 0;
  std::vector<Item> items;
  bool operator==(const ScanRequest&) const = default;
};

// Ordered by severity: the overall verdict is the worst of the findings.
enum class Verdict : std::uint8_t { Clean = 0, Virus = 1, LimitExceeded = 2, Error = 3 };
std::string_view verdict_name(Verdict v);

struct Finding {
  std::uint16_t item = 0;       // index into ScanRequest::items
  Verdict verdict = Verdict::Virus;
  std::string signature;        // ClamAV's name, e.g. "Win.Test.EICAR_HDB-1"
  bool operator==(const Finding&) const = default;
};

struct ScanReply {
  std::uint32_t id = 0;
  Verdict verdict = Verdict::Clean;
  std::string detail;           // for Error: what went wrong
  std::vector<Finding> findings;
  bool operator==(const ScanReply&) const = default;
};

struct Limits {
  std::size_t max_frame = 64u << 20;   // type + payload
  std::size_t max_items = 4096;
  std::size_t max_name = 1024;         // item names, signatures, detail
};

struct Frame {
  FrameType type = FrameType::Ping;
  std::string payload;
};

// An item to send, its bytes where they lie (the message, a decoded part):
// encode_request copies them once, into the frame.
struct ItemRef {
  ItemKind kind = ItemKind::Part;
  std::string name;
  std::string_view data;
};

// Frame writer.
std::string encode_frame(FrameType type, std::string_view payload);
std::string encode_request(std::uint32_t id, const std::vector<ItemRef>& items);  // a whole frame
std::string encode(const ScanRequest& r);   // a whole frame
std::string encode(const ScanReply& r);     // a whole frame

// Payload readers: Errc::Invalid on any malformed or over-limit field, or
// trailing bytes.
Result<ScanRequest> decode_request(std::string_view payload, const Limits& limits);
Result<ScanReply> decode_reply(std::string_view payload, const Limits& limits);

// Splits a byte stream into frames. feed() any split of the stream; next()
// hands out complete frames in order. After an error every call fails the
// same way (the connection is to be closed).
class Decoder {
 public:
  explicit Decoder(Limits limits = {}) : limits_(limits) {}
  Status feed(std::string_view bytes);
  bool has_frame() const { return !frames_.empty(); }
  Frame next();                       // precondition: has_frame()
  std::size_t buffered() const { return buf_.size(); }

 private:
  Status parse();
  Limits limits_;
  std::string buf_;
  std::deque<Frame> frames_;
  std::optional<Error> error_;
};

}  // namespace moat::proto::scand

// moatd <-> moat-scand frames (see scand.hpp).
#include "common/proto/scand/scand.hpp"

#include <optional>

namespace moat::proto::scand {
namespace {

void put_u8(std::string& o, std::uint8_t v) { o.push_back(char(v)); }
void put_u16(std::string& o, std::uint16_t v) {
  o.push_back(char(v >> 8));
  o.push_back(char(v & 0xff));
}
void put_u32(std::string& o, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) o.push_back(char((v >> s) & 0xff));
}
void put_str16(std::string& o, std::string_view s) {
  put_u16(o, std::uint16_t(s.size()));
  o.append(s);
}

// Reads fields from a payload; any overrun sets failed and returns zeros.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool failed() const { return failed_; }
  bool done() const { return pos_ == in_.size(); }
  // A verdict byte; nullopt when it names none.
  std::optional<Verdict> verdict() {
    const auto v = u(1);
    if (v > std::uint32_t(Verdict::Error)) return std::nullopt;
    return Verdict(v);
  }
  // A u16-length string; nullopt when it is longer than max.
  std::optional<std::string_view> str16(std::size_t max) {
    const std::size_t n = u(2);
    if (n > max) return std::nullopt;
    return bytes(n);
  }
  std::uint32_t u(int bytes) {
    if (in_.size() - pos_ < std::size_t(bytes)) return fail();
    std::uint32_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | std::uint8_t(in_[pos_++]);
    return v;
  }
  std::string_view bytes(std::size_t n) {
    if (in_.size() - pos_ < n) {
      fail();
      return {};
    }
    auto s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }

 private:
  std::uint32_t fail() {
    failed_ = true;
    pos_ = in_.size();
    return 0;
  }
  std::string_view in_;
  std::size_t pos_ = 0;
  bool failed_ = false;
};

// A verdict and the text after it: the reply's verdict and detail, or a
// finding's verdict and signature. False when the verdict names none or the
// text is longer than max.
bool read_judgement(Reader& rd, std::size_t max, Verdict& verdict, std::string& text) {
  const auto v = rd.verdict();
  const auto t = rd.str16(max);
  if (!v || !t) return false;
  verdict = *v;
  text = *t;
  return true;
}

Error invalid(std::string what) { return Error{Errc::Invalid, "scand protocol: " + std::move(what)}; }

}  // namespace

std::string_view verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Clean: return "clean";
    case Verdict::Virus: return "virus";
    case Verdict::LimitExceeded: return "limit_exceeded";
    case Verdict::Error: return "error";
  }
  return "?";
}

std::string encode_frame(FrameType type, std::string_view payload) {
  std::string o;
  o.reserve(5 + payload.size());
  put_u32(o, std::uint32_t(payload.size() + 1));
  put_u8(o, std::uint8_t(type));
  o.append(payload);
  return o;
}

std::string encode_request(std::uint32_t id, const std::vector<ItemRef>& items) {
  std::size_t total = 5 + 6;
  for (const auto& it : items) total += 7 + it.name.size() + it.data.size();
  std::string o;
  o.reserve(total);
  put_u32(o, std::uint32_t(total - 4));
  put_u8(o, std::uint8_t(FrameType::ScanRequest));
  put_u32(o, id);
  put_u16(o, std::uint16_t(items.size()));
  for (const auto& it : items) {
    put_u8(o, std::uint8_t(it.kind));
    put_str16(o, it.name);
    put_u32(o, std::uint32_t(it.data.size()));
    o.append(it.data);
  }
  return o;
}

std::string encode(const ScanRequest& r) {
  std::vector<ItemRef> refs;
  refs.reserve(r.items.size());
  for (const auto& it : r.items) refs.push_back(ItemRef{it.kind, it.name, it.data});
  return encode_request(r.id, refs);
}

std::string encode(const ScanReply& r) {
  std::string p;
  put_u32(p, r.id);
  put_u8(p, std::uint8_t(r.verdict));
  put_str16(p, r.detail);
  put_u16(p, std::uint16_t(r.findings.size()));
  for (const auto& f : r.findings) {
    put_u16(p, f.item);
    put_u8(p, std::uint8_t(f.verdict));
    put_str16(p, f.signature);
  }
  return encode_frame(FrameType::ScanReply, p);
}

Result<ScanRequest> decode_request(std::string_view payload, const Limits& limits) {
  Reader rd(payload);
  ScanRequest r;
  r.id = rd.u(4);
  std::size_t count = rd.u(2);
  if (count > limits.max_items) return invalid("too many items");
  for (std::size_t i = 0; i < count && !rd.failed(); ++i) {
    Item it;
    auto kind = rd.u(1);
    if (kind != std::uint8_t(ItemKind::Message) && kind != std::uint8_t(ItemKind::Part)) return invalid("bad item kind");
    it.kind = ItemKind(kind);
    auto name = rd.str16(limits.max_name);
    if (!name) return invalid("item name too long");
    it.name = *name;
    it.data = rd.bytes(rd.u(4));
    r.items.push_back(std::move(it));
  }
  if (rd.failed()) return invalid("truncated request");
  if (!rd.done()) return invalid("trailing bytes after request");
  return r;
}

Result<ScanReply> decode_reply(std::string_view payload, const Limits& limits) {
  Reader rd(payload);
  ScanReply r;
  r.id = rd.u(4);
  if (!read_judgement(rd, limits.max_name, r.verdict, r.detail)) return invalid("bad verdict or detail too long");
  std::size_t count = rd.u(2);
  if (count > limits.max_items) return invalid("too many findings");
  for (std::size_t i = 0; i < count && !rd.failed(); ++i) {
    Finding f;
    f.item = std::uint16_t(rd.u(2));
    if (!read_judgement(rd, limits.max_name, f.verdict, f.signature))
      return invalid("bad finding verdict or signature too long");
    r.findings.push_back(std::move(f));
  }
  if (rd.failed()) return invalid("truncated reply");
  if (!rd.done()) return invalid("trailing bytes after reply");
  return r;
}

Status Decoder::feed(std::string_view bytes) {
  if (error_) return *error_;
  buf_.append(bytes);
  return parse();
}

// Takes every complete frame off the front of buf_. The length is checked as
// soon as its 4 bytes are in, so at most one frame's worth is ever buffered.
Status Decoder::parse() {
  std::size_t pos = 0;
  while (buf_.size() - pos >= 4) {
    Reader rd(std::string_view(buf_).substr(pos, 4));
    std::size_t len = rd.u(4);
    if (len == 0 || len > limits_.max_frame) {
      error_ = invalid(len == 0 ? "empty frame" : "frame of " + std::to_string(len) + " bytes over the limit");
      buf_.clear();
      return *error_;
    }
    if (buf_.size() - pos - 4 < len) break;
    auto type = std::uint8_t(buf_[pos + 4]);
    if (type < 1 || type > std::uint8_t(FrameType::Pong)) {
      error_ = invalid("unknown frame type " + std::to_string(type));
      buf_.clear();
      return *error_;
    }
    frames_.push_back(Frame{FrameType(type), buf_.substr(pos + 5, len - 1)});
    pos += 4 + len;
  }
  buf_.erase(0, pos);
  return {};
}

Frame Decoder::next() {
  Frame f = std::move(frames_.front());
  frames_.pop_front();
  return f;
}

}  // namespace moat::proto::scand

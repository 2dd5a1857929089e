// See index_format.hpp. Decoders bound every length by what is left in the
// record before allocating (hostile or damaged files must not make us
// allocate gigabytes).
#include "store/index_format.hpp"

#include <charconv>
#include <cstdio>
#include <cstring>

#include <isa-l/crc.h>

namespace moat::store::format {
namespace {

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(char((v >> (8 * i)) & 0xFF));
}
std::uint32_t get_u32(std::string_view s) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[std::size_t(i)]);
  return v;
}

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(char(v)); }
  void var(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(char((v & 0x7F) | 0x80));
      v >>= 7;
    }
    out_.push_back(char(v));
  }
  void str(std::string_view s) {
    var(s.size());
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool u8(std::uint8_t& v) {
    if (s_.empty()) return fail();
    v = static_cast<std::uint8_t>(s_[0]);
    s_.remove_prefix(1);
    return true;
  }
  bool var(std::uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (s_.empty()) return fail();
      auto b = static_cast<std::uint8_t>(s_[0]);
      s_.remove_prefix(1);
      v |= std::uint64_t(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return fail();
  }
  bool u32(std::uint32_t& v) {
    std::uint64_t x;
    if (!var(x) || x > UINT32_MAX) return fail();
    v = std::uint32_t(x);
    return true;
  }
  bool i64(std::int64_t& v) {
    std::uint64_t x;
    if (!var(x)) return false;
    v = std::int64_t(x >> 1) ^ -std::int64_t(x & 1);  // zigzag
    return true;
  }
  bool str(std::string& v) {
    std::uint64_t n;
    if (!var(n) || n > s_.size() || n > kMaxString) return fail();
    v.assign(s_.substr(0, n));
    s_.remove_prefix(n);
    return true;
  }
  bool done() const { return ok_ && s_.empty(); }
  bool ok() const { return ok_; }
  std::size_t left() const { return s_.size(); }

 private:
  bool fail() { return ok_ = false; }
  std::string_view s_;
  bool ok_ = true;
};

void put_i64(Writer& w, std::int64_t v) { w.var((std::uint64_t(v) << 1) ^ std::uint64_t(v >> 63)); }

void put_keywords(Writer& w, const std::vector<std::string>& kw) {
  w.var(kw.size());
  for (const auto& k : kw) w.str(k);
}
bool get_keywords(Reader& r, std::vector<std::string>& kw) {
  std::uint64_t n;
  if (!r.var(n) || n > kMaxKeywords || n > r.left()) return false;
  kw.resize(n);
  for (auto& k : kw)
    if (!r.str(k)) return false;
  return true;
}

bool decode_payload(std::string_view payload, Record& rec) {
  Reader r(payload);
  std::uint8_t type;
  if (!r.u8(type)) return false;
  rec.type = RecordType(type);
  auto& m = rec.msg;
  switch (rec.type) {
    case RecordType::Header:
      r.u32(rec.header.uidvalidity);
      r.str(rec.header.mailbox_guid);
      r.u32(rec.header.uidnext);
      r.var(rec.header.modseq);
      break;
    case RecordType::Append:
      r.u32(m.uid);
      r.var(m.modseq);
      r.i64(m.internaldate);
      r.var(m.size);
      r.str(m.guid);
      r.u8(m.flags);
      if (r.ok() && !get_keywords(r, m.keywords)) return false;
      r.str(m.envelope);
      r.str(m.bodystructure);
      if (r.ok() && r.left() > 0) {  // a body in a pack file (absent: a file of its own)
        r.u32(m.pack);
        r.var(m.pack_offset);
        if (r.ok() && m.pack == 0) return false;
      }
      if (r.ok() && !valid_guid(m.guid)) return false;
      break;
    case RecordType::Flags:
      r.u32(m.uid);
      r.var(m.modseq);
      r.u8(m.flags);
      if (r.ok() && !get_keywords(r, m.keywords)) return false;
      break;
    case RecordType::Cache:
      r.u32(m.uid);
      r.str(m.envelope);
      r.str(m.bodystructure);
      break;
    case RecordType::Relocate:
      r.u32(m.uid);
      r.u32(m.pack);
      r.var(m.pack_offset);
      if (r.ok() && m.pack == 0) return false;
      break;
    case RecordType::Expunge:
    case RecordType::Vanished: {
      if (rec.type == RecordType::Expunge) r.var(rec.modseq);
      std::uint64_t n;
      if (!r.var(n) || n > r.left()) return false;
      rec.uids.resize(n);
      for (auto& [uid, ms] : rec.uids) {
        r.u32(uid);
        if (rec.type == RecordType::Vanished) r.var(ms);
        else ms = rec.modseq;
      }
      break;
    }
    default:
      return false;
  }
  return r.done();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.remove_suffix(1);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return s;
}

template <class T>
bool parse_num(std::string_view s, T& v, int base = 10) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

}  // namespace

// CRC-32 (IEEE, reflected: zlib's) from Intel's ISA-L, which picks a
// PCLMULQDQ/AVX-512 folding at run time: every FETCH checks the body's CRC,
// and a slice-by-8 table (2.4 GB/s here) was 12% of moatd's CPU in FETCH
// 1:*; ISA-L did 44 GB/s on the same 5 KB buffers.
std::uint32_t crc32(std::string_view data, std::uint32_t crc) {
  return crc32_gzip_refl(crc, reinterpret_cast<const unsigned char*>(data.data()), data.size());
}

bool valid_guid(std::string_view s) {
  if (s.size() != 32) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string encode(const Record& rec) {
  Writer w;
  w.u8(std::uint8_t(rec.type));
  const auto& m = rec.msg;
  switch (rec.type) {
    case RecordType::Header:
      w.var(rec.header.uidvalidity);
      w.str(rec.header.mailbox_guid);
      w.var(rec.header.uidnext);
      w.var(rec.header.modseq);
      break;
    case RecordType::Append:
      w.var(m.uid);
      w.var(m.modseq);
      put_i64(w, m.internaldate);
      w.var(m.size);
      w.str(m.guid);
      w.u8(m.flags);
      put_keywords(w, m.keywords);
      w.str(m.envelope);
      w.str(m.bodystructure);
      if (m.pack != 0) {
        w.var(m.pack);
        w.var(m.pack_offset);
      }
      break;
    case RecordType::Flags:
      w.var(m.uid);
      w.var(m.modseq);
      w.u8(m.flags);
      put_keywords(w, m.keywords);
      break;
    case RecordType::Cache:
      w.var(m.uid);
      w.str(m.envelope);
      w.str(m.bodystructure);
      break;
    case RecordType::Relocate:
      w.var(m.uid);
      w.var(m.pack);
      w.var(m.pack_offset);
      break;
    case RecordType::Expunge:
    case RecordType::Vanished:
      if (rec.type == RecordType::Expunge) w.var(rec.modseq);
      w.var(rec.uids.size());
      for (const auto& [uid, ms] : rec.uids) {
        w.var(uid);
        if (rec.type == RecordType::Vanished) w.var(ms);
      }
      break;
  }
  std::string payload = w.take();
  std::string out;
  out.reserve(payload.size() + 8);
  put_u32(out, std::uint32_t(payload.size()));
  put_u32(out, crc32(payload));
  out += payload;
  return out;
}

ReadResult decode(std::string_view data) {
  ReadResult res;
  if (data.size() < 8) return res;  // NeedMore
  std::uint32_t len = get_u32(data);
  std::uint32_t crc = get_u32(data.substr(4));
  if (len == 0 || len > kMaxRecord) {
    res.state = ReadState::Damaged;
    return res;
  }
  if (data.size() - 8 < len) return res;  // NeedMore
  auto payload = data.substr(8, len);
  if (crc32(payload) != crc || !decode_payload(payload, res.record)) {
    res.state = ReadState::Damaged;
    return res;
  }
  res.state = ReadState::Ok;
  res.consumed = 8 + std::size_t(len);
  return res;
}

namespace {
constexpr std::pair<std::string_view, Codec> kCodecs[] = {{"none", Codec::None}, {"lz4", Codec::Lz4}, {"zstd", Codec::Zstd}};
}  // namespace

std::string_view codec_name(Codec c) {
  for (const auto& [name, codec] : kCodecs)
    if (codec == c) return name;
  return "none";
}

std::optional<Codec> codec_named(std::string_view name) {
  for (const auto& [n, codec] : kCodecs)
    if (n == name) return codec;
  return std::nullopt;
}

std::string encode_body_header(const BodyHeader& h) {
  std::string t;
  t += "guid " + h.guid + "\n";
  t += "size " + std::to_string(h.size) + "\n";
  t += "stored " + std::to_string(h.stored) + "\n";
  t += "compression " + std::string(codec_name(h.codec)) + "\n";
  char crc[16];
  std::snprintf(crc, sizeof crc, "%08x", h.crc);
  t += std::string("crc ") + crc + "\n";
  t += "date " + std::to_string(h.date) + "\n";
  for (const auto& [user, mb] : h.owners) t += "owner " + user + " " + mb + "\n";
  std::string out(kBodyMagic);
  put_u32(out, std::uint32_t(t.size()));
  return out + t;
}

Result<std::pair<BodyHeader, std::size_t>> decode_body_header(std::string_view data) {
  constexpr std::size_t kPrefix = kBodyMagic.size() + 4;
  if (data.size() < kPrefix) return Error{Errc::Corrupt, "short"};
  if (data.substr(0, kBodyMagic.size()) != kBodyMagic) return Error{Errc::Corrupt, "not a body file"};
  std::uint32_t len = get_u32(data.substr(kBodyMagic.size()));
  if (len > kMaxBodyHeader) return Error{Errc::Corrupt, "body header too long"};
  if (data.size() - kPrefix < len) return Error{Errc::Corrupt, "short"};
  std::string_view text = data.substr(kPrefix, len);
  BodyHeader h;
  bool have[6] = {};
  while (!text.empty()) {
    auto nl = text.find('\n');
    if (nl == std::string_view::npos) return Error{Errc::Corrupt, "body header: unterminated line"};
    auto line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    auto sp = line.find(' ');
    if (sp == std::string_view::npos) return Error{Errc::Corrupt, "body header: bad line"};
    auto key = line.substr(0, sp);
    auto val = trim(line.substr(sp + 1));
    bool ok = true;
    if (key == "guid") ok = valid_guid(val), h.guid = std::string(val), have[0] = true;
    else if (key == "size") ok = parse_num(val, h.size), have[1] = true;
    else if (key == "stored") ok = parse_num(val, h.stored), have[2] = true;
    else if (key == "compression") {
      const auto c = codec_named(val);
      ok = c.has_value(), h.codec = c.value_or(Codec::None), have[3] = true;
    }
    else if (key == "crc") ok = parse_num(val, h.crc, 16), have[4] = true;
    else if (key == "date") ok = parse_num(val, h.date), have[5] = true;
    else if (key == "owner") {
      auto sp2 = val.find(' ');
      ok = sp2 != std::string_view::npos && valid_guid(val.substr(sp2 + 1));
      if (ok) h.owners.emplace_back(std::string(val.substr(0, sp2)), std::string(val.substr(sp2 + 1)));
    }
    if (!ok) return Error{Errc::Corrupt, "body header: bad " + std::string(key)};
  }
  for (bool b : have)
    if (!b) return Error{Errc::Corrupt, "body header: field missing"};
  return std::make_pair(std::move(h), kPrefix + std::size_t(len));
}

}  // namespace moat::store::format

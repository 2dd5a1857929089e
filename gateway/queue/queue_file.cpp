// Queue file encoder and reader (see queue_file.hpp, docs/queue.md). The
// reader trusts nothing: every length is bounded and checked against the
// bytes present, and every malformation is Errc::Corrupt with its offset.
#include "gateway/queue/queue_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cerrno>
#include <cstring>

namespace moat::gateway::qf {
namespace {

constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // Castagnoli, reflected
    t[i] = c;
  }
  return t;
}
constexpr auto kCrcTable = make_crc_table();

void put_u8(std::string& o, std::uint8_t v) { o.push_back(char(v)); }
void put_u32(std::string& o, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) o.push_back(char((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& o, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) o.push_back(char((v >> (8 * i)) & 0xff));
}
void put_str(std::string& o, std::string_view s) {
  put_u32(o, std::uint32_t(s.size()));
  o.append(s);
}

std::uint32_t get_u32(std::string_view b, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t(std::uint8_t(b[at + i])) << (8 * i);
  return v;
}
std::uint64_t get_u64(std::string_view b, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t(std::uint8_t(b[at + i])) << (8 * i);
  return v;
}

std::int64_t to_us(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
std::chrono::system_clock::time_point from_us(std::int64_t us) {
  // Damaged values must not overflow the nanosecond clock (UB).
  constexpr std::int64_t kLimit = INT64_MAX / 1000;
  us = std::clamp(us, -kLimit, kLimit);
  return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::microseconds(us)));
}

// Reads fields out of one record payload; any overrun sets failed.
class Fields {
 public:
  explicit Fields(std::string_view p) : p_(p) {}
  std::uint8_t u8() { return need(1) ? std::uint8_t(p_[pos_++]) : 0; }
  std::uint16_t u16() {
    if (!need(2)) return 0;
    std::uint16_t v = std::uint16_t(std::uint8_t(p_[pos_]) | (std::uint8_t(p_[pos_ + 1]) << 8));
    pos_ += 2;
    return v;
  }
  std::uint32_t u32() {
    if (!need(4)) return 0;
    auto v = get_u32(p_, pos_);
    pos_ += 4;
    return v;
  }
  std::uint64_t u64() {
    if (!need(8)) return 0;
    auto v = get_u64(p_, pos_);
    pos_ += 8;
    return v;
  }
  std::string str() {
    std::uint32_t n = u32();
    if (failed_ || !need(n)) return {};
    std::string s(p_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  // Well-formed means every byte consumed and no overrun.
  bool ok() const { return !failed_ && pos_ == p_.size(); }

 private:
  bool need(std::size_t n) {
    if (failed_ || p_.size() - pos_ < n) {
      failed_ = true;
      return false;
    }
    return true;
  }
  std::string_view p_;
  std::size_t pos_ = 0;
  bool failed_ = false;
};

Error corrupt(std::string what, std::size_t offset) {
  return Error{Errc::Corrupt, what + " at offset " + std::to_string(offset)};
}

std::string progress_record(Rec type, std::string payload) {
  // The CRC covers type, length and payload so a record torn or zero-filled
  // by a crash is recognised and ignored.
  std::string head;
  put_u8(head, std::uint8_t(type));
  put_u32(head, std::uint32_t(payload.size() + 4));
  std::uint32_t crc = crc32c(crc32c(0, head), payload);
  put_u32(payload, crc);
  return head + payload;
}

// Applies one envelope/content record; Error when its payload is malformed.
Status apply_record(QueueFile& qf, Rec type, std::string_view payload, std::size_t payload_offset) {
  auto& env = qf.envelope;
  auto bad = [&](const char* what) -> Status { return corrupt(std::string("malformed ") + what + " record", payload_offset); };
  switch (type) {
    case Rec::Arrival: {
      Fields f(payload);
      env.arrival = from_us(std::int64_t(f.u64()));
      return f.ok() ? Status{} : bad("arrival");
    }
    case Rec::ClientIp: {
      if (auto ip = parse_ip(payload)) env.client.ip = *ip;
      else if (!payload.empty()) return bad("client address");
      return {};
    }
    case Rec::ClientPort: {
      Fields f(payload);
      env.client.port = f.u16();
      return f.ok() ? Status{} : bad("client port");
    }
    case Rec::ClientName: env.client.reverse_name = payload; return {};
    case Rec::Helo: env.client.helo = payload; return {};
    case Rec::Protocol: env.client.protocol = payload; return {};
    case Rec::AuthUser: env.client.auth_user = payload; return {};
    case Rec::Envid: env.envid = payload; return {};
    case Rec::Sender: env.sender = payload; return {};
    case Rec::Tls: {
      Fields f(payload);
      env.client.tls_version = f.str();
      env.client.tls_cipher = f.str();
      return f.ok() ? Status{} : bad("tls");
    }
    case Rec::Params: {
      Fields f(payload);
      auto ret = f.u8(), body = f.u8(), utf8 = f.u8();
      env.declared_size = f.u64();
      if (!f.ok() || ret > 2 || body > 2 || utf8 > 1) return bad("parameters");
      env.ret = DsnRet(ret);
      env.body = BodyType(body);
      env.smtputf8 = utf8 != 0;
      return {};
    }
    case Rec::Recipient: {
      if (env.recipients.size() >= kMaxRecipients) return corrupt("too many recipients", payload_offset);
      Fields f(payload);
      Recipient r;
      auto notify = f.u8();
      r.address = f.str();
      r.orcpt = f.str();
      if (!f.ok() || notify > 15) return bad("recipient");
      r.notify = DsnNotify(notify);
      env.recipients.push_back(std::move(r));
      return {};
    }
    case Rec::Content:
      qf.content.emplace_back(payload_offset, payload.size());
      qf.content_size += payload.size();
      return {};
    case Rec::Prepend: qf.prepend.emplace_back(payload); return {};
    default: return corrupt("unknown record type " + std::to_string(unsigned(type)), payload_offset - 5);
  }
}

// Progress after END. Returns false at the first record that is torn or
// fails its CRC: everything from there on is ignored (duplicates, not loss).
bool apply_progress(QueueFile& qf, Rec type, std::string_view payload) {
  Fields f(payload);
  switch (type) {
    case Rec::RcptFinal: {
      auto idx = f.u32();
      RcptProgress p;
      auto st = f.u8();
      p.dsn = f.str();
      p.relay = f.str();
      p.diagnostic = f.str();
      if (!f.ok() || idx >= qf.progress.size() || st > 3) return false;
      p.state = RcptState(st);
      p.notified = qf.progress[idx].notified;
      // A final state is never undone by a later record (there should be none).
      if (!qf.progress[idx].final()) qf.progress[idx] = std::move(p);
      return true;
    }
    case Rec::Attempt: {
      qf.attempts = f.u32();
      qf.next_attempt = from_us(std::int64_t(f.u64()));
      return f.ok();
    }
    case Rec::Notified: {
      auto idx = f.u32();
      if (!f.ok() || idx >= qf.progress.size()) return false;
      qf.progress[idx].notified = true;
      return true;
    }
    default: return false;
  }
}

}  // namespace

namespace {
std::uint32_t crc32c_table(std::uint32_t crc, std::string_view data) {
  for (unsigned char c : data) crc = kCrcTable[(crc ^ c) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
// SSE 4.2's CRC32 instruction computes exactly CRC-32C; eight bytes a step
// it is about 20x faster than the table, which matters for 100 KB messages
// (checksummed when spooled and again when read for delivery).
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::uint32_t crc, std::string_view data) {
  const char* p = data.data();
  std::size_t n = data.size();
  std::uint64_t c = crc;
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
  }
  auto c32 = std::uint32_t(c);
  for (; n > 0; ++p, --n) c32 = __builtin_ia32_crc32qi(c32, static_cast<unsigned char>(*p));
  return c32;
}
const bool kHaveSse42 = __builtin_cpu_supports("sse4.2");
#endif
}  // namespace

std::uint32_t crc32c(std::uint32_t crc, std::string_view data) {
#if defined(__x86_64__)
  if (kHaveSse42) return ~crc32c_sse42(~crc, data);
#endif
  return ~crc32c_table(~crc, data);
}

void put_record(std::string& out, Rec type, std::string_view payload) {
  put_u8(out, std::uint8_t(type));
  put_u32(out, std::uint32_t(payload.size()));
  out.append(payload);
}

std::string encode_head(const Envelope& env) {
  std::string o(kMagic);
  std::string p;
  put_u64(p, std::uint64_t(to_us(env.arrival)));
  put_record(o, Rec::Arrival, p);
  put_record(o, Rec::ClientIp, env.client.ip == IpAddr{} ? std::string() : env.client.ip.str());
  p.clear();
  p.push_back(char(env.client.port & 0xff));
  p.push_back(char(env.client.port >> 8));
  put_record(o, Rec::ClientPort, p);
  put_record(o, Rec::ClientName, env.client.reverse_name);
  put_record(o, Rec::Helo, env.client.helo);
  put_record(o, Rec::Protocol, env.client.protocol);
  put_record(o, Rec::AuthUser, env.client.auth_user);
  p.clear();
  put_str(p, env.client.tls_version);
  put_str(p, env.client.tls_cipher);
  put_record(o, Rec::Tls, p);
  put_record(o, Rec::Envid, env.envid);
  p.clear();
  put_u8(p, std::uint8_t(env.ret));
  put_u8(p, std::uint8_t(env.body));
  put_u8(p, env.smtputf8 ? 1 : 0);
  put_u64(p, env.declared_size);
  put_record(o, Rec::Params, p);
  put_record(o, Rec::Sender, env.sender);
  for (const auto& r : env.recipients) {
    p.clear();
    put_u8(p, std::uint8_t(r.notify));
    put_str(p, r.address);
    put_str(p, r.orcpt);
    put_record(o, Rec::Recipient, p);
  }
  return o;
}

std::string encode_end(std::uint64_t length, std::uint32_t crc) {
  std::string p;
  put_u64(p, length);
  put_u32(p, crc);
  std::string o;
  put_record(o, Rec::End, p);
  return o;
}

std::string encode_rcpt_final(std::size_t idx, const RcptProgress& pr) {
  std::string p;
  put_u32(p, std::uint32_t(idx));
  put_u8(p, std::uint8_t(pr.state));
  put_str(p, pr.dsn.substr(0, 64));
  put_str(p, pr.relay.substr(0, 1024));
  put_str(p, pr.diagnostic.substr(0, 4096));
  return progress_record(Rec::RcptFinal, std::move(p));
}

std::string encode_attempt(std::uint32_t attempts, std::chrono::system_clock::time_point next) {
  std::string p;
  put_u32(p, attempts);
  put_u64(p, std::uint64_t(to_us(next)));
  return progress_record(Rec::Attempt, std::move(p));
}

std::string encode_notified(std::size_t idx) {
  std::string p;
  put_u32(p, std::uint32_t(idx));
  return progress_record(Rec::Notified, std::move(p));
}

Result<QueueFile> parse_queue_file(std::string_view b, ParseOptions opt) {
  if (b.size() < kMagic.size() || b.substr(0, kMagic.size()) != kMagic) return corrupt("bad magic", 0);
  QueueFile qf;
  std::size_t pos = kMagic.size();
  bool saw_end = false;
  while (!saw_end) {
    if (pos == b.size()) return corrupt("missing END record (torn file)", pos);
    if (b.size() - pos < 5) return corrupt("truncated record header", pos);
    auto type = Rec(std::uint8_t(b[pos]));
    std::uint32_t len = get_u32(b, pos + 1);
    std::uint32_t cap = type == Rec::Content ? kMaxContentRecord : type == Rec::End ? 12 : kMaxTextRecord;
    if (len > cap) return corrupt("record length " + std::to_string(len) + " too large", pos);
    if (len > b.size() - pos - 5) return corrupt("record length past end of file", pos);
    std::string_view payload = b.substr(pos + 5, len);
    if (type == Rec::End) {
      if (len != 12) return corrupt("malformed END record", pos);
      if (get_u64(payload, 0) != pos) return corrupt("END length mismatch", pos);
      if (opt.verify_checksum && get_u32(payload, 8) != crc32c(0, b.substr(0, pos)))
        return corrupt("bad checksum", pos);
      saw_end = true;
    } else if (auto st = apply_record(qf, type, payload, pos + 5); !st) {
      return st.error();
    }
    pos += 5 + len;
  }
  if (qf.envelope.recipients.empty()) return corrupt("no recipients", pos);
  qf.end_offset = pos;
  qf.progress.resize(qf.envelope.recipients.size());
  // Progress: stop quietly at the first torn or damaged record.
  while (b.size() - pos >= 5) {
    auto type = Rec(std::uint8_t(b[pos]));
    std::uint32_t len = get_u32(b, pos + 1);
    if (len < 4 || len > kMaxTextRecord || len > b.size() - pos - 5) break;
    std::string_view body = b.substr(pos + 5, len - 4);
    std::uint32_t crc = get_u32(b, pos + 5 + len - 4);
    if (crc32c(crc32c(0, b.substr(pos, 5)), body) != crc) break;
    if (!apply_progress(qf, type, body)) break;
    pos += 5 + len;
  }
  return qf;
}

Result<QueueFile> read_queue_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return Error{e == ENOENT ? Errc::NotFound : Errc::IoError, path.string() + ": " + std::strerror(e)};
  }
  struct stat st {};
  std::string buf;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) buf.resize(std::size_t(st.st_size));
  std::size_t got = 0;
  for (;;) {
    if (got == buf.size()) buf.resize(buf.size() + 65536);  // grew while we read (progress appended)
    ssize_t n = ::read(fd, buf.data() + got, buf.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return Error{Errc::IoError, path.string() + ": read: " + std::strerror(e)};
    }
    if (n == 0) break;
    got += std::size_t(n);
  }
  ::close(fd);
  buf.resize(got);
  auto qf = parse_queue_file(buf);
  if (!qf) return Error{Errc::Corrupt, path.filename().string() + ": " + qf.error().detail};
  if (buf.size() <= QueueFile::kKeepBytes) qf->bytes = std::move(buf);
  return qf;
}

Result<std::string> read_content(const std::filesystem::path& path, const QueueFile& qf, std::uint64_t limit) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{Errc::IoError, path.string() + ": " + std::strerror(errno)};
  std::string out;
  for (auto [off, len] : qf.content) {
    if (out.size() >= limit) break;
    std::uint64_t want = std::min<std::uint64_t>(len, limit - out.size());
    std::size_t base = out.size();
    out.resize(base + want);
    std::uint64_t done = 0;
    while (done < want) {
      ssize_t n = ::pread(fd, out.data() + base + done, want - done, off_t(off + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        return Error{Errc::IoError, path.string() + ": short read"};
      }
      done += std::uint64_t(n);
    }
  }
  ::close(fd);
  return out;
}

Status append_progress(const std::filesystem::path& path, std::string_view records) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return Error{errno == ENOENT ? Errc::NotFound : Errc::IoError, path.string() + ": " + std::strerror(errno)};
  ssize_t n = ::write(fd, records.data(), records.size());
  int e = errno;
  ::close(fd);
  if (n != ssize_t(records.size()))
    return Error{e == ENOSPC ? Errc::DiskFull : Errc::IoError, path.string() + ": append: " + std::strerror(e)};
  return {};
}

bool valid_queue_id(std::string_view id) {
  if (id.size() < 10 || id.size() > 20) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return false;
  return true;
}

}  // namespace moat::gateway::qf

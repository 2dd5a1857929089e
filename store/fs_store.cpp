// See fs_store.hpp and docs/store.md. Durability follows the spool
// (gateway/spool.cpp): data fsynced, then the directory entry, then the
// index record, so an acknowledged message survives kill -9 and power loss.
//
// Locks, always taken in this order: user mutex (mailbox list changes) →
// Box::mu + flock(index) (one mailbox) → WatchList::mu (callbacks). A
// thread holds at most one Box at a time.
#include "common/file_io.hpp"
#include "store/fs_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <lz4.h>
#include <lz4hc.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>
#include <unordered_set>

#include "common/failpoint.hpp"
#include "common/log.hpp"
#include "common/proto/imap/structure.hpp"
#include "common/proto/mime/mime.hpp"
#include "common/text.hpp"
#include "store/index_format.hpp"

namespace moat::store {

namespace fs = std::filesystem;
using format::Record;
using format::RecordType;

// ------------------------------------------------------------ helpers

namespace {

constexpr std::string_view kListMagic = "moat-mailboxes 1";

Error io_error(std::string_view what, int e) {
  return Error{(e == ENOSPC || e == EDQUOT) ? Errc::DiskFull : Errc::IoError,
               "store: " + std::string(what) + ": " + std::strerror(e)};
}



// mkdir -p, fsyncing each parent whose entry we added.
Status make_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return {};
  if (dir.has_parent_path() && dir.parent_path() != dir)
    if (auto st = make_dir(dir.parent_path()); !st) return st;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return io_error("mkdir " + dir.string(), errno);
  return fsync_dir(dir.parent_path());
}

// Writes `data` to `path` atomically: tmp file, fsync, rename, fsync dir.
Status replace_file(const fs::path& path, std::string_view data, std::string_view failpoint_name = {}) {
  auto tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("create " + tmp.string(), errno);
  Status st = write_all(fd, data);
  if (st && ::fsync(fd) != 0) st = io_error("fsync " + tmp.string(), errno);
  ::close(fd);
  if (st && !failpoint_name.empty() && failpoint::hit(failpoint_name))
    st = Error{Errc::IoError, "store: injected failure"};
  if (st && ::rename(tmp.c_str(), path.c_str()) != 0) st = io_error("rename " + path.string(), errno);
  if (!st) {
    ::unlink(tmp.c_str());
    return st;
  }
  return fsync_dir(path.parent_path());
}

Result<std::string> read_file(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Error{Errc::NotFound, path.string()};
    return io_error("open " + path.string(), errno);
  }
  auto out = read_all(fd);
  ::close(fd);
  if (!out) return Error{out.error().code, path.string() + ": " + out.error().detail};
  return out;
}

// What a nowait read (fetch_batch) meets instead of waiting: the caller
// goes to the blocking pool, which gives the real answer.
Error would_block() { return Error{Errc::TempFailure, "store: would block"}; }

// With `nowait`, from the page cache only (preadv2 RWF_NOWAIT):
// would_block() when any of the bytes would have to come from the disk.
Result<std::string> pread_exact(int fd, std::uint64_t offset, std::uint64_t length, bool nowait = false) {
  std::string out(length, '\0');
  std::uint64_t done = 0;
  while (done < length) {
    iovec iov{out.data() + done, length - done};
    ssize_t n = ::preadv2(fd, &iov, 1, off_t(offset + done), nowait ? RWF_NOWAIT : 0);
    if (n < 0 && errno == EINTR) continue;
    if (nowait && n <= 0) return would_block();  // EAGAIN: not cached; 0: shorter than expected
    if (n < 0) return io_error("read", errno);
    if (n == 0) return Error{Errc::Corrupt, "store: body file shorter than its header says"};
    done += std::uint64_t(n);
  }
  return out;
}

std::string random_guid() {
  unsigned char b[16];
  std::size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = ::getrandom(b + got, sizeof b - got, 0);
    if (n > 0) got += std::size_t(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s.push_back(kHex[c >> 4]);
    s.push_back(kHex[c & 15]);
  }
  return s;
}

std::int64_t now_seconds() { return std::int64_t(std::time(nullptr)); }

// UIDVALIDITY: seconds since the epoch, but always above what was used before.
std::uint32_t next_uidvalidity(std::uint32_t floor) {
  auto now = std::uint32_t(now_seconds());
  return std::max(now, floor + 1);
}

bool has_keyword(const std::vector<std::string>& kws, std::string_view k) {
  return std::any_of(kws.begin(), kws.end(), [&](const auto& x) { return iequals(x, k); });
}

std::vector<std::string> unique_keywords(const std::vector<std::string>& in) {
  std::vector<std::string> out;
  for (const auto& k : in)
    if (!k.empty() && !has_keyword(out, k) && out.size() < format::kMaxKeywords) out.push_back(k);
  return out;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

// One decompression context per thread: ZSTD_decompress() would set one up
// (and allocate its window) for every message.
Result<std::string> unzstd(std::string_view stored, std::uint64_t size) {
  thread_local std::unique_ptr<ZSTD_DCtx, std::size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) return Error{Errc::TempFailure, "store: out of memory for zstd"};
  std::string raw(size, '\0');
  std::size_t n = ZSTD_decompressDCtx(dctx.get(), raw.data(), raw.size(), stored.data(), stored.size());
  if (ZSTD_isError(n) || n != size) return Error{Errc::Corrupt, "does not decompress"};
  return raw;
}

Result<std::string> unlz4(std::string_view stored, std::uint64_t size) {
  if (size > std::uint64_t(LZ4_MAX_INPUT_SIZE) || stored.size() > std::size_t(LZ4_MAX_INPUT_SIZE))
    return Error{Errc::Corrupt, "is too large for lz4"};
  std::string raw(size, '\0');
  const int n = LZ4_decompress_safe(stored.data(), raw.data(), int(stored.size()), int(raw.size()));
  if (n < 0 || std::uint64_t(n) != size) return Error{Errc::Corrupt, "does not decompress"};
  return raw;
}

// The stored bytes of `content` under `codec`; nullopt when the codec does
// not make them smaller (the body is then stored as it is).
std::optional<std::string> pack_with(format::Codec codec, std::string_view content, const FsOptions& o) {
  std::string packed;
  if (codec == format::Codec::Zstd) {
    packed.resize(ZSTD_compressBound(content.size()));
    const std::size_t n = ZSTD_compress(packed.data(), packed.size(), content.data(), content.size(), o.zstd_level);
    if (ZSTD_isError(n)) return std::nullopt;
    packed.resize(n);
  } else if (codec == format::Codec::Lz4 && content.size() <= std::size_t(LZ4_MAX_INPUT_SIZE)) {
    packed.resize(std::size_t(LZ4_compressBound(int(content.size()))));
    const int n = LZ4_compress_HC(content.data(), packed.data(), int(content.size()), int(packed.size()), o.lz4_level);
    if (n <= 0) return std::nullopt;
    packed.resize(std::size_t(n));
  } else {
    return std::nullopt;
  }
  if (packed.size() >= content.size()) return std::nullopt;
  return packed;
}

// A record's stored bytes back to the message (decompressed when they are
// compressed), checked against the header's size and CRC.
Result<std::string> unpack_body(const format::BodyHeader& bh, std::string stored, std::string_view guid) {
  std::string raw;
  if (bh.codec != format::Codec::None) {
    auto r = bh.codec == format::Codec::Zstd ? unzstd(stored, bh.size) : unlz4(stored, bh.size);
    if (!r) return Error{r.error().code, "store: body " + std::string(guid) + " " + r.error().detail};
    raw = std::move(*r);
  } else {
    raw = std::move(stored);
  }
  if (raw.size() != bh.size || format::crc32(raw) != bh.crc)
    return Error{Errc::Corrupt, "store: body " + std::string(guid) + " fails its checksum"};
  return raw;
}

// Calls fn(header, offset) for every intact record of a pack file, in
// order. A torn or damaged stretch (a crash mid-append) is skipped by
// looking for the next record's magic; a record counts only when its
// bytes match its CRC, so a torn record cannot swallow the ones after it.
template <class F>
Status scan_pack(const fs::path& path, F&& fn) {
  auto data = read_file(path);
  if (!data) return data.error();
  const std::string_view all(*data);
  std::size_t pos = 0;
  while (pos < all.size()) {
    auto h = format::decode_body_header(all.substr(pos));
    bool ok = h && h->second + h->first.stored <= all.size() - pos;
    ok = ok && unpack_body(h->first, std::string(all.substr(pos + h->second, h->first.stored)), h->first.guid);
    if (ok) {
      fn(h->first, std::uint64_t(pos));
      pos += h->second + h->first.stored;
      continue;
    }
    pos = all.find(format::kBodyMagic, pos + 1);
    if (pos == std::string_view::npos) break;
  }
  return {};
}

// "00000042" -> 42; anything else (a leftover "x.tmp", junk) -> nullopt.
std::optional<std::uint32_t> pack_number(std::string_view name) {
  std::uint32_t n = 0;
  if (name.size() != 8) return std::nullopt;
  auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), n);
  if (ec != std::errc() || p != name.data() + name.size() || n == 0) return std::nullopt;
  return n;
}

Status pwrite_all(int fd, std::string_view data, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t w = ::pwrite(fd, data.data() + done, data.size() - done, off_t(offset + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return io_error("write pack", w < 0 ? errno : EIO);
    done += std::size_t(w);
  }
  return {};
}

// ENVELOPE and BODYSTRUCTURE as the IMAP session would compute them, kept
// in the index so FETCH of either never reads or parses the body.
std::pair<std::string, std::string> structure_strings(std::string_view content) {
  const auto msg = mime::parse(content);
  return {proto::imap::envelope(msg), proto::imap::body_structure(msg, content, true)};
}

}  // namespace

std::string_view special_use_name(SpecialUse s) {
  switch (s) {
    case SpecialUse::Drafts: return "\\Drafts";
    case SpecialUse::Sent: return "\\Sent";
    case SpecialUse::Junk: return "\\Junk";
    case SpecialUse::Trash: return "\\Trash";
    case SpecialUse::Archive: return "\\Archive";
    case SpecialUse::All: return "\\All";
    case SpecialUse::Flagged: return "\\Flagged";
    default: return "";
  }
}

bool contains(const UidRanges& set, std::uint32_t uid) {
  for (const auto& [a, b] : set)
    if (uid >= std::min(a, b) && uid <= std::max(a, b)) return true;
  return false;
}

Result<std::string> normalize_mailbox_name(std::string_view name) {
  if (name.empty() || name.size() > 255) return Error{Errc::Invalid, "mailbox name must be 1 to 255 bytes"};
  if (!valid_utf8(name)) return Error{Errc::Invalid, "mailbox name is not UTF-8"};
  for (char c : name)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F || c == '*' || c == '%')
      return Error{Errc::Invalid, "mailbox name contains a forbidden character"};
  std::string out(name);
  std::size_t start = 0;
  while (start <= out.size()) {
    auto end = out.find('/', start);
    if (end == std::string::npos) end = out.size();
    std::string_view level(out.data() + start, end - start);
    if (level.empty() || level == "." || level == "..")
      return Error{Errc::Invalid, "mailbox name has an empty, '.' or '..' level"};
    start = end + 1;
  }
  if (out.size() >= 5 && iequals(std::string_view(out).substr(0, 5), "INBOX") && (out.size() == 5 || out[5] == '/'))
    out.replace(0, 5, "INBOX");
  return out;
}

std::string user_dir_name(std::string_view user) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (std::size_t i = 0; i < user.size(); ++i) {
    char c = ascii_lower(user[i]);
    bool plain = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '@' || c == '_' || c == '+' ||
                 c == '-' || (c == '.' && i > 0);
    if (plain) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[static_cast<unsigned char>(c) >> 4]);
      out.push_back(kHex[static_cast<unsigned char>(c) & 15]);
    }
  }
  return out;
}

// ------------------------------------------------------------ state

struct FsStore::UserList {
  std::string user;                  // the name as given when created (folder names are encoded)
  std::uint32_t uidvalidity_floor = 0;
  std::vector<MailboxInfo> boxes;
  MailboxInfo* find(std::string_view name) {
    for (auto& b : boxes)
      if (b.name == name) return &b;
    return nullptr;
  }
};

struct FsStore::Box {
  std::mutex mu;
  std::string user;              // as the directory knows it
  std::string guid;
  fs::path dir;
  int fd = -1;
  ino_t ino = 0;
  std::uint64_t pos = 0;         // bytes of the index applied
  bool loaded = false;
  std::uint32_t uidvalidity = 0;
  std::uint32_t uidnext = 1;
  std::uint64_t highest_modseq = 1;
  std::vector<MessageInfo> msgs;  // ascending UID
  std::vector<std::pair<std::uint32_t, std::uint64_t>> vanished;
  std::size_t records = 0;
  ~Box() {
    if (fd >= 0) ::close(fd);
  }
  fs::path index() const { return dir / "index"; }
  MessageInfo* find(std::uint32_t uid) {
    auto it = std::lower_bound(msgs.begin(), msgs.end(), uid, [](const auto& m, std::uint32_t u) { return m.uid < u; });
    return it != msgs.end() && it->uid == uid ? &*it : nullptr;
  }
  void apply(const Record& r, std::unordered_set<std::string>* expunged_guids) {
    ++records;
    switch (r.type) {
      case RecordType::Header:
        uidvalidity = r.header.uidvalidity;
        uidnext = std::max(uidnext, r.header.uidnext);
        highest_modseq = std::max(highest_modseq, r.header.modseq);
        break;
      case RecordType::Append:
        // Ascending UIDs only (never reused or reordered). Not compared with
        // uidnext: a snapshot's header raises that before its appends follow.
        if (!msgs.empty() && r.msg.uid <= msgs.back().uid) break;
        msgs.push_back(r.msg);
        uidnext = std::max(uidnext, r.msg.uid + 1);
        highest_modseq = std::max(highest_modseq, r.msg.modseq);
        break;
      case RecordType::Flags:
        if (auto* m = find(r.msg.uid)) {
          m->flags = r.msg.flags;
          m->keywords = r.msg.keywords;
          m->modseq = r.msg.modseq;
        }
        highest_modseq = std::max(highest_modseq, r.msg.modseq);
        break;
      case RecordType::Cache:
        if (auto* m = find(r.msg.uid)) {
          m->envelope = r.msg.envelope;
          m->bodystructure = r.msg.bodystructure;
        }
        break;
      case RecordType::Relocate:
        if (auto* m = find(r.msg.uid)) {
          m->pack = r.msg.pack;
          m->pack_offset = r.msg.pack_offset;
        }
        break;
      case RecordType::Expunge:
      case RecordType::Vanished: {
        std::set<std::uint32_t> gone;
        for (const auto& [uid, ms] : r.uids) {
          gone.insert(uid);
          vanished.emplace_back(uid, ms);
          highest_modseq = std::max(highest_modseq, ms);
        }
        std::erase_if(msgs, [&](const MessageInfo& m) {
          bool g = gone.count(m.uid) != 0;
          if (g && expunged_guids) expunged_guids->insert(m.guid);
          return g;
        });
        break;
      }
    }
  }
  // status() without the walk over every message for UNSEEN and SIZE.
  MailboxStatus version() const {
    return MailboxStatus{uidvalidity, uidnext, highest_modseq, std::uint32_t(msgs.size()), 0, 0, 0};
  }
  MailboxStatus status() const {
    MailboxStatus s = version();
    for (const auto& m : msgs) {
      if (!(m.flags & kSeen)) ++s.unseen;
      if (m.flags & kDeleted) ++s.deleted;
      s.size += m.size;
    }
    return s;
  }
};

struct FsStore::WatchList {
  std::mutex mu;
  std::uint64_t next_id = 1;
  std::map<std::uint64_t, std::function<void(const ChangeEvent&)>> callbacks;
};

// An open read-only descriptor: a pack's, kept in packs_, or a body file's.
struct FsStore::PackFd {
  int fd = -1;
  ~PackFd() {
    if (fd >= 0) ::close(fd);
  }
};

class FsStore::Sub final : public Subscription {
 public:
  Sub(std::shared_ptr<WatchList> list, std::uint64_t id) : list_(std::move(list)), id_(id) {}
  ~Sub() override {
    std::lock_guard lk(list_->mu);  // waits for a running callback
    list_->callbacks.erase(id_);
  }

 private:
  std::shared_ptr<WatchList> list_;
  std::uint64_t id_;
};

// ------------------------------------------------------------ open

FsStore::FsStore(FsOptions options) : opt_(std::move(options)) {}

FsStore::~FsStore() {
  if (sweep_fd_ >= 0) ::close(sweep_fd_);
  if (pack_fd_ >= 0) ::close(pack_fd_);
}

FsOptions store_options(const config::Config& cfg) {
  using C = config::Local::Compression;
  FsOptions o;
  o.root = cfg.store_dir();
  const C c = cfg.local.compress;
  o.codec = c == C::Lz4 ? format::Codec::Lz4 : c == C::Zstd ? format::Codec::Zstd : format::Codec::None;
  o.compress_min = cfg.local.compress_min;
  return o;
}

Result<std::unique_ptr<FsStore>> FsStore::open(FsOptions options) {
  std::unique_ptr<FsStore> s(new FsStore(std::move(options)));
  for (const char* d : {"bodies", "users", "tmp"})
    if (auto st = make_dir(s->opt_.root / d); !st) return st.error();
  auto lock = s->opt_.root / "sweep.lock";
  s->sweep_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (s->sweep_fd_ < 0) return io_error("open " + lock.string(), errno);
  return s;
}

fs::path FsStore::user_dir(std::string_view user) const { return opt_.root / "users" / user_dir_name(user); }

fs::path FsStore::body_path(std::string_view guid) const {
  return opt_.root / "bodies" / std::string(guid.substr(0, 2)) / std::string(guid);
}

fs::path FsStore::pack_path(std::uint32_t n) const {
  char name[16];
  std::snprintf(name, sizeof name, "%08u", n);
  return opt_.root / "bodies" / "pack" / name;
}

// The user's mailbox list is changed under the in-process mutex and a
// flock on users/USER/lock (other processes: moatctl beside moatd).
class FsStore::UserLock {
 public:
  UserLock(std::shared_ptr<std::mutex> mu, const fs::path& dir) : mu_(std::move(mu)), lk_(*mu_) {
    (void)make_dir(dir);
    fd_ = ::open((dir / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ >= 0)
      while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
      }
  }
  ~UserLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  UserLock(const UserLock&) = delete;
  UserLock& operator=(const UserLock&) = delete;

 private:
  std::shared_ptr<std::mutex> mu_;
  std::unique_lock<std::mutex> lk_;
  int fd_ = -1;
};

std::shared_ptr<std::mutex> FsStore::user_mutex(std::string_view user) {
  std::lock_guard lk(mu_);
  auto& m = user_mu_[user_dir_name(user)];
  if (!m) m = std::make_shared<std::mutex>();
  return m;
}

// ------------------------------------------------------------ mailbox list

Result<FsStore::UserList> FsStore::read_list(std::string_view user) const {
  return read_list_file(user_dir(user) / "mailboxes", user);
}

Result<FsStore::UserList> FsStore::read_list_file(const fs::path& file, std::string_view user) {
  auto text = read_file(file);
  if (!text) {
    if (text.error().code == Errc::NotFound) return Error{Errc::NotFound, "no such user: " + std::string(user)};
    return text.error();
  }
  return parse_list(*text, user);
}

Result<FsStore::UserList> FsStore::parse_list(const std::string& text, std::string_view user) {
  UserList list;
  list.user = std::string(user);
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kListMagic) return Error{Errc::Corrupt, "store: bad mailbox list of " + std::string(user)};
  while (std::getline(in, line)) {
    if (line.rfind("user ", 0) == 0) {
      list.user = line.substr(5);
      continue;
    }
    if (line.rfind("uidvalidity ", 0) == 0) {
      list.uidvalidity_floor = std::uint32_t(std::strtoul(line.c_str() + 12, nullptr, 10));
      continue;
    }
    // GUID SPECIAL-USE SUBSCRIBED NAME
    MailboxInfo mb;
    std::istringstream f(line);
    int use = 0, sub = 1;
    if (!(f >> mb.guid >> use >> sub) || !format::valid_guid(mb.guid) || use < 0 || use > int(SpecialUse::Flagged))
      return Error{Errc::Corrupt, "store: bad line in the mailbox list of " + std::string(user)};
    std::getline(f, mb.name);
    if (!mb.name.empty() && mb.name[0] == ' ') mb.name.erase(0, 1);
    mb.special_use = SpecialUse(use);
    mb.subscribed = sub != 0;
    list.boxes.push_back(std::move(mb));
  }
  return list;
}

Status FsStore::write_list(std::string_view user, const UserList& list) const {
  std::string out(kListMagic);
  out += "\nuser " + std::string(user) + "\nuidvalidity " + std::to_string(list.uidvalidity_floor) + "\n";
  for (const auto& b : list.boxes)
    out += b.guid + " " + std::to_string(int(b.special_use)) + " " + (b.subscribed ? "1" : "0") + " " + b.name + "\n";
  return replace_file(user_dir(user) / "mailboxes", out);
}

// A new mailbox: its folder and index header durable before the list names it.
Status FsStore::create_locked(std::string_view user, UserList& list, const std::string& name, SpecialUse use) {
  if (list.find(name)) return Error{Errc::Invalid, "mailbox already exists: " + name};
  MailboxInfo mb{name, random_guid(), use, true};
  auto dir = user_dir(user) / mb.guid;
  if (auto st = make_dir(dir); !st) return st;
  Record h;
  h.type = RecordType::Header;
  h.header.uidvalidity = next_uidvalidity(list.uidvalidity_floor);
  h.header.mailbox_guid = mb.guid;
  list.uidvalidity_floor = h.header.uidvalidity;
  if (auto st = replace_file(dir / "index", format::encode(h)); !st) return st;
  list.boxes.push_back(std::move(mb));
  return write_list(user, list);
}

Status FsStore::create_user(std::string_view user) {
  if (user.empty() || user.size() > 255) return Error{Errc::Invalid, "bad user name"};
  UserLock lk(user_mutex(user), user_dir(user));
  auto list = read_list(user);
  if (!list && list.error().code != Errc::NotFound) return list.error();
  if (!list) {
    if (auto st = make_dir(user_dir(user)); !st) return st;
    list = UserList{};
  }
  static const std::pair<const char*, SpecialUse> kDefaults[] = {
      {"INBOX", SpecialUse::None}, {"Drafts", SpecialUse::Drafts}, {"Sent", SpecialUse::Sent},
      {"Junk", SpecialUse::Junk},  {"Trash", SpecialUse::Trash}};
  for (const auto& d : kDefaults) {
    const char* name = d.first;
    const SpecialUse use = d.second;  // not a structured binding: clang 14 cannot capture those
    bool have_use = use != SpecialUse::None &&
                    std::any_of(list->boxes.begin(), list->boxes.end(), [&](const auto& b) { return b.special_use == use; });
    if (list->find(name) || have_use) continue;
    if (auto st = create_locked(user, *list, name, use); !st) return st;
  }
  return {};
}

Status FsStore::delete_user(std::string_view user) {
  UserLock lk(user_mutex(user), user_dir(user));
  auto dir = user_dir(user);
  std::error_code ec;
  if (!fs::exists(dir / "mailboxes", ec)) return Error{Errc::NotFound, "no such user: " + std::string(user)};
  // Rename first so a crash half-way leaves no half user behind.
  auto gone = opt_.root / "tmp" / ("deleted-" + random_guid());
  if (::rename(dir.c_str(), gone.c_str()) != 0) return io_error("rename " + dir.string(), errno);
  (void)fsync_dir(dir.parent_path());
  fs::remove_all(gone, ec);
  std::lock_guard lk2(mu_);
  std::string prefix = user_dir_name(user) + "/";
  std::erase_if(boxes_, [&](const auto& kv) { return kv.first.rfind(prefix, 0) == 0; });
  lists_.erase(user_dir_name(user));
  return {};
}

Result<bool> FsStore::user_exists(std::string_view user) {
  std::error_code ec;
  bool e = fs::exists(user_dir(user) / "mailboxes", ec);
  if (ec) return Error{Errc::IoError, "store: " + ec.message()};
  return e;
}

Result<std::vector<MailboxInfo>> FsStore::list(std::string_view user) {
  auto l = read_list(user);
  if (!l) return l.error();
  auto v = std::move(l->boxes);
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
    bool ai = a.name == "INBOX", bi = b.name == "INBOX";
    if (ai != bi) return ai;
    return a.name < b.name;
  });
  return v;
}

Status FsStore::create(std::string_view user, std::string_view name, SpecialUse use) {
  auto n = normalize_mailbox_name(name);
  if (!n) return n.error();
  UserLock lk(user_mutex(user), user_dir(user));
  auto list = read_list(user);
  if (!list) return list.error();
  return create_locked(user, *list, *n, use);
}

Status FsStore::rename(std::string_view user, std::string_view from, std::string_view to) {
  auto f = normalize_mailbox_name(from);
  if (!f) return f.error();
  auto t = normalize_mailbox_name(to);
  if (!t) return t.error();
  if (*f == "INBOX") {
    // RFC 9051 §6.3.6: the messages move to the new name; INBOX stays, empty.
    if (auto st = create(user, *t, SpecialUse::None); !st) return st;
    auto moved = move(user, "INBOX", {{1, UINT32_MAX}}, *t);
    if (!moved) return moved.error();
    return {};
  }
  if (*t == "INBOX" || t->rfind("INBOX/", 0) == 0) return Error{Errc::Invalid, "cannot rename to INBOX"};
  UserLock lk(user_mutex(user), user_dir(user));
  auto list = read_list(user);
  if (!list) return list.error();
  if (!list->find(*f)) return Error{Errc::NotFound, "no such mailbox: " + *f};
  if (list->find(*t)) return Error{Errc::Invalid, "mailbox already exists: " + *t};
  const std::string child = *f + "/";
  for (auto& b : list->boxes) {
    if (b.name == *f) b.name = *t;
    else if (b.name.rfind(child, 0) == 0) b.name = *t + "/" + b.name.substr(child.size());
  }
  return write_list(user, *list);
}

Status FsStore::remove(std::string_view user, std::string_view name) {
  auto n = normalize_mailbox_name(name);
  if (!n) return n.error();
  if (*n == "INBOX") return Error{Errc::Invalid, "INBOX cannot be deleted"};
  UserLock lk(user_mutex(user), user_dir(user));
  auto list = read_list(user);
  if (!list) return list.error();
  auto it = std::find_if(list->boxes.begin(), list->boxes.end(), [&](const auto& b) { return b.name == *n; });
  if (it == list->boxes.end()) return Error{Errc::NotFound, "no such mailbox: " + *n};
  std::string guid = it->guid;
  list->boxes.erase(it);
  if (auto st = write_list(user, *list); !st) return st;
  // The list no longer names it; its folder goes now or at the next compact().
  std::error_code ec;
  fs::remove_all(user_dir(user) / guid, ec);
  std::lock_guard lk2(mu_);
  boxes_.erase(user_dir_name(user) + "/" + guid);
  return {};
}

Status FsStore::set_subscribed(std::string_view user, std::string_view name, bool subscribed) {
  auto n = normalize_mailbox_name(name);
  if (!n) return n.error();
  UserLock lk(user_mutex(user), user_dir(user));
  auto list = read_list(user);
  if (!list) return list.error();
  auto* b = list->find(*n);
  if (!b) return Error{Errc::NotFound, "no such mailbox: " + *n};
  b->subscribed = subscribed;
  return write_list(user, *list);
}

// A user's mailbox list as last read, with the file kept open: every change
// (write_list, here or in another process) renames a new file over it, so
// the old file's link count drops to 0 and one fstat of the open descriptor
// says whether the names are current, without a path lookup, an open or a
// parse per command (each FETCH used to read and parse the list twice).
struct FsStore::ListCache {
  int fd = -1;
  UserList list;
  ~ListCache() {
    if (fd >= 0) ::close(fd);
  }
  bool current() const {
    struct stat st {};
    return ::fstat(fd, &st) == 0 && st.st_nlink > 0;
  }
};

// Users whose mailbox list is kept open at most.
constexpr std::size_t kMaxLists = 1024;

Result<std::shared_ptr<const FsStore::ListCache>> FsStore::cached_list(std::string_view user, bool nowait) {
  const std::string key = user_dir_name(user);
  std::shared_ptr<const ListCache> c;
  {
    std::lock_guard lk(mu_);
    if (auto it = lists_.find(key); it != lists_.end()) c = it->second;
  }
  if (c && c->current()) return c;
  if (nowait) return would_block();
  auto fresh = std::make_shared<ListCache>();
  const auto path = user_dir(user) / "mailboxes";
  fresh->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fresh->fd < 0) {
    if (errno == ENOENT) return Error{Errc::NotFound, "no such user: " + std::string(user)};
    return io_error("open " + path.string(), errno);
  }
  auto text = read_all(fresh->fd);
  if (!text) return Error{text.error().code, path.string() + ": " + text.error().detail};
  auto list = parse_list(*text, user);
  if (!list) return list.error();
  fresh->list = std::move(*list);
  std::lock_guard lk(mu_);
  if (lists_.size() >= kMaxLists) lists_.clear();  // one descriptor each: bounded; callers keep theirs
  lists_[key] = fresh;
  return std::shared_ptr<const ListCache>(std::move(fresh));
}

Result<std::string> FsStore::resolve(std::string_view user, std::string_view name, bool nowait) {
  auto n = normalize_mailbox_name(name);
  if (!n) return n.error();
  auto c = cached_list(user, nowait);
  if (!c) return c.error();
  for (const auto& b : (*c)->list.boxes)
    if (b.name == *n) return b.guid;
  return Error{Errc::NotFound, "no such mailbox: " + *n};
}

// ------------------------------------------------------------ one mailbox

std::shared_ptr<FsStore::Box> FsStore::box(std::string_view user, const std::string& guid) {
  std::lock_guard lk(mu_);
  auto& b = boxes_[user_dir_name(user) + "/" + guid];
  if (!b) {
    b = std::make_shared<Box>();
    b->user = std::string(user);
    b->guid = guid;
    b->dir = user_dir(user) / guid;
  }
  return b;
}

// Opens (or reopens, after another process compacted it) the index, takes
// the flock and applies records written since we last looked.
Status FsStore::lock_box(Box& b) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (b.fd < 0) {
      b.fd = ::open(b.index().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (b.fd < 0) return io_error("open " + b.index().string(), errno);
      b.loaded = false;
    }
    while (::flock(b.fd, LOCK_EX) != 0)
      if (errno != EINTR) return io_error("flock " + b.index().string(), errno);
    struct stat by_path {}, by_fd {};
    if (::stat(b.index().c_str(), &by_path) != 0 || ::fstat(b.fd, &by_fd) != 0 || by_path.st_ino != by_fd.st_ino) {
      ::close(b.fd);  // replaced by a compaction or rebuild: read the new file
      b.fd = -1;
      continue;
    }
    if (b.loaded && by_fd.st_ino == b.ino && std::uint64_t(by_fd.st_size) == b.pos) return {};
    bool full = !b.loaded || by_fd.st_ino != b.ino || std::uint64_t(by_fd.st_size) < b.pos;
    b.ino = by_fd.st_ino;
    auto st = load(b, full);
    if (!st) ::flock(b.fd, LOCK_UN);
    return st;
  }
  return Error{Errc::TempFailure, "store: index keeps changing: " + b.index().string()};
}

void FsStore::unlock_box(Box& b) {
  if (b.fd >= 0) ::flock(b.fd, LOCK_UN);
}

Status FsStore::load(Box& b, bool full) {
  if (full) {
    b.pos = 0;
    b.records = 0;
    b.msgs.clear();
    b.vanished.clear();
    b.uidvalidity = 0;
    b.uidnext = 1;
    b.highest_modseq = 1;
  }
  struct stat st {};
  if (::fstat(b.fd, &st) != 0) return io_error("stat " + b.index().string(), errno);
  auto size = std::uint64_t(st.st_size);
  auto data = pread_exact(b.fd, b.pos, size - b.pos);
  if (!data) return data.error();
  std::string_view rest(*data);
  std::unordered_set<std::string> expunged;
  while (!rest.empty()) {
    auto r = format::decode(rest);
    bool first = b.pos == 0;
    if (r.state == format::ReadState::Ok && first != (r.record.type == RecordType::Header))
      r.state = format::ReadState::Damaged;  // a header only and always first
    if (r.state == format::ReadState::Ok) {
      b.apply(r.record, &expunged);
      b.pos += r.consumed;
      rest.remove_prefix(r.consumed);
      continue;
    }
    // Torn tail: the frame claims more bytes than the file has. We hold the
    // flock and writers fsync under it, so this is a crash leftover.
    std::uint64_t claimed = rest.size() >= 4 ? (std::uint64_t(std::uint8_t(rest[0])) | std::uint64_t(std::uint8_t(rest[1])) << 8 |
                                                std::uint64_t(std::uint8_t(rest[2])) << 16 | std::uint64_t(std::uint8_t(rest[3])) << 24)
                                             : 0;
    bool torn = r.state == format::ReadState::NeedMore ||
                (claimed <= format::kMaxRecord && claimed + 8 >= rest.size() && !first);
    if (torn && !first) {
      log::warning("store: " + b.index().string() + ": cut a torn record at byte " + std::to_string(b.pos));
      if (::ftruncate(b.fd, off_t(b.pos)) != 0) return io_error("truncate " + b.index().string(), errno);
      (void)::fdatasync(b.fd);
      break;
    }
    return rebuild(b, b.pos, !first);
  }
  if (b.pos == 0) return rebuild(b, 0, false);  // empty index: created, then lost
  b.loaded = true;
  return {};
}

// The index is damaged at `valid_end`: keep what was read before it, add
// back every body whose header names this mailbox and that is not in the
// index, and give the mailbox a new UIDVALIDITY (UIDs handed out after the
// damage are unknown, so clients must not trust their caches).
Status FsStore::rebuild(Box& b, std::size_t valid_end, bool had_header) {
  log::warning("store: " + b.index().string() + ": damaged at byte " + std::to_string(valid_end) +
               ", rebuilding from the body files");
  if (!had_header) {
    b.msgs.clear();
    b.vanished.clear();
  }
  std::unordered_set<std::string> known;
  for (const auto& m : b.msgs) known.insert(m.guid);
  const std::string owner_user = user_dir_name(b.user);
  struct Found {
    std::int64_t date;
    std::string guid;
    std::uint64_t size;
    std::uint32_t pack = 0;
    std::uint64_t offset = 0;
  };
  std::vector<Found> found;
  auto ours = [&](const format::BodyHeader& h) {
    if (known.count(h.guid)) return false;
    for (const auto& [u, mb] : h.owners)
      if (mb == b.guid && user_dir_name(u) == owner_user) return true;
    return false;
  };
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(opt_.root / "bodies" / "pack", ec)) {
    const auto n = pack_number(e.path().filename().string());
    if (!n) continue;
    (void)scan_pack(e.path(), [&](const format::BodyHeader& h, std::uint64_t off) {
      if (ours(h)) {
        found.push_back({h.date, h.guid, h.size, *n, off});
        known.insert(h.guid);
      }
    });
  }
  for (const auto& sub : fs::directory_iterator(opt_.root / "bodies", ec)) {
    if (sub.path().filename() == "pack") continue;
    for (const auto& e : fs::directory_iterator(sub.path(), ec)) {
      int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      auto head = pread_exact(fd, 0, std::min<std::uint64_t>(fs::file_size(e.path(), ec), 1u << 16));
      ::close(fd);
      if (!head) continue;
      auto h = format::decode_body_header(*head);
      if (h && ours(h->first)) found.push_back({h->first.date, h->first.guid, h->first.size});
    }
  }
  std::sort(found.begin(), found.end(), [](const auto& x, const auto& y) { return x.date < y.date; });
  for (const auto& f : found) {
    MessageInfo m;
    m.uid = b.uidnext++;
    m.modseq = ++b.highest_modseq;
    m.internaldate = f.date;
    m.size = f.size;
    m.guid = f.guid;
    m.pack = f.pack;
    m.pack_offset = f.offset;
    b.msgs.push_back(std::move(m));
  }
  // Above what this mailbox had (its header may be lost: the user's list
  // keeps the highest UIDVALIDITY handed out) and above anything before.
  std::uint32_t floor = b.uidvalidity;
  if (auto list = read_list(b.user); list) floor = std::max(floor, list->uidvalidity_floor);
  b.uidvalidity = next_uidvalidity(floor);
  if (auto st = write_snapshot(b); !st) return st;
  log::warning("store: " + b.index().string() + ": rebuilt with " + std::to_string(b.msgs.size()) + " messages (" +
               std::to_string(found.size()) + " recovered from body files), new UIDVALIDITY " +
               std::to_string(b.uidvalidity));
  return {};
}

// Replaces the index by one holding only the current state; the flock
// moves to the new file. Called with the box locked.
Status FsStore::write_snapshot(Box& b) {
  std::string out;
  Record h;
  h.type = RecordType::Header;
  h.header = {b.uidvalidity, b.guid, b.uidnext, b.highest_modseq};
  out += format::encode(h);
  if (!b.vanished.empty()) {
    Record v;
    v.type = RecordType::Vanished;
    v.uids = b.vanished;
    out += format::encode(v);
  }
  for (const auto& m : b.msgs) {
    Record a;
    a.type = RecordType::Append;
    a.msg = m;
    out += format::encode(a);
  }
  // The new file is locked before it is renamed into place: a process that
  // opens it right after the rename must wait for us, not append under us.
  auto tmp = b.index();
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("create " + tmp.string(), errno);
  Status st = ::flock(fd, LOCK_EX) == 0 ? write_all(fd, out) : io_error("flock " + tmp.string(), errno);
  if (st && ::fsync(fd) != 0) st = io_error("fsync " + tmp.string(), errno);
  if (st && failpoint::hit("store.compact.before_rename")) st = Error{Errc::IoError, "store: injected failure"};
  if (st && ::rename(tmp.c_str(), b.index().c_str()) != 0) st = io_error("rename " + b.index().string(), errno);
  if (st) st = fsync_dir(b.dir);
  if (!st) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  }
  ::close(b.fd);  // releases the old file's lock: waiters see the new inode
  b.fd = fd;
  struct stat info {};
  ::fstat(fd, &info);
  b.ino = info.st_ino;
  b.pos = out.size();
  b.records = 1 + (b.vanished.empty() ? 0 : 1) + b.msgs.size();
  b.loaded = true;
  return {};
}

// Appends framed records and makes them durable. On failure the file is cut
// back so no half record stays behind.
Status FsStore::append_records(Box& b, const std::string& bytes) {
  std::size_t half = bytes.size() / 2;
  Status st;
  ssize_t n = ::pwrite(b.fd, bytes.data(), half, off_t(b.pos));
  if (n != ssize_t(half)) st = io_error("write " + b.index().string(), n < 0 ? errno : EIO);
  (void)failpoint::hit("store.index.torn");  // kill here leaves half a record
  if (st && failpoint::hit("store.index.write")) st = Error{Errc::IoError, "store: injected write failure"};
  if (st) {
    std::size_t done = half;
    while (done < bytes.size()) {
      ssize_t w = ::pwrite(b.fd, bytes.data() + done, bytes.size() - done, off_t(b.pos + done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        st = io_error("write " + b.index().string(), w < 0 ? errno : EIO);
        break;
      }
      done += std::size_t(w);
    }
  }
  if (st && ::fdatasync(b.fd) != 0) st = io_error("fsync " + b.index().string(), errno);
  if (!st) {
    (void)::ftruncate(b.fd, off_t(b.pos));
    return st;
  }
  // Apply what we wrote (the in-memory state follows the file).
  std::string_view rest(bytes);
  while (!rest.empty()) {
    auto r = format::decode(rest);
    if (r.state != format::ReadState::Ok) break;
    b.apply(r.record, nullptr);
    rest.remove_prefix(r.consumed);
  }
  b.pos += bytes.size();
  (void)failpoint::hit("store.index.after_fsync");
  return {};
}

template <class F>
auto FsStore::with_box(std::string_view user, std::string_view name, F&& fn) -> decltype(fn(std::declval<Box&>())) {
  auto guid = resolve(user, name);
  if (!guid) return guid.error();
  auto b = box(user, *guid);
  std::unique_lock lk(b->mu);
  if (auto st = lock_box(*b); !st) return st.error();
  auto out = fn(*b);
  unlock_box(*b);
  return out;
}

// Readers skip the index flock when the file has not grown since it was
// applied and is still linked (not replaced by a compaction or rebuild,
// whose rename drops the old file's link count to 0): the records in
// memory are then all there are. That is safe because the index is only
// ever appended to, and every writer appends under the flock: a record
// being written now shows in st_size, which sends us to the flock to wait
// for it, and one started after our fstat is ordered after this read, as it
// would be had we taken the lock first. Writers in this process hold Box::mu.
// Returns whether the flock was taken (then unlock_box() after).
Result<bool> FsStore::look_box(Box& b, bool nowait) {
  if (b.fd >= 0 && b.loaded) {
    struct stat st {};
    if (::fstat(b.fd, &st) == 0 && st.st_nlink > 0 && std::uint64_t(st.st_size) == b.pos) return false;
  }
  if (nowait) return would_block();
  if (auto st = lock_box(b); !st) return st.error();
  return true;
}

// with_box() for reading; with `nowait` it neither waits for Box::mu nor
// opens, locks or reads the index (would_block() instead).
template <class F>
auto FsStore::read_box(std::string_view user, std::string_view name, bool nowait, F&& fn)
    -> decltype(fn(std::declval<Box&>())) {
  auto guid = resolve(user, name, nowait);
  if (!guid) return guid.error();
  auto b = box(user, *guid);
  std::unique_lock lk(b->mu, std::defer_lock);
  if (!nowait) lk.lock();
  else if (!lk.try_lock()) return would_block();
  auto locked = look_box(*b, nowait);
  if (!locked) return locked.error();
  auto out = fn(*b);
  if (*locked) unlock_box(*b);
  return out;
}

void FsStore::notify(Box& b) {
  ChangeEvent ev{b.user, b.guid, b.highest_modseq, b.uidnext, std::uint32_t(b.msgs.size())};
  std::shared_ptr<WatchList> wl;
  {
    std::lock_guard lk(mu_);
    auto it = watches_.find(user_dir_name(b.user) + "/" + b.guid);
    if (it == watches_.end()) return;
    wl = it->second;
  }
  std::lock_guard lk(wl->mu);
  for (auto& [id, cb] : wl->callbacks) cb(ev);
}

std::unique_ptr<Subscription> FsStore::watch(std::string_view user, std::string_view name,
                                             std::function<void(const ChangeEvent&)> callback) {
  auto guid = resolve(user, name);
  if (!guid) return nullptr;
  std::shared_ptr<WatchList> wl;
  {
    std::lock_guard lk(mu_);
    auto& slot = watches_[user_dir_name(user) + "/" + *guid];
    if (!slot) slot = std::make_shared<WatchList>();
    wl = slot;
  }
  std::lock_guard lk(wl->mu);
  auto id = wl->next_id++;
  wl->callbacks.emplace(id, std::move(callback));
  return std::make_unique<Sub>(wl, id);
}

// ------------------------------------------------------------ reading

Result<MailboxStatus> FsStore::status(std::string_view user, std::string_view name) {
  return read_box(user, name, false, [](Box& b) -> Result<MailboxStatus> { return b.status(); });
}

Result<std::vector<MessageInfo>> FsStore::messages(std::string_view user, std::string_view name) {
  return read_box(user, name, false, [](Box& b) -> Result<std::vector<MessageInfo>> { return b.msgs; });
}

Result<std::vector<MessageInfo>> FsStore::messages(std::string_view user, std::string_view name,
                                                   const UidRanges& uids) {
  return read_box(user, name, false, [&](Box& b) -> Result<std::vector<MessageInfo>> {
    std::vector<MessageInfo> out;
    for (const auto& m : b.msgs)
      if (contains(uids, m.uid)) out.push_back(m);
    return out;
  });
}

Result<Changes> FsStore::changes_since(std::string_view user, std::string_view name, std::uint64_t modseq) {
  return read_box(user, name, false, [&](Box& b) -> Result<Changes> {
    Changes c;
    c.highest_modseq = b.highest_modseq;
    for (const auto& m : b.msgs)
      if (m.modseq > modseq) c.changed.push_back(m);
    for (const auto& [uid, ms] : b.vanished)
      if (ms > modseq) c.vanished.push_back(uid);
    std::sort(c.vanished.begin(), c.vanished.end());
    c.vanished.erase(std::unique(c.vanished.begin(), c.vanished.end()), c.vanished.end());
    return c;
  });
}

Result<Usage> FsStore::usage(std::string_view user) {
  auto list = read_list(user);
  if (!list) return list.error();
  Usage u;
  for (const auto& mb : list->boxes) {
    auto st = status(user, mb.name);
    if (!st) {
      if (st.error().code == Errc::NotFound) continue;  // deleted meanwhile
      return st.error();
    }
    u.bytes += st->size;
    u.messages += st->messages;
  }
  return u;
}

Result<std::string> FsStore::fetch(std::string_view user, std::string_view name, std::uint32_t uid,
                                   std::uint64_t offset, std::uint64_t length) {
  for (int attempt = 0;; ++attempt) {
    auto where = read_box(user, name, false, [&](Box& b) -> Result<BodyRef> {
      auto* m = b.find(uid);
      if (!m) return Error{Errc::NotFound, "no such message: UID " + std::to_string(uid)};
      return BodyRef{m->guid, m->pack, m->pack_offset};
    });
    if (!where) return where.error();
    auto r = read_body(where->guid, where->pack, where->offset, offset, length);
    // compact() may have moved the body to another pack and deleted this
    // one between the lookup and the read: the index names the copy now.
    if (!r && where->pack && attempt == 0) continue;
    return r;
  }
}

std::vector<Result<std::string>> FsStore::fetch_many(std::string_view user, std::string_view name,
                                                     const std::vector<std::uint32_t>& uids) {
  return std::move(fetch_batch(user, name, uids, false)->bodies);
}

// The most body bytes one nowait batch reads: decompressing and checking
// them is work done on an I/O thread, so it stays short; bigger batches
// (FETCH 1:*) go to the pool, where they overlap with sending the last one.
constexpr std::uint64_t kNowaitBytes = 256 * 1024;

std::optional<FetchBatch> FsStore::fetch_batch(std::string_view user, std::string_view name,
                                               const std::vector<std::uint32_t>& uids, bool nowait) {
  // GUIDs from one look at the index; the bodies are read after it.
  std::vector<BodyRef> where(uids.size());
  std::vector<std::uint64_t> sizes(uids.size());
  std::uint64_t bytes = 0;
  FetchBatch out;
  auto located = read_box(user, name, nowait, [&](Box& b) -> Result<bool> {
    for (std::size_t i = 0; i < uids.size(); ++i)
      if (auto* m = b.find(uids[i])) {
        where[i] = BodyRef{m->guid, m->pack, m->pack_offset};
        sizes[i] = m->size;
        bytes += m->size;
      }
    out.version = b.version();
    return true;
  });
  if (nowait && (!located || bytes > kNowaitBytes)) return std::nullopt;
  std::vector<std::optional<Result<std::string>>> got(uids.size());
  if (located) read_packed(where, sizes, got, nowait);
  out.bodies.reserve(uids.size());
  for (std::size_t i = 0; i < uids.size(); ++i) {
    auto& r = out.bodies;
    if (!located) r.push_back(located.error());
    else if (where[i].guid.empty()) r.push_back(Error{Errc::NotFound, "no such message: UID " + std::to_string(uids[i])});
    else if (got[i]) r.push_back(std::move(*got[i]));
    else if (nowait) return std::nullopt;  // a body file of its own, or not in the page cache
    else r.push_back(read_body(where[i].guid, where[i].pack, where[i].offset, 0, UINT64_MAX));
    if (!r.back() && where[i].pack) r.back() = fetch(user, name, uids[i]);  // moved meanwhile?
  }
  return out;
}

constexpr std::uint64_t kHeaderRoom = 4096;

// Bodies that sit close together in one pack (mail appended one after the
// other does) are read with one open and one pread for the stretch, instead
// of open, fstat, pread and close for each: FETCH 1:* spent a quarter of its
// time in those calls (perf, bench/imap). got[i] stays empty for a body
// not read here (own file, far away, or not wholly inside the stretch);
// read_body() then reads it alone and does all the checks.
// A record is its header (GUID, sizes, owners: well under kHeaderRoom for
// all but mail delivered to very many users) and at most `size` bytes.
void FsStore::read_packed(const std::vector<BodyRef>& where, const std::vector<std::uint64_t>& sizes,
                          std::vector<std::optional<Result<std::string>>>& got, bool nowait) {
  constexpr std::uint64_t kSpan = 8u << 20;  // bytes per pread at most
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < where.size(); ++i)
    if (where[i].pack && !where[i].guid.empty()) order.push_back(i);
  std::sort(order.begin(), order.end(), [&where](std::size_t a, std::size_t b) {
    return std::tie(where[a].pack, where[a].offset) < std::tie(where[b].pack, where[b].offset);
  });
  for (std::size_t at = 0; at < order.size();) {
    // a run in one pack whose starts lie within kSpan of the first
    const BodyRef& first = where[order[at]];
    std::size_t end = at + 1;
    std::uint64_t span = sizes[order[at]] + kHeaderRoom;
    for (; end < order.size() && where[order[end]].pack == first.pack; ++end) {
      const std::uint64_t reach = where[order[end]].offset - first.offset + sizes[order[end]] + kHeaderRoom;
      if (reach > kSpan) break;
      span = std::max(span, reach);
    }
    if (end - at >= 2 || nowait) read_run(where, order, at, end, span, got, nowait);
    at = end;
  }
}

void FsStore::read_run(const std::vector<BodyRef>& where, const std::vector<std::size_t>& order, std::size_t at,
                       std::size_t end, std::uint64_t want, std::vector<std::optional<Result<std::string>>>& got,
                       bool nowait) {
  const BodyRef& first = where[order[at]];
  auto pack = pack_reader(first.pack, nowait);
  if (!pack || first.offset >= pack->size) return;  // read_body() reports it
  const std::uint64_t len = std::min(want, pack->size - first.offset);
  auto span = pread_exact(pack->file->fd, first.offset, len, nowait);
  if (!span) return;
  for (std::size_t k = at; k < end; ++k) {
    const BodyRef& r = where[order[k]];
    const std::string_view rec = std::string_view(*span).substr(std::size_t(r.offset - first.offset));
    auto h = format::decode_body_header(rec);
    if (!h || h->first.guid != r.guid || h->second + h->first.stored > rec.size()) continue;
    const auto& bh = h->first;
    const std::string_view stored = rec.substr(h->second, std::size_t(bh.stored));
    auto raw = unpack_body(bh, std::string(stored), r.guid);
    if (!raw) continue;  // read_body() says what is wrong
    got[order[k]] = std::move(*raw);
  }
}

Result<MailboxStatus> FsStore::version(std::string_view user, std::string_view name) {
  return read_box(user, name, false, [](Box& b) -> Result<MailboxStatus> { return b.version(); });
}

// Descriptors of packs kept at most (they are reopened after a clear).
constexpr std::size_t kMaxPackFds = 64;

Result<FsStore::PackView> FsStore::open_file(const fs::path& path) {
  auto f = std::make_shared<PackFd>();
  f->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) return errno == ENOENT ? Error{Errc::NotFound, path.string()} : io_error("open " + path.string(), errno);
  struct stat st {};
  if (::fstat(f->fd, &st) != 0) return io_error("stat " + path.string(), errno);
  return PackView{std::move(f), std::uint64_t(st.st_size)};
}

// A pack's descriptor, kept open: FETCH used to open, fstat and close the
// pack for every message. A pack is only appended to and, once no index
// names its bodies, unlinked (compact), so a kept descriptor reads every
// record an index names. The fstat on each use gives the size and notices
// an unlinked pack (link count 0): its descriptor is dropped, so its space
// is freed and a new pack that took its number is opened by name.
Result<FsStore::PackView> FsStore::pack_reader(std::uint32_t pack, bool nowait) {
  std::shared_ptr<const PackFd> kept;
  {
    std::lock_guard lk(mu_);
    if (auto it = packs_.find(pack); it != packs_.end()) kept = it->second;
  }
  struct stat st {};
  if (kept && ::fstat(kept->fd, &st) == 0 && st.st_nlink > 0) return PackView{kept, std::uint64_t(st.st_size)};
  if (nowait) return would_block();
  auto fresh = open_file(pack_path(pack));
  if (!fresh) return fresh.error();
  std::lock_guard lk(mu_);
  if (packs_.size() >= kMaxPackFds) packs_.clear();  // readers in flight keep theirs
  packs_[pack] = fresh->file;
  return fresh;
}

// Bodies never change once written, so they are read without a lock. The
// record starts at `base` (0 in a body file of its own). The first read
// takes 64 KiB: the header and, for most mail, the whole body, so a typical
// message costs open, fstat, one pread and close.
Result<std::string> FsStore::read_body(const std::string& guid, std::uint32_t pack, std::uint64_t base,
                                       std::uint64_t offset, std::uint64_t length) {
  auto file = pack ? pack_reader(pack, false) : open_file(body_path(guid));
  if (!file && file.error().code == Errc::NotFound) return Error{Errc::Corrupt, "store: body " + guid + " is missing"};
  if (!file) return file.error();
  const int fd = file->file->fd;
  if (base >= file->size) return Error{Errc::Corrupt, "store: body " + guid + " is missing"};
  const auto avail = file->size - base;
  auto head = pread_exact(fd, base, std::min<std::uint64_t>(avail, 65536));
  if (!head) return head.error();
  auto h = format::decode_body_header(*head);
  if (!h && h.error().detail == "short" && avail > head->size()) {
    // A header that lists many owners.
    head = pread_exact(fd, base, std::min<std::uint64_t>(avail, format::kMaxBodyHeader + 12));
    if (!head) return head.error();
    h = format::decode_body_header(*head);
  }
  if (!h) return Error{Errc::Corrupt, "store: body " + guid + ": " + h.error().detail};
  const auto& bh = h->first;
  const std::uint64_t data_off = h->second;
  if (bh.guid != guid) return Error{Errc::Corrupt, "store: body " + guid + " is not where the index says"};
  // A body file holds exactly one record; a pack holds more after it.
  if (pack ? data_off + bh.stored > avail : data_off + bh.stored != avail)
    return Error{Errc::Corrupt, "store: body " + guid + " has the wrong length"};
  offset = std::min(offset, bh.size);
  length = std::min(length, bh.size - offset);
  const bool whole = offset == 0 && length == bh.size;
  if (bh.codec == format::Codec::None && !whole) return pread_exact(fd, base + data_off + offset, length);
  std::string stored;
  if (head->size() >= data_off + bh.stored) {
    stored = std::move(*head);  // already read: cut the header and what follows in place
    stored.resize(data_off + bh.stored);
    stored.erase(0, data_off);
  } else {
    auto rest = pread_exact(fd, base + data_off, bh.stored);
    if (!rest) return rest.error();
    stored = std::move(*rest);
  }
  auto raw = unpack_body(bh, std::move(stored), guid);
  if (!raw || whole) return raw;
  return raw->substr(offset, length);
}

Result<std::pair<std::uint64_t, std::uint64_t>> FsStore::body_usage() {
  // Bytes of every body file and pack; bodies counted one by one (a pack's
  // records are walked, expunged ones not yet repacked included).
  std::uint64_t bytes = 0, bodies = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(opt_.root / "bodies", ec)) {
    if (!e.is_regular_file(ec)) continue;
    bytes += e.file_size(ec);
    if (e.path().parent_path().filename() != "pack") {
      ++bodies;
    } else if (pack_number(e.path().filename().string())) {
      if (auto st = scan_pack(e.path(), [&](const format::BodyHeader&, std::uint64_t) { ++bodies; }); !st)
        return st.error();
    }
  }
  if (ec) return Error{Errc::IoError, "store: " + ec.message()};
  return std::make_pair(bytes, bodies);
}

// ------------------------------------------------------------ writing

// Writes a body file durably: tmp/, fsync, rename into bodies/xx/, fsync
// that folder. Returns its GUID.
Result<FsStore::BodyRef> FsStore::write_body(std::string_view content, std::int64_t date,
                                             const std::vector<std::pair<std::string, std::string>>& owners) {
  format::BodyHeader h;
  h.guid = random_guid();
  h.size = content.size();
  h.crc = format::crc32(content);
  h.date = date;
  h.owners = owners;
  std::optional<std::string> packed;
  if (content.size() >= opt_.compress_min) packed = pack_with(opt_.codec, content, opt_);
  if (packed) h.codec = opt_.codec;
  std::string_view data = packed ? std::string_view(*packed) : content;
  h.stored = data.size();
  if (opt_.pack_max > 0 && data.size() <= opt_.pack_max) {
    std::string record = format::encode_body_header(h);
    record.append(data);
    return pack_body(record, h.guid);
  }
  auto tmp = opt_.root / "tmp" / h.guid;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("create " + tmp.string(), errno);
  Status st = write_all(fd, format::encode_body_header(h));
  if (st) st = write_all(fd, data);
  if (st && failpoint::hit("store.body.write")) st = Error{Errc::DiskFull, "store: injected write failure"};
  (void)failpoint::hit("store.body.before_fsync");
  if (st && ::fdatasync(fd) != 0) st = io_error("fsync " + tmp.string(), errno);
  ::close(fd);
  auto dir = opt_.root / "bodies" / h.guid.substr(0, 2);
  if (st) st = make_dir(dir);
  auto path = dir / h.guid;
  if (st && ::rename(tmp.c_str(), path.c_str()) != 0) st = io_error("rename " + path.string(), errno);
  if (st) st = fsync_dir(dir);
  if (!st) {
    ::unlink(tmp.c_str());
    return st.error();
  }
  (void)failpoint::hit("store.body.after_rename");
  return BodyRef{h.guid, 0, 0};
}

// Opens the newest pack (the highest number) or, after a rotation, pack_no_.
// Its directory entry is fsynced every time: another process may have
// created the file and died before doing so.
Status FsStore::open_pack() {
  auto dir = opt_.root / "bodies" / "pack";
  if (auto st = make_dir(dir); !st) return st;
  if (pack_no_ == 0) {
    pack_no_ = 1;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (auto n = pack_number(e.path().filename().string())) pack_no_ = std::max(pack_no_, *n);
  }
  auto path = pack_path(pack_no_);
  pack_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (pack_fd_ < 0) return io_error("open " + path.string(), errno);
  return fsync_dir(dir);
}

// Appends one body record (the bytes a body file of its own would hold) to
// the current pack under its flock, fdatasynced before it returns. A crash
// mid-append leaves a torn tail that no index names; the next append goes
// after it, and rebuild() skips it (each record's CRC is checked there).
Result<FsStore::BodyRef> FsStore::pack_body(std::string_view record, const std::string& guid, std::uint32_t avoid) {
  std::lock_guard lk(pack_mu_);
  for (int attempt = 0; attempt < 16; ++attempt) {
    if (pack_fd_ < 0)
      if (auto st = open_pack(); !st) return st.error();
    while (::flock(pack_fd_, LOCK_EX) != 0)
      if (errno != EINTR) return io_error("flock pack", errno);
    struct stat info {};
    if (::fstat(pack_fd_, &info) != 0) {
      int e = errno;
      ::flock(pack_fd_, LOCK_UN);
      return io_error("stat pack", e);
    }
    if (info.st_nlink == 0 || std::uint64_t(info.st_size) >= opt_.pack_size || pack_no_ == avoid) {
      // Full: go on to the next number. Unlinked by a compact() (all its
      // bodies expunged): start again from the newest that exists.
      ::close(pack_fd_);  // drops the flock
      pack_fd_ = -1;
      pack_no_ = info.st_nlink == 0 ? 0 : pack_no_ + 1;
      continue;
    }
    const auto offset = std::uint64_t(info.st_size);
    Status st = pwrite_all(pack_fd_, record, offset);
    if (st && failpoint::hit("store.body.write")) st = Error{Errc::DiskFull, "store: injected write failure"};
    (void)failpoint::hit("store.body.before_fsync");
    if (st && ::fdatasync(pack_fd_) != 0) st = io_error("fsync pack", errno);
    if (!st) (void)::ftruncate(pack_fd_, off_t(offset));  // no half record behind a failure
    ::flock(pack_fd_, LOCK_UN);
    if (!st) return st.error();
    (void)failpoint::hit("store.body.after_rename");
    return BodyRef{guid, pack_no_, offset};
  }
  return Error{Errc::TempFailure, "store: pack files keep changing"};
}

Result<std::uint32_t> FsStore::append_locked(Box& b, MessageInfo info) {
  Record r;
  r.type = RecordType::Append;
  info.uid = b.uidnext;
  info.modseq = b.highest_modseq + 1;
  r.msg = std::move(info);
  if (auto st = append_records(b, format::encode(r)); !st) return st.error();
  return r.msg.uid;
}

Result<std::uint32_t> FsStore::append(std::string_view user, std::string_view name, const AppendRequest& req) {
  auto guid = resolve(user, name);
  if (!guid) return guid.error();
  const auto date = req.internaldate.value_or(now_seconds());
  auto body = write_body(req.content, date, {{std::string(user), *guid}});
  if (!body) return body.error();
  MessageInfo m;
  m.flags = req.flags & (kSeen | kAnswered | kFlagged | kDeleted | kDraft);
  m.keywords = unique_keywords(req.keywords);
  m.internaldate = date;
  m.size = req.content.size();
  m.guid = body->guid;
  m.pack = body->pack;
  m.pack_offset = body->offset;
  m.envelope = req.envelope;
  m.bodystructure = req.bodystructure;
  if (m.envelope.empty() || m.bodystructure.empty()) std::tie(m.envelope, m.bodystructure) = structure_strings(req.content);
  auto b = box(user, *guid);
  Result<std::uint32_t> uid{Errc::TempFailure};
  {
    std::unique_lock lk(b->mu);
    if (auto st = lock_box(*b); !st) return st.error();
    uid = append_locked(*b, std::move(m));
    unlock_box(*b);
  }
  if (uid) notify(*b);
  return uid;
}

std::vector<DeliveryResult> FsStore::deliver(std::string_view content, std::int64_t internaldate,
                                             const std::vector<DeliveryTarget>& targets) {
  std::vector<DeliveryResult> out(targets.size());
  std::vector<std::pair<std::string, std::string>> owners(targets.size());
  bool any = false;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const auto& t = targets[i];
    auto guid = resolve(t.user, t.mailbox);
    if (!guid && guid.error().code == Errc::NotFound) {
      // First mail for this user, or a mailbox a filter asked for: create it.
      if (auto st = create_user(t.user); !st) {
        out[i].status = st;
        continue;
      }
      guid = resolve(t.user, t.mailbox);
      if (!guid && guid.error().code == Errc::NotFound) {
        (void)create(t.user, t.mailbox, SpecialUse::None);
        guid = resolve(t.user, t.mailbox);
      }
    }
    if (!guid) {
      out[i].status = guid.error();
      continue;
    }
    owners[i] = {t.user, *guid};
    any = true;
  }
  if (!any) return out;
  std::vector<std::pair<std::string, std::string>> present;
  for (const auto& o : owners)
    if (!o.second.empty()) present.push_back(o);
  auto body = write_body(content, internaldate, present);
  const auto [envelope, bodystructure] = structure_strings(content);
  for (std::size_t i = 0; i < targets.size(); ++i) {
    if (owners[i].second.empty()) continue;
    if (!body) {
      out[i].status = body.error();
      continue;
    }
    MessageInfo m;
    m.flags = targets[i].flags;
    m.internaldate = internaldate;
    m.size = content.size();
    m.guid = body->guid;
    m.pack = body->pack;
    m.pack_offset = body->offset;
    m.envelope = envelope;
    m.bodystructure = bodystructure;
    auto b = box(targets[i].user, owners[i].second);
    {
      std::unique_lock lk(b->mu);
      if (auto st = lock_box(*b); !st) {
        out[i].status = st;
        continue;
      }
      auto uid = append_locked(*b, std::move(m));
      if (uid) {
        out[i].uid = *uid;
        out[i].uidvalidity = b->uidvalidity;
      } else {
        out[i].status = uid.error();
      }
      unlock_box(*b);
    }
    if (out[i].status) notify(*b);
  }
  return out;
}

Status FsStore::set_cache(std::string_view user, std::string_view name, std::uint32_t uid, std::string envelope,
                          std::string bodystructure) {
  auto r = with_box(user, name, [&](Box& b) -> Result<bool> {
    if (!b.find(uid)) return Error{Errc::NotFound, "no such message: UID " + std::to_string(uid)};
    Record rec;
    rec.type = RecordType::Cache;
    rec.msg.uid = uid;
    rec.msg.envelope = std::move(envelope);
    rec.msg.bodystructure = std::move(bodystructure);
    if (auto st = append_records(b, format::encode(rec)); !st) return st.error();
    return true;
  });
  if (!r) return r.error();
  return {};
}

Result<StoreResult> FsStore::store_flags(std::string_view user, std::string_view name, const UidRanges& uids,
                                         const FlagUpdate& update) {
  std::shared_ptr<Box> changed_box;
  auto r = with_box(user, name, [&](Box& b) -> Result<StoreResult> {
    StoreResult res;
    std::string bytes;
    std::uint64_t modseq = b.highest_modseq;
    const Flags mask = update.flags & (kSeen | kAnswered | kFlagged | kDeleted | kDraft);
    for (auto& m : b.msgs) {
      if (!contains(uids, m.uid)) continue;
      if (update.unchanged_since && m.modseq > *update.unchanged_since) {
        res.modified.push_back(m.uid);
        continue;
      }
      Flags f = m.flags;
      auto kw = m.keywords;
      switch (update.mode) {
        case FlagUpdate::Mode::Replace:
          f = mask;
          kw = unique_keywords(update.keywords);
          break;
        case FlagUpdate::Mode::Add:
          f |= mask;
          for (const auto& k : update.keywords)
            if (!k.empty() && !has_keyword(kw, k) && kw.size() < format::kMaxKeywords) kw.push_back(k);
          break;
        case FlagUpdate::Mode::Remove:
          f &= Flags(~mask);
          std::erase_if(kw, [&](const auto& k) { return has_keyword(update.keywords, k); });
          break;
      }
      bool same_kw = kw.size() == m.keywords.size() &&
                     std::all_of(kw.begin(), kw.end(), [&](const auto& k) { return has_keyword(m.keywords, k); });
      if (f == m.flags && same_kw) continue;
      Record rec;
      rec.type = RecordType::Flags;
      rec.msg.uid = m.uid;
      rec.msg.modseq = ++modseq;
      rec.msg.flags = f;
      rec.msg.keywords = std::move(kw);
      bytes += format::encode(rec);
      res.changed.push_back(m);  // filled in below, after the write
    }
    if (!bytes.empty())
      if (auto st = append_records(b, bytes); !st) return st.error();
    for (auto& c : res.changed)
      if (auto* m = b.find(c.uid)) c = *m;
    res.highest_modseq = b.highest_modseq;
    if (!res.changed.empty()) changed_box = box(user, b.guid);
    return res;
  });
  if (changed_box) notify(*changed_box);
  return r;
}

std::vector<std::uint32_t> FsStore::expunge_locked(Box& b, const std::optional<UidRanges>& uids, bool only_deleted,
                                                   Status& st) {
  Record rec;
  rec.type = RecordType::Expunge;
  rec.modseq = b.highest_modseq + 1;
  std::vector<std::uint32_t> out;
  for (const auto& m : b.msgs) {
    if (only_deleted && !(m.flags & kDeleted)) continue;
    if (uids && !contains(*uids, m.uid)) continue;
    rec.uids.emplace_back(m.uid, rec.modseq);
    out.push_back(m.uid);
  }
  if (out.empty()) return out;
  (void)failpoint::hit("store.expunge.before_write");
  st = append_records(b, format::encode(rec));
  if (!st) out.clear();
  return out;
}

Result<std::vector<std::uint32_t>> FsStore::expunge(std::string_view user, std::string_view name,
                                                    const std::optional<UidRanges>& uids) {
  std::shared_ptr<Box> changed;
  auto r = with_box(user, name, [&](Box& b) -> Result<std::vector<std::uint32_t>> {
    Status st;
    auto out = expunge_locked(b, uids, true, st);
    if (!st) return st.error();
    if (!out.empty()) changed = box(user, b.guid);
    return out;
  });
  if (changed) notify(*changed);
  return r;
}

Result<CopyResult> FsStore::copy_impl(std::string_view user, std::string_view from, const UidRanges& uids,
                                      std::string_view to, bool is_move) {
  auto src_guid = resolve(user, from);
  if (!src_guid) return src_guid.error();
  auto dst_guid = resolve(user, to);
  if (!dst_guid) return dst_guid.error();
  if (*src_guid == *dst_guid && is_move) return Error{Errc::Invalid, "source and destination are the same mailbox"};
  // Keeps compact() from sweeping a body between reading the source and
  // writing the destination's reference.
  std::shared_lock sweep(sweep_mu_);
  while (::flock(sweep_fd_, LOCK_SH) != 0)
    if (errno != EINTR) return io_error("flock sweep.lock", errno);
  struct Unflock {
    int fd;
    ~Unflock() { ::flock(fd, LOCK_UN); }
  } unflock{sweep_fd_};

  auto src = box(user, *src_guid);
  std::vector<MessageInfo> picked;
  {
    std::unique_lock lk(src->mu);
    if (auto st = lock_box(*src); !st) return st.error();
    for (const auto& m : src->msgs)
      if (contains(uids, m.uid)) picked.push_back(m);
    unlock_box(*src);
  }
  CopyResult res;
  auto dst = box(user, *dst_guid);
  if (!picked.empty()) {
    std::unique_lock lk(dst->mu);
    if (auto st = lock_box(*dst); !st) return st.error();
    std::string bytes;
    std::uint32_t uid = dst->uidnext;
    std::uint64_t modseq = dst->highest_modseq;
    for (const auto& m : picked) {
      Record r;
      r.type = RecordType::Append;
      r.msg = m;
      r.msg.uid = uid++;
      r.msg.modseq = ++modseq;
      res.uids.emplace_back(m.uid, r.msg.uid);
      bytes += format::encode(r);
    }
    auto st = append_records(*dst, bytes);
    res.dest_uidvalidity = dst->uidvalidity;
    unlock_box(*dst);
    if (!st) return st.error();
  } else {
    auto s = status(user, to);
    if (s) res.dest_uidvalidity = s->uidvalidity;
  }
  if (!picked.empty()) notify(*dst);
  if (is_move && !picked.empty()) {
    // A crash here leaves the messages in both mailboxes: a duplicate, never a loss.
    UidRanges moved;
    for (const auto& [s, d] : res.uids) moved.emplace_back(s, s);
    Status st;
    {
      std::unique_lock lk(src->mu);
      if (auto ls = lock_box(*src); !ls) return ls.error();
      res.expunged = expunge_locked(*src, moved, false, st);
      unlock_box(*src);
    }
    if (!st) return st.error();
    notify(*src);
  }
  return res;
}

Result<CopyResult> FsStore::copy(std::string_view user, std::string_view from, const UidRanges& uids,
                                 std::string_view to) {
  return copy_impl(user, from, uids, to, false);
}

Result<CopyResult> FsStore::move(std::string_view user, std::string_view from, const UidRanges& uids,
                                 std::string_view to) {
  return copy_impl(user, from, uids, to, true);
}

// ------------------------------------------------------------ compaction

// Moves the live bodies of a pack that is mostly dead (expunged) into the
// current pack, points every index that names them at the copies (a
// Relocate record each), then deletes the old pack. Readers are never
// blocked: until the unlink both copies are valid, and a reader that lost
// the race reads the index again (fetch()). A crash half-way leaves at most
// an unreferenced copy. Returns the number of bodies freed.
std::size_t FsStore::repack(std::uint32_t pack, const std::vector<PackRef>& refs, fs::file_time_type cutoff) {
  const auto path = pack_path(pack);
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec || fs::last_write_time(path, ec) > cutoff) return 0;  // still taking appends
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  // The live records, each once (one body may be in many mailboxes).
  std::map<std::string, std::string> records;
  std::uint64_t live_bytes = 0;
  for (const auto& r : refs) {
    if (records.count(r.guid)) continue;
    auto head = pread_exact(fd, r.offset, std::min<std::uint64_t>(size - std::min(size, r.offset), 65536));
    if (!head) return 0;
    auto h = format::decode_body_header(*head);
    if (!h || h->first.guid != r.guid || r.offset + h->second + h->first.stored > size) return 0;
    auto whole = pread_exact(fd, r.offset, h->second + h->first.stored);
    if (!whole) return 0;
    live_bytes += whole->size();
    records.emplace(r.guid, std::move(*whole));
  }
  if (live_bytes * 4 > size * 3) return 0;  // less than a quarter dead: not worth the copy
  std::map<std::string, BodyRef> moved;
  for (const auto& [guid, rec] : records) {
    auto to = pack_body(rec, guid, pack);
    if (!to) {
      log::warning("store: repack of pack " + std::to_string(pack) + ": " + to.error().detail);
      return 0;
    }
    moved.emplace(guid, *to);
  }
  std::map<std::pair<std::string, std::string>, std::vector<const PackRef*>> by_box;
  for (const auto& r : refs) by_box[{r.user, r.mailbox}].push_back(&r);
  for (const auto& [key, list] : by_box) {
    auto b = box(key.first, key.second);
    std::unique_lock lk(b->mu);
    if (auto st = lock_box(*b); !st) return 0;  // the old pack stays: still valid
    std::string bytes;
    for (const auto* r : list) {
      const auto* m = b->find(r->uid);
      if (!m || m->guid != r->guid || m->pack != pack) continue;
      Record rec;
      rec.type = RecordType::Relocate;
      rec.msg.uid = r->uid;
      rec.msg.pack = moved[r->guid].pack;
      rec.msg.pack_offset = moved[r->guid].offset;
      bytes += format::encode(rec);
    }
    Status st = bytes.empty() ? Status{} : append_records(*b, bytes);
    unlock_box(*b);
    if (!st) return 0;
  }
  // Only if nothing was appended to it meanwhile (its size and age are as seen).
  while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
  }
  struct stat info {};
  std::size_t freed = 0;
  if (::fstat(fd, &info) == 0 && std::uint64_t(info.st_size) == size && fs::last_write_time(path, ec) <= cutoff &&
      ::unlink(path.c_str()) == 0) {
    (void)fsync_dir(path.parent_path());
    freed = 1;
  }
  log::info("store: repacked pack " + std::to_string(pack) + ": " + std::to_string(records.size()) +
            " live bodies moved" + (freed ? ", old pack deleted" : ""));
  return freed;
}

// Deletes pack files that no mailbox refers to any more (repack() handles
// the ones that still hold live bodies). The unlink happens under the pack's flock
// after a second look at its age, so no append is in flight; a writer that
// still has it open sees st_nlink == 0 and moves on (pack_body).
std::size_t FsStore::sweep_packs(const std::set<std::uint32_t>& live, fs::file_time_type cutoff) {
  const auto dir = opt_.root / "bodies" / "pack";
  std::size_t removed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto n = pack_number(e.path().filename().string());
    if (!n || live.count(*n) || e.last_write_time(ec) > cutoff) continue;
    int fd = ::open(e.path().c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;
    while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
    }
    std::error_code ec2;
    if (fs::last_write_time(e.path(), ec2) <= cutoff && !ec2 && ::unlink(e.path().c_str()) == 0) ++removed;
    ::close(fd);
  }
  if (removed) (void)fsync_dir(dir);
  return removed;
}

Status FsStore::compact() {
  std::unique_lock sweep(sweep_mu_);
  while (::flock(sweep_fd_, LOCK_EX) != 0)
    if (errno != EINTR) return io_error("flock sweep.lock", errno);
  struct Unflock {
    int fd;
    ~Unflock() { ::flock(fd, LOCK_UN); }
  } unflock{sweep_fd_};

  std::unordered_set<std::string> live;
  std::set<std::uint32_t> live_packs;
  std::map<std::uint32_t, std::vector<PackRef>> refs;
  std::error_code ec;
  std::size_t rewritten = 0, removed = 0;
  for (const auto& ud : fs::directory_iterator(opt_.root / "users", ec)) {
    auto list = read_list_file(ud.path() / "mailboxes", ud.path().filename().string());
    if (!list || list->user.empty()) continue;
    const std::string user = list->user;
    std::set<std::string> named;
    for (const auto& mb : list->boxes) {
      named.insert(mb.guid);
      auto b = box(user, mb.guid);
      std::unique_lock lk(b->mu);
      if (auto st = lock_box(*b); !st) return st;  // do not sweep with an unreadable index
      std::size_t dead = b->records > b->msgs.size() + 1 ? b->records - b->msgs.size() - 1 : 0;
      if (dead >= opt_.compact_min_dead && dead > b->msgs.size()) {
        if (auto st = write_snapshot(*b); st) ++rewritten;
      }
      for (const auto& m : b->msgs) {
        if (m.pack) {
          live_packs.insert(m.pack);
          refs[m.pack].push_back({user, mb.guid, m.uid, m.guid, m.pack_offset});
        } else {
          live.insert(m.guid);
        }
      }
      unlock_box(*b);
    }
    // Folders of mailboxes deleted before a crash finished removing them.
    for (const auto& e : fs::directory_iterator(ud.path(), ec))
      if (e.is_directory(ec) && format::valid_guid(e.path().filename().string()) &&
          !named.count(e.path().filename().string()))
        fs::remove_all(e.path(), ec);
  }
  const auto cutoff = fs::file_time_type::clock::now() - opt_.sweep_grace;
  for (const auto& [pack, r] : refs) removed += repack(pack, r, cutoff);
  removed += sweep_packs(live_packs, cutoff);
  for (const auto& sub : fs::directory_iterator(opt_.root / "bodies", ec)) {
    if (sub.path().filename() == "pack") continue;
    bool any = false;
    for (const auto& e : fs::directory_iterator(sub.path(), ec)) {
      auto name = e.path().filename().string();
      if (live.count(name) || e.last_write_time(ec) > cutoff) continue;
      if (::unlink(e.path().c_str()) == 0) {
        ++removed;
        any = true;
      }
    }
    if (any) (void)fsync_dir(sub.path());
  }
  for (const auto& e : fs::directory_iterator(opt_.root / "tmp", ec))
    if (e.last_write_time(ec) <= cutoff) fs::remove_all(e.path(), ec);
  {
    std::lock_guard lk(mu_);
    packs_.clear();  // kept descriptors of packs deleted above would hold their space
  }
  log::info("store: compact: " + std::to_string(rewritten) + " indexes rewritten, " + std::to_string(removed) +
            " unreferenced bodies removed");
  return {};
}

}  // namespace moat::store

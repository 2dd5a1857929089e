// The durable spool (SECURITY.md promise 1; RFC 5321 §6.1): a message is
// committed only when its queue file ends in a valid END record, has been
// renamed into incoming/, and both the file and incoming/ are fsynced.
// Commits from many sessions share one directory fsync (group commit).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/envelope.hpp"
#include "common/error.hpp"
#include "gateway/queue/queue_file.hpp"

namespace moat::gateway {

namespace asio = boost::asio;

class Spool;

// One message being received. Bytes are buffered and written in large chunks
// (the I/O thread never issues many small writes); destroying an uncommitted
// writer removes its tmp file.
class SpoolWriter {
 public:
  ~SpoolWriter();
  SpoolWriter(const SpoolWriter&) = delete;
  SpoolWriter& operator=(const SpoolWriter&) = delete;

  const std::string& id() const { return id_; }
  // Message bytes (CRLF lines). May be called many times.
  Status append(std::string_view content);
  // A complete header line ending in CRLF, sent before the message (X-Spam-*).
  void add_header(std::string line_crlf);

 private:
  friend class Spool;
  SpoolWriter(Spool& spool, std::string id, std::string head);
  Status write_pending(bool keep = false);  // blocking: writes buf_ to the tmp file (keep: and keeps it)
  Status open_file();

  Spool& spool_;
  std::string id_;
  std::string buf_;                   // encoded records not yet written
  std::vector<std::string> prepend_;
  int fd_ = -1;
  std::uint64_t written_ = 0;         // bytes already in the file
  std::uint32_t crc_ = 0;             // CRC32C of everything in buf_ + file
  std::uint64_t total_ = 0;           // written_ + buf_.size()
  Status failed_;                     // sticky first write error
  bool committed_ = false;
};

class Spool {
 public:
  // Queue names; also the folder names under the spool directory.
  static constexpr std::string_view kTmp = "tmp", kIncoming = "incoming", kActive = "active",
                                    kDeferred = "deferred", kHold = "hold", kCorrupt = "corrupt";

  // sync_threads: threads that issue fsyncs concurrently (ext4 batches
  // concurrent fsyncs into one journal commit; see docs/queue.md for figures).
  Spool(std::filesystem::path dir, asio::thread_pool& blocking, unsigned sync_threads = 4);
  ~Spool();

  // Creates the folders and recovers after a crash: tmp/* removed, files in
  // incoming/active/deferred/hold verified (torn ones → corrupt/, logged),
  // active/* → incoming/. Blocking; call at start-up before any session.
  Status init();

  Result<std::unique_ptr<SpoolWriter>> begin(const Envelope& env);
  // END + rename into incoming/ + fsync(file) + fsync(incoming/); the id only
  // when all succeeded. Disk errors are Errc::IoError / Errc::DiskFull.
  asio::awaitable<Result<std::string>> commit(std::unique_ptr<SpoolWriter> writer);
  // Called with each committed id, on the committer's executor after commit
  // finished there (so a caller that holds the message right after commit()
  // returns runs before the hook). `file` is the queue file exactly as
  // written when it was small enough to keep (qf::QueueFile::kKeepBytes),
  // else empty: the queue manager then need not read back what it just wrote.
  using CommitHook = std::function<void(const std::string& id, std::string file)>;
  void on_committed(CommitHook hook);
  // From just before its file appears in incoming/ until the commit hook has
  // run (or the commit failed): a scan of incoming/ must leave it alone.
  bool committing(const std::string& id) const;

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path path(std::string_view queue, std::string_view id) const { return dir_ / queue / id; }
  asio::thread_pool& blocking() { return blocking_; }

  // rename(from/id, to/id); with sync the target folder is fsynced too.
  // Errc::NotFound when the file is not in `from`. Blocking.
  Status move(std::string_view id, std::string_view from, std::string_view to, bool sync = false);

  // A fresh queue id: 10 base62 digits of microseconds + 4 of a counter, so
  // ids sort by arrival and are safe as file names.
  std::string new_id();

 private:
  friend class SpoolWriter;
  struct DirSync;
  void finish_commit(SpoolWriter& w, std::function<void(Status)> done);
  Status recover_folder(std::string_view queue);
  void set_committing(const std::string& id, bool on);

  std::filesystem::path dir_;
  asio::thread_pool& blocking_;
  asio::thread_pool sync_pool_;
  std::unique_ptr<DirSync> dirsync_;
  CommitHook hook_;
  std::atomic<std::uint32_t> seq_;
  mutable std::mutex committing_mu_;
  std::set<std::string> committing_;
};

}  // namespace moat::gateway

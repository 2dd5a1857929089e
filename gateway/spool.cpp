// See spool.hpp. Commit path, per message on the sync pool: write what is
// buffered, rename tmp/ → incoming/, fdatasync; then the directory group:
// the first committer to arrive fsyncs incoming/ once for every rename that
// happened before, and completes them all (group commit, as databases do).
#include "common/file_io.hpp"
#include "gateway/spool.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <random>

#include "common/failpoint.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"

namespace moat::gateway {
namespace {

constexpr std::size_t kContentRecord = 1u << 20;  // bytes per content record
constexpr std::size_t kWriteThreshold = 4u << 20; // buffer this much before writing early




std::string base62(std::uint64_t v, int width) {
  static constexpr char kDigits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::string s(std::size_t(width), '0');
  for (int i = width - 1; i >= 0; --i) {
    s[std::size_t(i)] = kDigits[v % 62];
    v /= 62;
  }
  return s;
}

struct Counters {
  metrics::Counter& commits = metrics::counter("moat_spool_commits_total", {}, "Messages committed to the spool");
  metrics::Counter& failures = metrics::counter("moat_spool_commit_failures_total", {}, "Spool commits that failed");
  metrics::Counter& dir_syncs = metrics::counter("moat_spool_dir_fsyncs_total", {}, "fsyncs of incoming/ (one per group)");
  metrics::Histogram& latency = metrics::histogram("moat_spool_commit_seconds", {}, "Time from commit() to durable");
};
Counters& counters() {
  static Counters c;
  return c;
}

// Awaits a callback-style operation whose `done` may run on any thread; the
// coroutine resumes on its own executor.
template <class T, class Start>
asio::awaitable<T> await_callback(Start start) {
  auto ex = co_await asio::this_coro::executor;
  std::optional<T> out;
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
      [&](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        start([h, ex, &out](T v) {
          out.emplace(std::move(v));
          asio::post(ex, std::move(*h));
        });
      },
      asio::use_awaitable);
  co_return std::move(*out);
}

}  // namespace

// One fsync of incoming/ covers every rename done before it started. The
// folder stays open (one open and close fewer per commit).
struct Spool::DirSync {
  std::filesystem::path dir;
  int fd = -1;
  std::mutex mu;
  std::vector<std::function<void(Status)>> waiting;
  bool running = false;

  ~DirSync() {
    if (fd >= 0) ::close(fd);
  }

  Status sync() {
    if (fd < 0) fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return file_error("open " + dir.string(), errno);
    if (::fsync(fd) != 0) return file_error("fsync " + dir.string(), errno);
    return {};
  }

  void join(std::function<void(Status)> done) {
    std::unique_lock lk(mu);
    waiting.push_back(std::move(done));
    if (running) return;  // the running leader will pick it up in its next round
    running = true;
    while (!waiting.empty()) {
      auto batch = std::move(waiting);
      waiting.clear();
      lk.unlock();
      Status st = sync();  // only the leader touches fd
      counters().dir_syncs.inc();
      if (st && failpoint::hit("spool.dir_fsync")) st = Error{Errc::IoError, "fsync incoming: injected failure"};
      for (auto& d : batch) d(st);
      lk.lock();
    }
    running = false;
  }
};

// ---------------------------------------------------------------- writer

SpoolWriter::SpoolWriter(Spool& spool, std::string id, std::string head)
    : spool_(spool), id_(std::move(id)), buf_(std::move(head)) {
  crc_ = qf::crc32c(0, buf_);
  total_ = buf_.size();
}

SpoolWriter::~SpoolWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && (fd_ >= 0 || written_ > 0)) ::unlink(spool_.path(Spool::kTmp, id_).c_str());
}

Status SpoolWriter::open_file() {
  if (fd_ >= 0) return {};
  auto p = spool_.path(Spool::kTmp, id_);
  fd_ = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd_ < 0) return file_error("create " + p.string(), errno);
  return {};
}

Status SpoolWriter::write_pending(bool keep) {
  if (!failed_) return failed_;
  if (buf_.empty()) return {};
  if (auto st = open_file(); !st) return failed_ = st;
  if (failpoint::hit("spool.write")) return failed_ = Error{Errc::IoError, "write: injected failure"};
  if (auto st = write_all(fd_, buf_); !st) return failed_ = st;
  written_ += buf_.size();
  if (!keep) buf_.clear();
  return {};
}

Status SpoolWriter::append(std::string_view content) {
  if (!failed_) return failed_;
  while (!content.empty()) {
    auto piece = content.substr(0, kContentRecord);
    std::size_t before = buf_.size();
    qf::put_record(buf_, qf::Rec::Content, piece);
    crc_ = qf::crc32c(crc_, std::string_view(buf_).substr(before));
    total_ += buf_.size() - before;
    content.remove_prefix(piece.size());
    // Large messages: write in big chunks so memory stays bounded; a 4 MiB
    // write to the page cache is short enough for an I/O thread.
    if (buf_.size() >= kWriteThreshold)
      if (auto st = write_pending(); !st) return st;
  }
  return {};
}

void SpoolWriter::add_header(std::string line_crlf) { prepend_.push_back(std::move(line_crlf)); }

// ---------------------------------------------------------------- spool

Spool::Spool(std::filesystem::path dir, asio::thread_pool& blocking, unsigned sync_threads)
    : dir_(std::move(dir)), blocking_(blocking), sync_pool_(sync_threads ? sync_threads : 1),
      dirsync_(std::make_unique<DirSync>()) {
  dirsync_->dir = dir_ / kIncoming;
  seq_ = std::uint32_t(std::random_device{}());
}

Spool::~Spool() { sync_pool_.join(); }

std::string Spool::new_id() {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                std::chrono::system_clock::now().time_since_epoch()).count();
  constexpr std::uint64_t kSeqSpace = 62ull * 62 * 62 * 62;
  return base62(std::uint64_t(us), 10) + base62(seq_.fetch_add(1) % kSeqSpace, 4);
}

void Spool::on_committed(CommitHook hook) { hook_ = std::move(hook); }

Status Spool::move(std::string_view id, std::string_view from, std::string_view to, bool sync) {
  if (!qf::valid_queue_id(id)) return Error{Errc::Invalid, "bad queue id"};
  if (::rename(path(from, id).c_str(), path(to, id).c_str()) != 0) {
    if (errno == ENOENT) return Error{Errc::NotFound, std::string(id) + " not in " + std::string(from)};
    return file_error("rename " + std::string(id), errno);
  }
  if (sync) return fsync_dir(dir_ / to);
  return {};
}

Result<std::unique_ptr<SpoolWriter>> Spool::begin(const Envelope& env) {
  // The file is created lazily (first large write or commit): a message the
  // filters reject never touches the disk.
  return std::unique_ptr<SpoolWriter>(new SpoolWriter(*this, new_id(), qf::encode_head(env)));
}

void Spool::finish_commit(SpoolWriter& w, std::function<void(Status)> done) {
  // A file written in one piece stays in buf_ for the commit hook.
  const bool keep = w.written_ == 0 && w.buf_.size() <= qf::QueueFile::kKeepBytes;
  if (auto st = w.write_pending(keep); !st) return done(st);
  // Renamed before the syncs, not after: the file's fdatasync then commits
  // the rename in the same journal transaction, and the folder's fsync after
  // it finds (on ext4) nothing left to commit. Both still finish before 250.
  // Until then a crash can only lose or tear a file the client was never
  // acknowledged for (recovery moves a torn one to corrupt/), and scans of
  // incoming/ leave it alone (committing()).
  const auto tmp = path(kTmp, w.id_), incoming = path(kIncoming, w.id_);
  if (::rename(tmp.c_str(), incoming.c_str()) != 0) return done(w.failed_ = file_error("rename into incoming", errno));
  failpoint::hit("spool.before_fsync");
  // On failure the file goes back to tmp/ (the writer's destructor removes
  // it there), so the queue manager does not deliver a message the client
  // will send again.
  auto fail = [&w, tmp, incoming](Status st) {
    ::rename(incoming.c_str(), tmp.c_str());
    w.written_ = std::max<std::uint64_t>(w.written_, 1);
    return st;
  };
  if (::fdatasync(w.fd_) != 0) return done(w.failed_ = fail(file_error("fdatasync", errno)));
  int rc = ::close(w.fd_);
  w.fd_ = -1;
  if (rc != 0) return done(w.failed_ = fail(file_error("close", errno)));
  dirsync_->join([fail, done = std::move(done)](Status st) {
    done(st ? st : fail(st));
  });
}

asio::awaitable<Result<std::string>> Spool::commit(std::unique_ptr<SpoolWriter> writer) {
  auto t0 = std::chrono::steady_clock::now();
  SpoolWriter& w = *writer;
  if (!w.failed_) {
    counters().failures.inc();
    co_return w.failed_.error();
  }
  for (const auto& line : w.prepend_) {
    std::size_t before = w.buf_.size();
    qf::put_record(w.buf_, qf::Rec::Prepend, line);
    w.crc_ = qf::crc32c(w.crc_, std::string_view(w.buf_).substr(before));
    w.total_ += w.buf_.size() - before;
  }
  w.buf_ += qf::encode_end(w.total_, w.crc_);
  set_committing(w.id_, true);
  Status st = co_await await_callback<Status>([this, &w](std::function<void(Status)> done) {
    asio::post(sync_pool_, [this, &w, done = std::move(done)]() mutable { finish_commit(w, std::move(done)); });
  });
  if (!st) {
    set_committing(w.id_, false);
    counters().failures.inc();
    log::warning(w.id_ + ": spool commit failed: " + st.error().detail);
    co_return st.error();
  }
  w.committed_ = true;
  counters().commits.inc();
  counters().latency.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  failpoint::hit("spool.after_fsync");
  // Posted, not called: the caller finishes its synchronous work (e.g. a
  // quarantine hold) before the queue manager can pick the message up. The
  // id counts as committing until the hook has run.
  auto ex = co_await asio::this_coro::executor;
  asio::post(ex, [this, hook = hook_, id = w.id_, file = std::move(w.buf_)]() mutable {
    if (hook) hook(id, std::move(file));
    set_committing(id, false);
  });
  co_return w.id_;
}

void Spool::set_committing(const std::string& id, bool on) {
  std::lock_guard lk(committing_mu_);
  if (on) committing_.insert(id);
  else committing_.erase(id);
}

bool Spool::committing(const std::string& id) const {
  std::lock_guard lk(committing_mu_);
  return committing_.count(id) != 0;
}

Status Spool::recover_folder(std::string_view queue) {
  std::error_code ec;
  bool changed = false;
  for (const auto& e : std::filesystem::directory_iterator(dir_ / queue, ec)) {
    std::string id = e.path().filename().string();
    auto qf = qf::read_queue_file(e.path());
    if (!qf || !qf::valid_queue_id(id)) {
      std::string why = qf ? "bad queue id" : qf.error().detail;
      log::warning(id + ": queue file in " + std::string(queue) + "/ is damaged, moved to corrupt/: " + why);
      std::filesystem::rename(e.path(), dir_ / kCorrupt / id, ec);
      if (ec) return Error{Errc::IoError, "move to corrupt/: " + ec.message()};
      changed = true;
    } else if (queue == kActive) {
      std::filesystem::rename(e.path(), dir_ / kIncoming / id, ec);
      if (ec) return Error{Errc::IoError, "active → incoming: " + ec.message()};
      changed = true;
    }
  }
  if (ec) return Error{Errc::IoError, (dir_ / queue).string() + ": " + ec.message()};
  if (changed) {
    for (auto q : {kIncoming, kCorrupt})
      if (auto st = fsync_dir(dir_ / q); !st) return st;
  }
  return {};
}

Status Spool::init() {
  std::error_code ec;
  for (auto q : {kTmp, kIncoming, kActive, kDeferred, kHold, kCorrupt}) {
    std::filesystem::create_directories(dir_ / q, ec);
    if (ec) return Error{Errc::IoError, (dir_ / q).string() + ": " + ec.message()};
    std::filesystem::permissions(dir_ / q, std::filesystem::perms::owner_all, ec);
  }
  // tmp/ holds only messages that were never answered 250.
  for (const auto& e : std::filesystem::directory_iterator(dir_ / kTmp, ec)) std::filesystem::remove(e.path(), ec);
  for (auto q : {kActive, kIncoming, kDeferred, kHold})
    if (auto st = recover_folder(q); !st) return st;
  return {};
}

}  // namespace moat::gateway

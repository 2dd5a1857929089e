// The queue manager (Postfix qmgr): picks committed messages up at once,
// groups their pending recipients by destination, delivers under per-
// destination and total concurrency limits, retries with doubling backoff,
// bounces (RFC 3464) at permanent failure or the end of the queue lifetime,
// and offers the admin operations behind `moatctl queue`.
//
//   incoming/ ──pickup──▶ active/ ──all final──▶ (unlinked)
//      ▲                     │ some deferred
//      │ release             ▼
//    hold/ ◀──hold──── deferred/  (mtime = next attempt, rescanned)
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/frame_count.hpp"
#include "gateway/queue/admin.hpp"
#include "gateway/queue/transport.hpp"
#include "gateway/spool.hpp"

namespace moat::gateway {

class QueueManager {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  QueueManager(asio::io_context& io, Spool& spool, std::function<config::Snapshot()> config,
               asio::thread_pool& blocking);
  ~QueueManager();

  void add_transport(std::string name, Transport& transport);
  void start();                            // scans incoming/ and deferred/, starts the rescan timer
  // A message was committed: deliver now (thread-safe). `file`: its queue
  // file as written, when the spool kept it (Spool::CommitHook).
  void notify(const std::string& id, std::string file = {});
  void stop();                             // no new work; in-flight deliveries finish
  // Coroutines of this manager still alive; see common/frame_count.hpp.
  std::size_t frames() const { return frames_.live(); }

  // --- admin (thread-safe) ---
  asio::awaitable<Result<std::vector<admin::QueueEntry>>> list();
  asio::awaitable<Result<admin::MessageDetails>> show(std::string id);
  Status flush();                          // every deferred message now
  Status remove(const std::string& id);
  Status hold(const std::string& id);      // to hold/: not delivered until released
  Status release(const std::string& id);   // hold/ → incoming/, scheduled now

  // --- tests ---
  void set_clock(Clock clock) { clock_ = std::move(clock); }
  void rescan();                           // deferred scan now, by the injected clock
  std::size_t in_flight() const;           // messages being processed

 private:
  struct Group;
  class Limiter;
  asio::awaitable<void> process(std::string id, std::string from, std::string bytes, FrameCount::Token);
  asio::awaitable<void> deliver_group(const std::string& id, const std::filesystem::path& path,
                                      const qf::QueueFile& file, Group& group, std::vector<RcptResult>& out);
  asio::awaitable<bool> send_bounces(const std::string& id, const std::filesystem::path& path, qf::QueueFile& file,
                                     std::string& records);
  asio::awaitable<void> scan(bool force, FrameCount::Token);
  asio::awaitable<void> scan_loop(FrameCount::Token);
  void spawn_scan(bool force);
  void spawn(std::string id, std::string from, std::string file = {});
  void retire(std::filesystem::path path, std::string id, std::string records);
  bool claim(const std::string& id);
  void unclaim(const std::string& id);
  bool is_held(const std::string& id);
  void log_result(const std::string& id, const Envelope& env, const RcptResult& r, std::string_view status);

  asio::io_context& io_;
  Spool& spool_;
  std::function<config::Snapshot()> config_;
  asio::thread_pool& blocking_;
  asio::steady_timer timer_;               // rescan interval; used by scan_loop on the io executor
  std::unique_ptr<Limiter> limiter_;
  std::map<std::string, Transport*> transports_;
  Clock clock_;
  mutable std::mutex mu_;
  std::set<std::string> claimed_;          // ids being processed
  std::set<std::string> held_;             // hold requested (covers in-flight messages)
  struct Retired {
    std::filesystem::path path;
    std::string id, records;
  };
  std::vector<Retired> retiring_;          // delivered, waiting for retire()'s unlink
  std::atomic<bool> stopping_{false};
  FrameCount frames_{"queue manager"};
};

}  // namespace moat::gateway

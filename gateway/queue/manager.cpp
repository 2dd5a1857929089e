// See manager.hpp. Each message is one coroutine on the io executor (no
// strands: co_spawn onto a strand over-released the strand under g++ 12 /
// Boost 1.81, found with ASan); shared state is behind mutexes and file work
// runs on the blocking pool. Progress is appended after every
// attempt (no fsync: a lost record means a duplicate, never a loss).
#include "gateway/queue/manager.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>

#include "common/blocking.hpp"
#include "common/failpoint.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "gateway/queue/dsn.hpp"
#include "gateway/queue/retry.hpp"
#include "gateway/routing.hpp"

namespace moat::gateway {
namespace {

using SysClock = std::chrono::system_clock;

struct Metrics {
  metrics::Counter& sent = metrics::counter("moat_delivery_total", "status=\"sent\"", "Recipient deliveries by outcome");
  metrics::Counter& deferred = metrics::counter("moat_delivery_total", "status=\"deferred\"");
  metrics::Counter& bounced = metrics::counter("moat_delivery_total", "status=\"bounced\"");
  metrics::Histogram& latency =
      metrics::histogram("moat_delivery_seconds", {}, "Time from arrival to successful delivery per recipient");
  metrics::Gauge& q_incoming = metrics::gauge("moat_queue_messages", "queue=\"incoming\"", "Messages per queue");
  metrics::Gauge& q_active = metrics::gauge("moat_queue_messages", "queue=\"active\"");
  metrics::Gauge& q_deferred = metrics::gauge("moat_queue_messages", "queue=\"deferred\"");
  metrics::Gauge& q_hold = metrics::gauge("moat_queue_messages", "queue=\"hold\"");
};
Metrics& m() {
  static Metrics x;
  return x;
}

std::string delay_str(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 1 ? "%.2f" : s < 100 ? "%.1f" : "%.0f", s);
  return buf;
}

qf::RcptState to_state(RcptStatus s) {
  switch (s) {
    case RcptStatus::Sent: return qf::RcptState::Sent;
    case RcptStatus::Bounced: return qf::RcptState::Bounced;
    default: return qf::RcptState::Deferred;
  }
}

MessageSource source_of(const std::filesystem::path& path, const qf::QueueFile& f) {
  MessageSource s;
  s.file = path;
  s.chunks = f.content;
  if (f.content.size() == 1) {
    s.offset = f.content[0].first;
    s.length = f.content[0].second;
  } else {
    s.length = f.content_size;
  }
  for (const auto& p : f.prepend) s.prepend += p;
  if (!f.bytes.empty())
    for (const auto& [off, len] : f.content) s.memory.push_back(std::string_view(f.bytes).substr(off, len));
  return s;
}

Status set_mtime(const std::filesystem::path& p, SysClock::time_point t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  struct timespec ts[2];
  ts[0].tv_sec = ts[1].tv_sec = time_t(us / 1000000);
  ts[0].tv_nsec = ts[1].tv_nsec = long(us % 1000000) * 1000;
  if (::utimensat(AT_FDCWD, p.c_str(), ts, 0) != 0) return Error{Errc::IoError, "utimensat " + p.string()};
  return {};
}

SysClock::time_point mtime_of(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return SysClock::time_point::max();
  return SysClock::time_point(std::chrono::duration_cast<SysClock::duration>(
      std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
}

}  // namespace

struct QueueManager::Group {
  std::string transport;
  Destination dest;
  std::vector<std::size_t> rcpts;
};

// Per-destination and total concurrency. Waiters poll every few
// milliseconds instead of being woken: processing runs on the multi-threaded
// io executor, and a timer must not be cancelled from another thread.
class QueueManager::Limiter {
 public:
  asio::awaitable<bool> acquire(const std::string& key, unsigned per, unsigned total) {
    per = std::max(per, 1u);
    total = std::max(total, 1u);
    for (;;) {
      {
        std::lock_guard lk(mu_);
        if (stopped_) co_return false;
        auto& n = counts_[key];
        if (n < per && total_ < total) {
          ++n;
          ++total_;
          co_return true;
        }
      }
      asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(10));
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }
  void release(const std::string& key) {
    std::lock_guard lk(mu_);
    if (--counts_[key] == 0) counts_.erase(key);
    --total_;
  }
  void stop() {
    std::lock_guard lk(mu_);
    stopped_ = true;
  }

 private:
  std::mutex mu_;
  std::map<std::string, unsigned> counts_;
  unsigned total_ = 0;
  bool stopped_ = false;
};

QueueManager::QueueManager(asio::io_context& io, Spool& spool, std::function<config::Snapshot()> config,
                           asio::thread_pool& blocking)
    : io_(io), spool_(spool), config_(std::move(config)), blocking_(blocking), timer_(io),
      limiter_(std::make_unique<Limiter>()), clock_([] { return SysClock::now(); }) {}

QueueManager::~QueueManager() = default;

void QueueManager::add_transport(std::string name, Transport& transport) { transports_[std::move(name)] = &transport; }

void QueueManager::start() {
  spawn_scan(false);
  asio::co_spawn(io_, scan_loop(frames_.token()), asio::detached);
}

void QueueManager::spawn_scan(bool force) { asio::co_spawn(io_, scan(force, frames_.token()), asio::detached); }

void QueueManager::stop() {
  stopping_ = true;
  asio::post(io_, [this, alive = frames_.token()] { timer_.cancel(); });  // timer_ belongs to the io threads
  limiter_->stop();
}

void QueueManager::notify(const std::string& id, std::string file) {
  if (qf::valid_queue_id(id)) spawn(id, std::string(Spool::kIncoming), std::move(file));
}

void QueueManager::spawn(std::string id, std::string from, std::string file) {
  asio::co_spawn(io_, process(std::move(id), std::move(from), std::move(file), frames_.token()), asio::detached);
}

// Delivered files are unlinked on the blocking pool, as many per trip as have
// gathered, without the message's coroutine waiting: under load one trip
// serves many messages. The id stays claimed until its file is gone, so a
// rescan cannot deliver it again. The last records are written only if the
// file cannot be removed.
void QueueManager::retire(std::filesystem::path path, std::string id, std::string records) {
  bool first;
  {
    std::lock_guard lk(mu_);
    first = retiring_.empty();
    retiring_.push_back({std::move(path), std::move(id), std::move(records)});
  }
  if (!first) return;
  asio::post(blocking_, [this, alive = frames_.token()] {
    std::vector<Retired> batch;
    {
      std::lock_guard lk(mu_);
      batch.swap(retiring_);
    }
    for (const auto& r : batch)
      if (::unlink(r.path.c_str()) != 0 && !r.records.empty()) (void)qf::append_progress(r.path, r.records);
    std::lock_guard lk(mu_);
    for (const auto& r : batch) claimed_.erase(r.id);
  });
}

bool QueueManager::claim(const std::string& id) {
  std::lock_guard lk(mu_);
  return claimed_.insert(id).second;
}

void QueueManager::unclaim(const std::string& id) {
  std::lock_guard lk(mu_);
  claimed_.erase(id);
}

bool QueueManager::is_held(const std::string& id) {
  std::lock_guard lk(mu_);
  return held_.count(id) != 0;
}

std::size_t QueueManager::in_flight() const {
  std::lock_guard lk(mu_);
  return claimed_.size();
}

void QueueManager::rescan() { spawn_scan(false); }

void QueueManager::log_result(const std::string& id, const Envelope& env, const RcptResult& r,
                              std::string_view status) {
  double delay = std::chrono::duration<double>(clock_() - env.arrival).count();
  log::info(id + ": to=<" + env.recipients[r.index].address + ">, relay=" + (r.relay.empty() ? "none" : r.relay) +
            ", delay=" + delay_str(std::max(delay, 0.0)) + ", dsn=" + r.dsn + ", status=" + std::string(status) +
            " (" + r.diagnostic + ")");
}

// ------------------------------------------------------------ one message

asio::awaitable<void> QueueManager::process(std::string id, std::string from, std::string bytes,
                                            FrameCount::Token) {
  if (stopping_ || !claim(id)) co_return;
  struct Unclaim {
    QueueManager* q;
    std::string id;
    bool armed = true;
    ~Unclaim() {
      if (armed) q->unclaim(id);
    }
  } guard{this, id};
  try {
    // A message fresh from the spool comes with the bytes just written: it
    // is delivered from incoming/ where it lies, with no rename and no read
    // (incoming/ and active/ are recovered alike after a crash). Anything
    // else is activated and read in one trip to the pool: each trip costs
    // two thread switches.
    std::string_view folder = Spool::kActive;
    Result<qf::QueueFile> file{Errc::NotFound};
    if (!bytes.empty() && from == Spool::kIncoming) {
      folder = Spool::kIncoming;
      // A scan that ran after the commit but before this claim may have
      // delivered it already: then the file is gone or in another folder.
      // We hold the claim, so a file still there is ours. (One stat of a
      // file just created: answered from the dentry cache.)
      struct stat st {};
      if (::stat(spool_.path(folder, id).c_str(), &st) != 0) co_return;
      file = qf::parse_queue_file(bytes, {.verify_checksum = false});  // our own bytes, CRC just computed
      if (file) file->bytes = std::move(bytes);
    } else {
      // Found by a scan while its commit is still running: the commit's
      // notify delivers it (or the session holds it, or the commit fails).
      if (spool_.committing(id)) co_return;
      const auto active = spool_.path(Spool::kActive, id);
      struct Activated {
        Status moved;
        Result<qf::QueueFile> file{Errc::NotFound};
      };
      auto act = co_await run_blocking(blocking_, [&] {
        Activated a;
        a.moved = spool_.move(id, from, Spool::kActive);
        if (a.moved) a.file = qf::read_queue_file(active);
        return a;
      });
      if (!act.moved) {
        if (act.moved.error().code != Errc::NotFound) log::warning(id + ": cannot activate: " + act.moved.error().detail);
        co_return;  // held, removed or picked up meanwhile
      }
      file = std::move(act.file);
    }
    const auto path = spool_.path(folder, id);
    if (!file) {
      log::warning(id + ": " + file.error().detail + (file.error().code == Errc::Corrupt ? ", moved to corrupt/" : ""));
      auto to = file.error().code == Errc::Corrupt ? Spool::kCorrupt : Spool::kIncoming;
      if (to != folder) (void)co_await run_blocking(blocking_, [&] { return spool_.move(id, folder, to); });
      co_return;
    }
    if (is_held(id)) {
      (void)co_await run_blocking(blocking_, [&] { return spool_.move(id, folder, Spool::kHold, true); });
      co_return;
    }
    auto& f = *file;
    auto& env = f.envelope;
    const auto cfg = config_();
    log::info(id + ": from=<" + env.sender + ">, size=" + std::to_string(f.content_size) +
              ", nrcpt=" + std::to_string(env.recipients.size()) + " (queue active)");

    // Pending recipients by (transport, next hop).
    std::map<std::string, Group> groups;
    for (std::size_t i = 0; i < env.recipients.size(); ++i) {
      if (f.progress[i].final()) continue;
      auto dest = destination_for(*cfg, env.recipients[i].address);
      auto transport = transport_for(*cfg, env.recipients[i].address);
      auto& g = groups[transport + " " + dest.key()];
      g.transport = transport;
      g.dest = std::move(dest);
      g.rcpts.push_back(i);
    }
    // Destinations one after the other: a message rarely has many, and
    // messages themselves are processed concurrently. (Spawning a nested
    // coroutine per group needs a join primitive we do not have yet.)
    std::vector<RcptResult> results;
    for (auto& [key, g] : groups) co_await deliver_group(id, path, f, g, results);

    // Record what happened; recipients the transport did not answer for stay pending.
    std::string records;
    const auto now = clock_();
    for (const auto& r : results) {
      if (r.index >= f.progress.size() || f.progress[r.index].final()) continue;
      qf::RcptProgress p{to_state(r.status), r.dsn, r.relay, r.diagnostic, f.progress[r.index].notified};
      static constexpr std::string_view kNames[] = {"pending", "sent", "bounced", "deferred"};
      log_result(id, env, r, kNames[std::size_t(p.state)]);
      if (p.state == qf::RcptState::Sent) {
        m().sent.inc();
        m().latency.observe(std::chrono::duration<double>(now - env.arrival).count());
      } else {
        (p.state == qf::RcptState::Bounced ? m().bounced : m().deferred).inc();
      }
      records += qf::encode_rcpt_final(r.index, p);
      f.progress[r.index] = std::move(p);
    }
    if (retry::expired(cfg->queue, env, now)) {
      for (std::size_t i = 0; i < f.progress.size(); ++i) {
        auto& p = f.progress[i];
        if (p.final()) continue;
        p.state = qf::RcptState::Bounced;
        if (p.dsn.empty() || p.dsn[0] != '4') p.dsn = "4.4.7";
        if (p.diagnostic.empty()) p.diagnostic = "message expired in the queue";
        RcptResult r{i, RcptStatus::Bounced, p.dsn, p.relay, p.diagnostic};
        log_result(id, env, r, "expired, returned to sender");
        m().bounced.inc();
        records += qf::encode_rcpt_final(i, p);
      }
    }
    const bool all_final = std::all_of(f.progress.begin(), f.progress.end(), [](const auto& p) { return p.final(); });
    const bool to_report = std::any_of(f.progress.begin(), f.progress.end(), [](const auto& p) {
      return p.state == qf::RcptState::Bounced && !p.notified;
    });
    bool bounces_done = true;
    if (to_report) {
      // The results go to disk before the bounce is made, so a crash while
      // bouncing does not deliver again.
      if (!records.empty()) (void)co_await run_blocking(blocking_, [&] { return qf::append_progress(path, records); });
      records.clear();
      bounces_done = co_await send_bounces(id, path, f, records);
    }
    if (all_final && bounces_done) {
      log::info(id + ": removed");
      guard.armed = false;  // retire() releases the id once the file is gone
      retire(path, id, std::move(records));
      co_return;
    }
    // Not done: schedule the next attempt.
    f.attempts += 1;
    auto next = now + retry::backoff(cfg->queue, f.attempts);
    records += qf::encode_attempt(f.attempts, next);
    bool held = is_held(id);
    auto to = held ? Spool::kHold : Spool::kDeferred;
    auto st = co_await run_blocking(blocking_, [&]() -> Status {
      if (auto a = qf::append_progress(path, records); !a) return a;
      if (auto mv = spool_.move(id, folder, to, held); !mv) return mv;
      return set_mtime(spool_.path(to, id), next);
    });
    if (!st && st.error().code != Errc::NotFound) log::warning(id + ": cannot defer: " + st.error().detail);
  } catch (const std::exception& e) {
    log::error(id + ": queue manager: " + e.what());
  }
}

asio::awaitable<void> QueueManager::deliver_group(const std::string& id, const std::filesystem::path& path,
                                                  const qf::QueueFile& file, Group& group, std::vector<RcptResult>& out) {
  auto defer_all = [&](std::string dsn, std::string why) {
    for (auto i : group.rcpts) out.push_back(RcptResult{i, RcptStatus::Deferred, dsn, "none", why});
  };
  const auto cfg = config_();
  const std::string key = group.dest.key();
  if (bool acquired = co_await limiter_->acquire(key, cfg->queue.destination_concurrency, cfg->queue.total_concurrency); !acquired) {
    defer_all("4.3.2", "mail system is shutting down");
    co_return;
  }
  auto it = transports_.find(group.transport);
  if (failpoint::hit("queue.during_delivery")) {
    defer_all("4.3.0", "delivery failed: injected failure");
  } else if (it == transports_.end()) {
    defer_all("4.3.5", "mail transport " + group.transport + " unavailable");
  } else {
    DeliveryRequest req;
    req.queue_id = id;
    req.envelope = &file.envelope;
    req.recipients = group.rcpts;
    req.source = source_of(path, file);
    req.destination = group.dest;
    try {
      auto res = co_await it->second->deliver(req);
      std::set<std::size_t> mine(group.rcpts.begin(), group.rcpts.end()), seen;
      for (auto& r : res)
        if (mine.count(r.index) && seen.insert(r.index).second) out.push_back(std::move(r));
      for (auto i : group.rcpts)
        if (!seen.count(i)) out.push_back(RcptResult{i, RcptStatus::Deferred, "4.3.0", "none", "no result from transport"});
    } catch (const std::exception& e) {
      defer_all("4.3.0", std::string("transport failure: ") + e.what());
    }
  }
  limiter_->release(key);
}

// One bounce for every recipient that failed since the last report.
asio::awaitable<bool> QueueManager::send_bounces(const std::string& id, const std::filesystem::path& path,
                                                 qf::QueueFile& f, std::string& records) {
  const auto& env = f.envelope;
  std::vector<std::size_t> todo;
  for (std::size_t i = 0; i < f.progress.size(); ++i)
    if (f.progress[i].state == qf::RcptState::Bounced && !f.progress[i].notified) todo.push_back(i);
  if (todo.empty()) co_return true;
  dsn::Report rep;
  for (auto i : todo)
    if (dsn::wants_failure_report(env, env.recipients[i]))
      rep.failed.push_back({&env.recipients[i], f.progress[i].dsn, f.progress[i].relay, f.progress[i].diagnostic});
  if (rep.failed.empty()) {
    log::info(id + (env.sender.empty() ? ": sender is <>, no bounce sent" : ": bounce not requested (NOTIFY)"));
  } else {
    const auto cfg = config_();
    auto content = co_await run_blocking(blocking_, [&] {
      return qf::read_content(path, f, dsn::kReturnSizeLimit + 256 * 1024);
    });
    if (!content) {
      log::warning(id + ": cannot read message for bounce: " + content.error().detail);
      co_return false;
    }
    std::string original;
    for (const auto& p : f.prepend) original += p;
    original += *content;
    rep.reporting_mta = cfg->server.hostname;
    rep.queue_id = id;
    rep.original = &env;
    rep.headers_only = dsn::return_headers_only(env, f.content_size);
    rep.original_message = std::move(original);
    rep.now = clock_();
    auto w = spool_.begin(dsn::envelope(env, rep.now));
    if (!w) co_return false;
    rep.bounce_id = (*w)->id();
    // No co_await inside ?: — g++ 12 destroys the temporaries twice there.
    Status st = (*w)->append(dsn::build(rep));
    std::string bounce_id;
    if (st) {
      auto committed = co_await spool_.commit(std::move(*w));
      if (committed) bounce_id = *committed;
      else st = committed.error();
    }
    if (!st) {
      log::warning(id + ": cannot queue bounce: " + st.error().detail);
      co_return false;
    }
    log::info(id + ": sender non-delivery notification: " + bounce_id);
  }
  for (auto i : todo) {
    f.progress[i].notified = true;
    records += qf::encode_notified(i);
  }
  co_return true;
}

// ------------------------------------------------------------ scanning

asio::awaitable<void> QueueManager::scan(bool force, FrameCount::Token) {
  if (stopping_) co_return;
  struct Found {
    std::vector<std::string> incoming, due;
    std::int64_t counts[4] = {0, 0, 0, 0};
  };
  const auto now = clock_();
  auto found = co_await run_blocking(blocking_, [&] {
    Found out;
    const std::string_view queues[] = {Spool::kIncoming, Spool::kActive, Spool::kDeferred, Spool::kHold};
    for (int q = 0; q < 4; ++q) {
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(spool_.dir() / queues[q], ec)) {
        std::string id = e.path().filename().string();
        if (!qf::valid_queue_id(id)) continue;
        ++out.counts[q];
        if (q == 0) out.incoming.push_back(id);
        if (q == 2 && (force || mtime_of(e.path()) <= now)) out.due.push_back(id);
      }
    }
    return out;
  });
  m().q_incoming.set(found.counts[0]);
  m().q_active.set(found.counts[1]);
  m().q_deferred.set(found.counts[2]);
  m().q_hold.set(found.counts[3]);
  for (auto& id : found.incoming) spawn(std::move(id), std::string(Spool::kIncoming));
  for (auto& id : found.due) spawn(std::move(id), std::string(Spool::kDeferred));
}

asio::awaitable<void> QueueManager::scan_loop(FrameCount::Token) {
  while (!stopping_) {
    auto interval = std::max<std::int64_t>(config_()->queue.scan_interval.count(), 1);
    timer_.expires_after(std::chrono::seconds(interval));
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (stopping_) co_return;
    spawn_scan(false);
  }
}

// ------------------------------------------------------------ admin

asio::awaitable<Result<std::vector<admin::QueueEntry>>> QueueManager::list() {
  auto entries = co_await run_blocking(blocking_, [this] { return admin::scan_spool(spool_.dir()); });
  if (entries) {
    // A fresh message is delivered from incoming/ where it lies (process()):
    // what the admin wants to know is that it is being delivered.
    std::lock_guard lk(mu_);
    for (auto& e : *entries)
      if (e.queue == Spool::kIncoming && claimed_.count(e.id)) e.queue = Spool::kActive;
  }
  co_return entries;
}

asio::awaitable<Result<admin::MessageDetails>> QueueManager::show(std::string id) {
  co_return co_await run_blocking(blocking_, [this, &id] { return admin::load_message(spool_.dir(), id); });
}

Status QueueManager::flush() {
  spawn_scan(true);
  return {};
}

Status QueueManager::remove(const std::string& id) {
  if (!qf::valid_queue_id(id)) return Error{Errc::Invalid, "invalid queue id"};
  bool found = false;
  for (auto q : {Spool::kIncoming, Spool::kDeferred, Spool::kHold, Spool::kActive})
    if (::unlink(spool_.path(q, id).c_str()) == 0) found = true;
  {
    std::lock_guard lk(mu_);
    held_.erase(id);
  }
  if (!found) return Error{Errc::NotFound, id + ": no such message in the queue"};
  log::info(id + ": removed (by admin)");
  return {};
}

Status QueueManager::hold(const std::string& id) {
  if (!qf::valid_queue_id(id)) return Error{Errc::Invalid, "invalid queue id"};
  {
    std::lock_guard lk(mu_);
    held_.insert(id);
  }
  // fsync of hold/: a held (e.g. quarantined) message must not come back
  // into incoming/ after a crash and be delivered.
  for (auto q : {Spool::kIncoming, Spool::kDeferred}) {
    auto st = spool_.move(id, q, Spool::kHold, true);
    if (st) {
      log::info(id + ": hold: moved to hold/");
      return {};
    }
    if (st.error().code != Errc::NotFound) return st;
  }
  std::error_code ec;
  if (std::filesystem::exists(spool_.path(Spool::kHold, id), ec)) return {};
  {
    std::lock_guard lk(mu_);
    if (claimed_.count(id)) return {};  // being delivered: held after this attempt
    held_.erase(id);
  }
  return Error{Errc::NotFound, id + ": no such message in the queue"};
}

Status QueueManager::release(const std::string& id) {
  if (!qf::valid_queue_id(id)) return Error{Errc::Invalid, "invalid queue id"};
  {
    std::lock_guard lk(mu_);
    held_.erase(id);
  }
  auto st = spool_.move(id, Spool::kHold, Spool::kIncoming, true);
  if (!st) {
    if (st.error().code == Errc::NotFound) return Error{Errc::NotFound, id + ": not in the hold queue"};
    return st;
  }
  log::info(id + ": released from hold");
  notify(id);
  return {};
}

}  // namespace moat::gateway

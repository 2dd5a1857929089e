// See local.hpp. All directory and store work of one delivery happens in one
// trip to the blocking pool; the store fsyncs before it returns, so "sent"
// is recorded only for mail that is on disk (SECURITY.md promise 1).
#include "gateway/queue/local.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <map>

#include "common/blocking.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/text.hpp"
#include "directory/directory.hpp"
#include "gateway/routing.hpp"
#include "store/mailbox_store.hpp"

namespace moat::gateway {
namespace {

struct Counters {
  metrics::Counter& stored = metrics::counter("moat_local_deliveries_total", "result=\"stored\"",
                                              "Local deliveries per user by result");
  metrics::Counter& junk = metrics::counter("moat_local_deliveries_total", "result=\"junk\"");
  metrics::Counter& over_quota = metrics::counter("moat_local_deliveries_total", "result=\"over_quota\"");
  metrics::Counter& failed = metrics::counter("moat_local_deliveries_total", "result=\"failed\"");
};
Counters& counters() {
  static Counters c;
  return c;
}

Result<std::string> read_message(const MessageSource& src) {
  std::string out = src.prepend;
  if (!src.memory.empty()) {
    for (auto part : src.memory) out += part;
    return out;
  }
  int fd = ::open(src.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{Errc::IoError, "open " + src.file.string() + ": " + std::strerror(errno)};
  auto chunks = src.chunks;
  if (chunks.empty()) chunks.emplace_back(src.offset, src.length);
  for (const auto& [off, len] : chunks) {
    std::size_t base = out.size();
    out.resize(base + len);
    std::uint64_t done = 0;
    while (done < len) {
      ssize_t n = ::pread(fd, out.data() + base + done, len - done, off_t(off + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        return Error{Errc::IoError, "read " + src.file.string() + ": short read"};
      }
      done += std::uint64_t(n);
    }
  }
  ::close(fd);
  return out;
}

// X-Spam-Flag: YES in the header section (moat's policy writes it for Tag).
bool tagged_spam(std::string_view msg) {
  std::size_t pos = 0;
  while (pos < msg.size()) {
    auto eol = msg.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = msg.size();
    auto line = msg.substr(pos, eol - pos);
    if (line.empty()) break;  // end of the header section
    constexpr std::string_view kName = "x-spam-flag:";
    if (line.size() > kName.size() && iequals(line.substr(0, kName.size()), kName)) {
      auto v = line.substr(kName.size());
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      if (v.size() >= 3 && iequals(v.substr(0, 3), "yes")) return true;
    }
    pos = eol + 2;
  }
  return false;
}

std::string junk_mailbox(store::MailboxStore& store, const std::string& user) {
  auto boxes = store.list(user);
  if (boxes)
    for (const auto& b : *boxes)
      if (b.special_use == store::SpecialUse::Junk) return b.name;
  return "Junk";
}

}  // namespace

LocalTransport::LocalTransport(store::MailboxStore& store, directory::Directory& directory,
                               std::function<config::Snapshot()> config, asio::thread_pool& blocking)
    : store_(store), directory_(directory), config_(std::move(config)), blocking_(blocking) {}

LocalTransport::~LocalTransport() = default;

bool LocalTransport::domains_stale() {
  std::lock_guard lk(mu_);
  return std::chrono::steady_clock::now() - domains_read_ >= kDomainTtl;
}

void LocalTransport::refresh_domains_blocking() {
  if (!domains_stale()) return;
  auto d = directory_.domains_blocking();
  if (!d) {
    log::warning("local: cannot read domains: " + d.error().detail);
    return;  // keep the last known set
  }
  std::set<std::string> fresh;
  for (auto& x : *d) fresh.insert(lower(x));
  set_runtime_local_domains(std::vector<std::string>(fresh.begin(), fresh.end()));
  std::lock_guard lk(mu_);
  db_domains_ = std::move(fresh);
  domains_read_ = std::chrono::steady_clock::now();
}

asio::awaitable<bool> LocalTransport::is_local_domain(std::string domain) {
  auto cfg = config_();
  if (cfg->local_domain(domain)) co_return true;
  // Every RCPT to a relay domain asks: the pool trip (two thread switches)
  // is taken only when the cached set of database domains is due a reread.
  if (domains_stale()) co_await run_blocking(blocking_, [this] { refresh_domains_blocking(); });
  std::lock_guard lk(mu_);
  co_return db_domains_.count(lower(domain)) != 0;
}

asio::awaitable<Status> LocalTransport::verify_recipient(std::string address, std::uint64_t size) {
  co_return co_await run_blocking(blocking_, [&]() -> Status {
    auto users = directory_.resolve_blocking(address);
    if (!users) return Error{Errc::DirectoryUnavailable, users.error().detail};
    if (users->empty()) return Error{Errc::UnknownRecipient, ""};
    for (const auto& u : *users) {
      if (u.quota == 0) return {};
      auto used = store_.usage(u.name);
      if (!used) return {};  // not known: the delivery decides
      if (used->bytes + size < u.quota) return {};
    }
    return Error{Errc::MailboxFull, ""};
  });
}

std::vector<RcptResult> LocalTransport::deliver_blocking(const DeliveryRequest& req, const config::Config& cfg) {
  std::vector<RcptResult> out;
  auto fail_all = [&](RcptStatus s, std::string dsn, std::string why) {
    for (auto i : req.recipients) out.push_back({i, s, dsn, "local", why});
    return out;
  };
  auto body = read_message(req.source);
  if (!body) return fail_all(RcptStatus::Deferred, "4.3.0", body.error().detail);
  const std::string message = "Return-Path: <" + req.envelope->sender + ">\r\n" + *body;
  const bool junk = cfg.local.spam_to_junk && tagged_spam(message);

  // Users of each recipient, and one store target per distinct user.
  struct Target {
    std::string user;
    std::size_t slot = SIZE_MAX;  // into targets; SIZE_MAX: not stored (quota)
  };
  std::vector<std::vector<Target>> per_rcpt(req.recipients.size());
  std::vector<store::DeliveryTarget> targets;
  std::map<std::string, std::size_t> slot_of;  // lower-case user -> targets index
  std::vector<RcptResult> early;
  for (std::size_t k = 0; k < req.recipients.size(); ++k) {
    const auto idx = req.recipients[k];
    const auto& addr = req.envelope->recipients[idx].address;
    auto users = directory_.resolve_blocking(addr);
    if (!users) {
      early.push_back({idx, RcptStatus::Deferred, "4.3.0", "local", "directory unavailable: " + users.error().detail});
      continue;
    }
    if (users->empty()) {
      early.push_back({idx, RcptStatus::Bounced, "5.1.1", "local", "user unknown"});
      continue;
    }
    for (const auto& u : *users) {
      Target t{u.name};
      if (u.quota != 0) {
        auto used = store_.usage(u.name);
        if (used && used->bytes + message.size() > u.quota) {
          per_rcpt[k].push_back(t);  // slot stays SIZE_MAX: over quota
          continue;
        }
      }
      auto key = lower(u.name);
      auto it = slot_of.find(key);
      if (it == slot_of.end()) {
        it = slot_of.emplace(key, targets.size()).first;
        targets.push_back({u.name, junk ? junk_mailbox(store_, u.name) : std::string("INBOX"), 0});
      }
      t.slot = it->second;
      per_rcpt[k].push_back(t);
    }
  }
  std::vector<store::DeliveryResult> stored;
  if (!targets.empty()) {
    auto date = std::chrono::duration_cast<std::chrono::seconds>(req.envelope->arrival.time_since_epoch()).count();
    if (date <= 0) date = std::time(nullptr);
    stored = store_.deliver(message, date, targets);
  }
  out = std::move(early);
  for (std::size_t k = 0; k < req.recipients.size(); ++k) {
    if (per_rcpt[k].empty()) continue;
    const auto idx = req.recipients[k];
    std::string done, temp_error;
    std::size_t full = 0;
    for (const auto& t : per_rcpt[k]) {
      if (t.slot == SIZE_MAX) {
        ++full;
        counters().over_quota.inc();
        log::info(req.queue_id + ": to=<" + req.envelope->recipients[idx].address + ">: user " + t.user +
                  " is over quota");
        continue;
      }
      const auto& r = stored[t.slot];
      if (!r.status) {
        counters().failed.inc();
        temp_error = t.user + ": " + r.status.error().detail;
        continue;
      }
      (junk ? counters().junk : counters().stored).inc();
      done += (done.empty() ? "" : ", ") + t.user + "/" + targets[t.slot].mailbox + " uid " + std::to_string(r.uid);
    }
    if (!temp_error.empty())
      out.push_back({idx, RcptStatus::Deferred, "4.3.0", "local", "cannot store: " + temp_error});
    else if (done.empty() && full > 0)
      out.push_back({idx, RcptStatus::Bounced, "5.2.2", "local", "mailbox full"});
    else
      out.push_back({idx, RcptStatus::Sent, "2.0.0", "local", "delivered to " + done});
  }
  return out;
}

asio::awaitable<std::vector<RcptResult>> LocalTransport::deliver(const DeliveryRequest& req) {
  auto cfg = config_();
  co_return co_await run_blocking(blocking_, [&] { return deliver_blocking(req, *cfg); });
}

void LocalTransport::start_maintenance(asio::io_context& io) {
  timer_ = std::make_unique<asio::steady_timer>(io);
  asio::co_spawn(io, maintenance(frames_.token()), asio::detached);
}

void LocalTransport::stop() {
  stopping_ = true;
  if (timer_) asio::post(timer_->get_executor(), [this, alive = frames_.token()] { timer_->cancel(); });
}

asio::awaitable<void> LocalTransport::maintenance(FrameCount::Token) {
  while (!stopping_) {
    timer_->expires_after(config_()->local.compact_interval);
    co_await timer_->async_wait(asio::as_tuple(asio::use_awaitable));
    if (stopping_) co_return;
    auto st = co_await run_blocking(blocking_, [this] { return store_.compact(); });
    if (!st) log::warning("store: compact: " + st.error().detail);
  }
}

}  // namespace moat::gateway

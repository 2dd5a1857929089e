// The local transport: final delivery (RFC 5321 §4.4: Return-Path added)
// of mail for local domains into the mailbox store. Recipients resolve
// through the directory (users, aliases, catch-alls); each message is
// stored once for all its users (single instance) and is durable before the
// queue hears "sent". Mail the policy tagged (X-Spam-Flag: YES) goes to the
// user's \Junk mailbox. Over quota: 452 at RCPT when the size is known
// (verify_recipient), otherwise a bounce with 5.2.2 (RFC 3463).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <set>
#include <string>

#include "common/config.hpp"
#include "common/frame_count.hpp"
#include "gateway/queue/transport.hpp"

namespace moat::directory { class Directory; }
namespace moat::store { class MailboxStore; }

namespace moat::gateway {

class LocalTransport final : public Transport {
 public:
  LocalTransport(store::MailboxStore& store, directory::Directory& directory,
                 std::function<config::Snapshot()> config, asio::thread_pool& blocking);
  ~LocalTransport() override;

  asio::awaitable<std::vector<RcptResult>> deliver(const DeliveryRequest& req) override;

  // SMTP RCPT: true for [local] domains and those in the user database
  // (re-read at most every kDomainTtl).
  asio::awaitable<bool> is_local_domain(std::string domain);
  // SMTP RCPT for a local domain: UnknownRecipient (550 5.1.1), MailboxFull
  // (452 4.2.2) when every user it reaches is over quota with `size` more
  // bytes, DirectoryUnavailable when the directory cannot answer.
  asio::awaitable<Status> verify_recipient(std::string address, std::uint64_t size);

  // Runs the store's compaction every [local] compact_interval on `io`.
  void start_maintenance(asio::io_context& io);
  void stop();
  std::size_t frames() const { return frames_.live(); }

  static constexpr std::chrono::seconds kDomainTtl{2};

 private:
  struct Work;
  bool domains_stale();
  void refresh_domains_blocking();
  std::vector<RcptResult> deliver_blocking(const DeliveryRequest& req, const config::Config& cfg);
  asio::awaitable<void> maintenance(FrameCount::Token);

  store::MailboxStore& store_;
  directory::Directory& directory_;
  std::function<config::Snapshot()> config_;
  asio::thread_pool& blocking_;
  std::mutex mu_;
  std::set<std::string> db_domains_;
  std::chrono::steady_clock::time_point domains_read_{};
  std::unique_ptr<asio::steady_timer> timer_;
  std::atomic<bool> stopping_{false};
  FrameCount frames_{"local transport"};
};

}  // namespace moat::gateway

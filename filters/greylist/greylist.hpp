// Greylisting (RFC 6647): the first attempt of an unknown triplet (client
// network, envelope sender, recipient) is answered 451 4.7.1; a retry after
// `delay` and within `retry_window` passes, and so does every later message of
// that triplet until it has been unused for `expiry`. A client network that
// retried correctly `auto_allow_after` times skips greylisting until unused
// for `expiry`. State lives in SQLite (data_dir/db/greylist.sqlite) and is
// only touched on the blocking pool.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "common/config.hpp"
#include "common/error.hpp"
#include "common/net.hpp"
#include "common/sqlite.hpp"
#include "filters/filter.hpp"

namespace moat::filters::greylist {

struct Triplet {
  std::string network;  // "192.0.2.0/24", "2001:db8:1:2::/64"
  std::string sender;   // lower case; "" for the null sender
  std::string recipient;
};

// The client network of `ip` at the configured prefix lengths, as text.
std::string network_of(const IpAddr& ip, unsigned v4_prefix, unsigned v6_prefix);

enum class Outcome {
  New,         // first attempt (or the old one expired): defer
  TooEarly,    // retried before `delay`: defer
  Passed,      // retried correctly now: pass, and counts for auto-allow
  Known,       // passed before and still fresh: pass
  AutoAllowed, // the network is auto-allowed: pass
};
std::string_view outcome_name(Outcome o);
constexpr bool defers(Outcome o) { return o == Outcome::New || o == Outcome::TooEarly; }

// The state machine on SQLite. Blocking: call it on the blocking pool. Times
// are Unix seconds passed in by the caller (tests drive a fake clock).
// Opened on first use, so building a filter never touches the disk.
class Store {
 public:
  explicit Store(std::filesystem::path file);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  Result<Outcome> check(const Triplet& t, const config::Greylist& policy, std::int64_t now);
  // Removes expired triplets and networks; returns how many rows went.
  Result<std::int64_t> cleanup(const config::Greylist& policy, std::int64_t now);
  // Runs cleanup() when the last one is older than `every` seconds.
  void maybe_cleanup(const config::Greylist& policy, std::int64_t now, std::int64_t every = 3600);
  Result<std::int64_t> count_triplets();

 private:
  Status open_locked();
  Result<Outcome> check_locked(const Triplet& t, const config::Greylist& policy, std::int64_t now);

  std::filesystem::path file_;
  std::mutex mu_;
  sqlite::Db db_;  // closed until first use
  std::int64_t last_cleanup_ = 0;
};

// Symbol: GREYLIST (defers with 451 4.7.1, Errc::Greylisted). Phase RcptTo.
// Skipped for authenticated users, relay.networks and greylist.whitelist.
class GreylistFilter final : public Filter {
 public:
  using Clock = std::function<std::int64_t()>;  // Unix seconds
  GreylistFilter(const config::Config& cfg, Store* store, boost::asio::thread_pool* pool, Clock clock = {});
  ~GreylistFilter() override;
  std::string_view name() const override { return "greylist"; }
  PhaseMask phases() const override { return mask(Phase::RcptTo); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

  bool exempt(const ClientInfo& client) const;

 private:
  config::Greylist cfg_;
  std::vector<Cidr> exempt_;
  std::unique_ptr<Store> own_store_;
  Store* store_;
  std::unique_ptr<boost::asio::thread_pool> own_pool_;
  boost::asio::thread_pool* pool_;
  Clock clock_;
};

}  // namespace moat::filters::greylist

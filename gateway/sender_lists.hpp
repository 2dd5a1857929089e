// moatd's in-memory copy of the quarantine's allow/block sender lists, so the
// message path looks a domain up without a trip to the blocking pool, where
// it would queue behind the spool's fsyncs (bench/auth: that wait was a
// large part of what DMARC-aligned mail cost). The copy is loaded at start,
// on reload (SIGHUP, `moatctl reload`) and when moatctl changes a list
// (`sender-lists reload` on the control socket).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "quarantine/store.hpp"

namespace moat::gateway {

namespace asio = boost::asio;

class SenderLists {
 public:
  SenderLists(quarantine::Store& store, asio::thread_pool& blocking) : store_(store), blocking_(blocking) {}

  // Reads the lists from the store on the blocking pool and swaps the copy.
  // On error the old copy stays.
  asio::awaitable<Status> reload();
  void set(const std::vector<quarantine::ListEntry>& entries);  // at start, before any session

  // The entry for the domain or its nearest listed parent (mail.example.com,
  // then example.com, then com), like quarantine::Store::lookup.
  std::optional<quarantine::ListKind> lookup(std::string_view domain) const;

 private:
  using Map = std::map<std::string, quarantine::ListKind, std::less<>>;
  quarantine::Store& store_;
  asio::thread_pool& blocking_;
  mutable std::mutex mu_;
  std::shared_ptr<const Map> lists_ = std::make_shared<Map>();
};

}  // namespace moat::gateway

// In-memory sender lists (see sender_lists.hpp).
#include "gateway/sender_lists.hpp"

#include "common/blocking.hpp"
#include "common/log.hpp"
#include "common/text.hpp"

namespace moat::gateway {

asio::awaitable<Status> SenderLists::reload() {
  auto* store = &store_;
  auto entries = co_await run_blocking(blocking_, [store] { return store->lists(); });
  if (!entries) {
    log::warning("sender lists not reloaded: " + entries.error().detail);
    co_return entries.error();
  }
  set(*entries);
  co_return Status{};
}

void SenderLists::set(const std::vector<quarantine::ListEntry>& entries) {
  auto fresh = std::make_shared<Map>();
  for (const auto& e : entries) (*fresh)[e.domain] = e.kind;
  std::lock_guard lock(mu_);
  lists_ = std::move(fresh);
}

std::optional<quarantine::ListKind> SenderLists::lookup(std::string_view domain) const {
  std::shared_ptr<const Map> lists;
  {
    std::lock_guard lock(mu_);
    lists = lists_;
  }
  const std::string d = lower(domain);
  std::string_view rest = d;
  while (!rest.empty()) {
    if (auto it = lists->find(rest); it != lists->end()) return it->second;
    auto dot = rest.find('.');
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  return std::nullopt;
}

}  // namespace moat::gateway

// Queue listings for people and programs: what `moatctl queue list|show`
// prints (postqueue -p style, or JSON), built from the spool files. Used by
// the daemon's control socket and by moatctl reading the spool directly
// (read-only) when moatd is down.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "gateway/queue/queue_file.hpp"

namespace moat::gateway::admin {

struct RcptEntry {
  std::string address;
  std::string status;   // "pending" | "deferred" | "sent" | "bounced"
  std::string reason;   // last diagnostic, may be empty
};

struct QueueEntry {
  std::string id;
  std::string queue;    // incoming | active | deferred | hold
  std::chrono::system_clock::time_point arrival{};
  std::uint64_t size = 0;
  std::string sender;
  std::vector<RcptEntry> recipients;
  std::uint32_t attempts = 0;
  std::optional<std::chrono::system_clock::time_point> next_attempt;
};

struct MessageDetails {
  QueueEntry entry;
  qf::QueueFile file;
  std::string headers;  // prepended lines + the stored header section
};

// The queues shown, in this order.
inline constexpr const char* kQueues[] = {"incoming", "active", "deferred", "hold"};

QueueEntry make_entry(std::string id, std::string queue, const qf::QueueFile& f);

// Blocking. Unreadable or torn files are skipped (they move to corrupt/ at
// the next start). Entries sorted by id, i.e. by arrival.
Result<std::vector<QueueEntry>> scan_spool(const std::filesystem::path& spool_dir);
// Errc::Invalid for a bad id, Errc::NotFound when no queue holds it.
Result<MessageDetails> load_message(const std::filesystem::path& spool_dir, std::string_view id);

std::string format_list(const std::vector<QueueEntry>& entries, bool json);
std::string format_show(const MessageDetails& m, bool json);

std::string json_escape(std::string_view s);

}  // namespace moat::gateway::admin

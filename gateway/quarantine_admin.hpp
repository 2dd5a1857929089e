// The gateway side of the quarantine (quarantine/store.hpp holds the files
// and rows): the stored file format, the entry a session writes, release
// through the normal queue, the moatd control command and expiry timer, and
// the listings `moatctl quarantine` prints (text or JSON). docs/quarantine.md.
//
// A stored file is a complete queue file (gateway/queue/queue_file.hpp:
// envelope records, the message as it would have been relayed, END with a
// CRC32C), so a torn or damaged one is recognised, and release hands the
// same envelope and bytes to Spool::commit like any accepted message.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.hpp"
#include "common/envelope.hpp"
#include "common/error.hpp"
#include "quarantine/store.hpp"

namespace moat::gateway {

namespace asio = boost::asio;
class Spool;

namespace qadmin {

// The queue-file image of a message made of `pieces` (Received etc., header
// section, body), for Store::put.
std::string encode_file(const Envelope& env, std::initializer_list<std::string_view> pieces);

struct Decoded {
  Envelope envelope;
  std::string message;
};
// Errc::Corrupt when the file is torn or damaged.
Result<Decoded> decode_file(std::string_view bytes);

// The first field `name` of a header section, unfolded, whitespace trimmed,
// control characters replaced by '?', cut at `max` bytes; "" when absent.
std::string field_value(std::string_view header, std::string_view name, std::size_t max = 998);

// Listings: text for people, JSON for programs.
std::string format_list(const std::vector<quarantine::Entry>& entries, bool json);
// show: the metadata and, in text, the stored message's header section.
std::string format_show(const quarantine::Entry& e, std::string_view message, bool json);
std::string format_lists(const std::vector<quarantine::ListEntry>& lists, bool json);

}  // namespace qadmin

// In moatd: release (through the spool and queue), the "quarantine" control
// command, and expiry on a timer ([quarantine] expire_interval).
class QuarantineService {
 public:
  QuarantineService(asio::io_context& io, quarantine::Store& store, Spool& spool, asio::thread_pool& blocking,
                    std::function<config::Snapshot()> config);

  // Decodes the stored file, commits it to the spool with the original
  // envelope (arrival = now, so the queue lifetime starts at release) and
  // removes it from the quarantine. Returns the new queue id.
  asio::awaitable<Result<std::string>> release(std::string id);
  // Control socket: "release ID [--json]" | "expire [--json]".
  asio::awaitable<std::string> handle(std::vector<std::string> args);
  // Expires every interval until stop(); spawn on the io_context.
  asio::awaitable<void> expire_loop();
  void stop() { stopping_ = true; }

 private:
  asio::io_context& io_;
  quarantine::Store& store_;
  Spool& spool_;
  asio::thread_pool& blocking_;
  std::function<config::Snapshot()> config_;
  bool stopping_ = false;
};

}  // namespace moat::gateway

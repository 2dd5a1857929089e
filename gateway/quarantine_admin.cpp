// See quarantine_admin.hpp.
#include "gateway/quarantine_admin.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/blocking.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/text.hpp"
#include "filters/policy.hpp"
#include "gateway/queue/admin.hpp"
#include "gateway/queue/dsn.hpp"
#include "gateway/queue/queue_file.hpp"
#include "gateway/spool.hpp"

namespace moat::gateway {
namespace qadmin {
namespace {

constexpr std::size_t kContentRecord = 1u << 20;

std::chrono::system_clock::time_point from_unix(std::int64_t s) {
  return std::chrono::system_clock::time_point(std::chrono::seconds(s));
}

// Control characters from hostile headers never reach a terminal raw.
std::string printable(std::string_view s) {
  std::string o;
  for (unsigned char c : s) o.push_back(c == '\t' || (c >= 0x20 && c != 0x7f) ? char(c) : '?');
  return o;
}

std::string json_str(std::string_view s) { return "\"" + admin::json_escape(s) + "\""; }

std::string entry_json(const quarantine::Entry& e) {
  std::string o = "{\"id\":" + json_str(e.id) + ",\"kind\":" + json_str(quarantine::kind_name(e.kind)) +
                  ",\"time\":" + std::to_string(e.time) + ",\"date\":" + json_str(dsn::rfc5322_date(from_unix(e.time))) +
                  ",\"expires\":" + std::to_string(e.expires) + ",\"sender\":" + json_str(e.sender) + ",\"recipients\":[";
  for (std::size_t i = 0; i < e.recipients.size(); ++i) o += (i ? "," : "") + json_str(e.recipients[i]);
  o += "],\"from\":" + json_str(e.from) + ",\"subject\":" + json_str(e.subject) +
       ",\"score\":" + filters::format_score(e.score) + ",\"symbols\":" + json_str(e.symbols) +
       ",\"reason\":" + json_str(e.reason) + ",\"client\":" + json_str(e.client) +
       ",\"auth_domain\":" + json_str(e.auth_domain) + ",\"size\":" + std::to_string(e.size) + "}";
  return o;
}

}  // namespace

std::string encode_file(const Envelope& env, std::initializer_list<std::string_view> pieces) {
  std::string out = qf::encode_head(env);
  for (std::string_view p : pieces) {
    while (!p.empty()) {
      auto chunk = p.substr(0, kContentRecord);
      qf::put_record(out, qf::Rec::Content, chunk);
      p.remove_prefix(chunk.size());
    }
  }
  out += qf::encode_end(out.size(), qf::crc32c(0, out));
  return out;
}

Result<Decoded> decode_file(std::string_view bytes) {
  auto f = qf::parse_queue_file(bytes);
  if (!f) return f.error();
  Decoded d{std::move(f->envelope), {}};
  d.message.reserve(f->content_size);
  for (auto [off, len] : f->content) d.message.append(bytes.substr(off, len));
  for (const auto& line : f->prepend) d.message.insert(0, line);
  return d;
}

std::string field_value(std::string_view header, std::string_view name, std::size_t max) {
  std::size_t pos = 0;
  while (pos < header.size()) {
    std::size_t eol = header.find('\n', pos);
    std::size_t end = eol == std::string_view::npos ? header.size() : eol + 1;
    std::string_view line = header.substr(pos, end - pos);
    pos = end;
    if (line.size() <= name.size() || line[name.size()] != ':' || !iequals(line.substr(0, name.size()), name))
      continue;
    std::string v(line.substr(name.size() + 1));
    // Continuation lines (RFC 5322 §2.2.3 unfolding: drop the CRLF, keep the WSP).
    while (pos < header.size() && (header[pos] == ' ' || header[pos] == '\t') && v.size() < 4 * max) {
      std::size_t e2 = header.find('\n', pos);
      std::size_t stop = e2 == std::string_view::npos ? header.size() : e2 + 1;
      v += header.substr(pos, stop - pos);
      pos = stop;
    }
    std::string out;
    for (char c : v)
      if (c != '\r' && c != '\n') out.push_back(c);
    auto b = out.find_first_not_of(" \t");
    out = b == std::string::npos ? std::string() : out.substr(b, out.find_last_not_of(" \t") - b + 1);
    out = printable(out);
    if (out.size() > max) out.resize(max);
    return out;
  }
  return {};
}

std::string format_list(const std::vector<quarantine::Entry>& entries, bool json) {
  if (json) {
    std::string o = "{\"messages\":[";
    for (std::size_t i = 0; i < entries.size(); ++i) o += (i ? "," : "") + entry_json(entries[i]);
    return o + "]}\n";
  }
  if (entries.empty()) return "Quarantine is empty\n";
  std::string o;
  for (const auto& e : entries) {
    o += e.id + "  " + std::string(quarantine::kind_name(e.kind)) + "  " + dsn::rfc5322_date(from_unix(e.time)) +
         "  score " + filters::format_score(e.score) + "  <" + printable(e.sender) + ">\n";
    for (const auto& r : e.recipients) o += "    to <" + printable(r) + ">\n";
    o += "    subject: " + e.subject + "\n    reason: " + printable(e.reason) + "\n";
  }
  o += "-- " + std::to_string(entries.size()) + " message" + (entries.size() == 1 ? "" : "s") + "\n";
  return o;
}

std::string format_show(const quarantine::Entry& e, std::string_view message, bool json) {
  auto p = message.find("\r\n\r\n");
  std::string_view header = p == std::string_view::npos ? message : message.substr(0, p + 2);
  if (json) {
    std::string o = entry_json(e);
    o.pop_back();
    return o + ",\"header\":" + json_str(header) + "}\n";
  }
  std::string o = "id: " + e.id + "\nkind: " + std::string(quarantine::kind_name(e.kind)) +
                  "\ndate: " + dsn::rfc5322_date(from_unix(e.time)) +
                  "\nexpires: " + dsn::rfc5322_date(from_unix(e.expires)) + "\nsender: <" + printable(e.sender) + ">\n";
  for (const auto& r : e.recipients) o += "recipient: <" + printable(r) + ">\n";
  o += "from: " + e.from + "\nsubject: " + e.subject + "\nscore: " + filters::format_score(e.score) +
       "\nsymbols: " + printable(e.symbols) + "\nreason: " + printable(e.reason) + "\nclient: " + printable(e.client) +
       "\nauthenticated domain: " + (e.auth_domain.empty() ? "(none)" : e.auth_domain) +
       "\nsize: " + std::to_string(e.size) + "\n\n";
  for (unsigned char c : header) {
    if (c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f)) o.push_back(char(c));
    else if (c != '\r') o.push_back('?');
  }
  return o;
}

std::string format_lists(const std::vector<quarantine::ListEntry>& lists, bool json) {
  std::string o = json ? "{\"lists\":[" : "";
  for (std::size_t i = 0; i < lists.size(); ++i) {
    const auto& l = lists[i];
    if (json)
      o += std::string(i ? "," : "") + "{\"domain\":" + json_str(l.domain) + ",\"list\":" +
           json_str(quarantine::list_name(l.kind)) + ",\"added\":" + std::to_string(l.added) + "}";
    else
      o += std::string(quarantine::list_name(l.kind)) + "  " + printable(l.domain) + "\n";
  }
  if (json) return o + "]}\n";
  return lists.empty() ? "No sender list entries\n" : o;
}

}  // namespace qadmin

namespace {
struct Counters {
  metrics::Counter& released = metrics::counter("moat_quarantine_released_total", {}, "Messages released from quarantine");
  metrics::Counter& expired = metrics::counter("moat_quarantine_expired_total", {}, "Quarantine entries expired");
};
Counters& counters() {
  static Counters c;
  return c;
}
}  // namespace

QuarantineService::QuarantineService(asio::io_context& io, quarantine::Store& store, Spool& spool,
                                     asio::thread_pool& blocking, std::function<config::Snapshot()> config)
    : io_(io), store_(store), spool_(spool), blocking_(blocking), config_(std::move(config)) {}

asio::awaitable<Result<std::string>> QuarantineService::release(std::string id) {
  if (!quarantine::valid_id(id)) co_return Error{Errc::Invalid, "invalid quarantine id"};
  auto bytes = co_await run_blocking(blocking_, [&] { return store_.read(id); });
  if (!bytes) co_return bytes.error();
  auto decoded = qadmin::decode_file(*bytes);
  if (!decoded) co_return Error{Errc::Corrupt, id + ": stored file is damaged: " + decoded.error().detail};
  decoded->envelope.arrival = std::chrono::system_clock::now();
  auto writer = spool_.begin(decoded->envelope);
  if (!writer) co_return writer.error();
  if (auto st = (*writer)->append(decoded->message); !st) co_return st.error();
  auto committed = co_await spool_.commit(std::move(*writer));
  if (!committed) co_return committed.error();
  // Queued durably; a crash before the removal releases it twice at most.
  auto removed = co_await run_blocking(blocking_, [&] { return store_.remove(id); });
  if (!removed) log::warning("quarantine: " + id + ": released as " + *committed + " but not removed: " + removed.error().detail);
  counters().released.inc();
  log::info(id + ": released from quarantine as " + *committed);
  co_return *committed;
}

asio::awaitable<std::string> QuarantineService::handle(std::vector<std::string> args) {
  bool json = false;
  std::vector<std::string> rest;
  for (auto& a : args) {
    if (a == "--json") json = true;
    else rest.push_back(a);
  }
  if (rest.size() == 2 && rest[0] == "release") {
    auto r = co_await release(rest[1]);
    if (!r) co_return "ERROR: " + r.error().detail + "\n";
    co_return json ? "{\"ok\":true,\"id\":\"" + rest[1] + "\",\"queue_id\":\"" + *r + "\"}\n"
                   : "OK: " + rest[1] + " released as " + *r + "\n";
  }
  if (rest.size() == 1 && rest[0] == "expire") {
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    auto n = co_await run_blocking(blocking_, [&] { return store_.expire(now.count()); });
    if (!n) co_return "ERROR: " + n.error().detail + "\n";
    counters().expired.inc(*n);
    co_return json ? "{\"ok\":true,\"expired\":" + std::to_string(*n) + "}\n"
                   : "OK: " + std::to_string(*n) + " expired\n";
  }
  co_return "ERROR: usage: quarantine release ID | expire [--json]\n";
}

asio::awaitable<void> QuarantineService::expire_loop() {
  while (!stopping_) {
    auto every = config_()->quarantine.expire_interval;
    asio::steady_timer t(io_, every.count() > 0 ? every : std::chrono::seconds(60));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (stopping_ || every.count() == 0) continue;
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    auto n = co_await run_blocking(blocking_, [&] { return store_.expire(now.count()); });
    if (!n) {
      log::warning("quarantine expiry: " + n.error().detail);
    } else if (*n > 0) {
      counters().expired.inc(*n);
      log::info("quarantine: " + std::to_string(*n) + " expired entries removed");
    }
  }
}

}  // namespace moat::gateway

// See admin.hpp. Plain output follows postqueue -p: '*' after the id marks
// active, '!' marks held; a deferred recipient's last reason in parentheses.
#include "gateway/queue/admin.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "gateway/queue/dsn.hpp"

namespace moat::gateway::admin {
namespace {

const char* state_name(qf::RcptState s) {
  switch (s) {
    case qf::RcptState::Sent: return "sent";
    case qf::RcptState::Bounced: return "bounced";
    case qf::RcptState::Deferred: return "deferred";
    default: return "pending";
  }
}

std::int64_t unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::string local_time(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::localtime_r(&tt, &tm);
  char buf[40];
  return std::string(buf, std::strftime(buf, sizeof buf, "%a %b %e %H:%M:%S", &tm));
}

std::string entry_json(const QueueEntry& e) {
  std::string o = "{\"id\":\"" + json_escape(e.id) + "\",\"queue\":\"" + json_escape(e.queue) +
                  "\",\"arrival\":" + std::to_string(unix_seconds(e.arrival)) +
                  ",\"arrival_time\":\"" + json_escape(dsn::rfc5322_date(e.arrival)) +
                  "\",\"size\":" + std::to_string(e.size) + ",\"sender\":\"" + json_escape(e.sender) +
                  "\",\"attempts\":" + std::to_string(e.attempts) + ",\"next_attempt\":" +
                  (e.next_attempt ? std::to_string(unix_seconds(*e.next_attempt)) : std::string("null")) +
                  ",\"recipients\":[";
  for (std::size_t i = 0; i < e.recipients.size(); ++i) {
    const auto& r = e.recipients[i];
    if (i) o += ',';
    o += "{\"address\":\"" + json_escape(r.address) + "\",\"status\":\"" + r.status + "\",\"reason\":\"" +
         json_escape(r.reason) + "\"}";
  }
  return o + "]}";
}

// Control characters from hostile headers or replies never reach a terminal raw.
std::string printable(std::string_view s) {
  std::string o;
  for (unsigned char c : s) {
    if (c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f)) o.push_back(char(c));
    else if (c != '\r') o += '?';
  }
  return o;
}

}  // namespace

// Length of the valid UTF-8 sequence at s[i], 0 when invalid (RFC 3629).
static std::size_t utf8_len(std::string_view s, std::size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  std::size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  return n;
}

std::string json_escape(std::string_view s) {
  std::string o;
  o.reserve(s.size() + 8);
  for (std::size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else if (c >= 0x80) {
          // JSON must be UTF-8: bytes of hostile 8-bit headers become U+FFFD.
          if (std::size_t n = utf8_len(s, i)) {
            o.append(s.substr(i, n));
            i += n - 1;
          } else {
            o += "\\ufffd";
          }
        } else {
          o.push_back(char(c));
        }
    }
  }
  return o;
}

QueueEntry make_entry(std::string id, std::string queue, const qf::QueueFile& f) {
  QueueEntry e;
  e.id = std::move(id);
  e.queue = std::move(queue);
  e.arrival = f.envelope.arrival;
  e.size = f.content_size;
  for (const auto& p : f.prepend) e.size += p.size();
  e.sender = f.envelope.sender;
  e.attempts = f.attempts;
  e.next_attempt = f.next_attempt;
  for (std::size_t i = 0; i < f.envelope.recipients.size(); ++i) {
    const auto& p = f.progress[i];
    e.recipients.push_back(RcptEntry{f.envelope.recipients[i].address, state_name(p.state), p.diagnostic});
  }
  return e;
}

Result<std::vector<QueueEntry>> scan_spool(const std::filesystem::path& spool_dir) {
  std::vector<QueueEntry> out;
  for (const char* q : kQueues) {
    std::error_code ec;
    std::filesystem::directory_iterator it(spool_dir / q, ec);
    if (ec) return Error{Errc::IoError, (spool_dir / q).string() + ": " + ec.message()};
    for (const auto& de : it) {
      std::string id = de.path().filename().string();
      if (!qf::valid_queue_id(id)) continue;
      auto f = qf::read_queue_file(de.path());
      if (!f) continue;  // moved away meanwhile, or torn
      out.push_back(make_entry(std::move(id), q, *f));
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

Result<MessageDetails> load_message(const std::filesystem::path& spool_dir, std::string_view id) {
  if (!qf::valid_queue_id(id)) return Error{Errc::Invalid, "invalid queue id"};
  for (const char* q : kQueues) {
    auto path = spool_dir / q / id;
    auto f = qf::read_queue_file(path);
    if (!f && f.error().code == Errc::NotFound) continue;
    if (!f) return f.error();
    MessageDetails m;
    m.entry = make_entry(std::string(id), q, *f);
    for (const auto& p : f->prepend) m.headers += p;
    auto content = qf::read_content(path, *f, 256 * 1024);
    if (content) m.headers += dsn::header_section(*content);
    m.file = std::move(*f);
    return m;
  }
  return Error{Errc::NotFound, std::string(id) + ": no such message in the queue"};
}

std::string format_list(const std::vector<QueueEntry>& entries, bool json) {
  if (json) {
    std::string o = "{\"messages\":[";
    for (std::size_t i = 0; i < entries.size(); ++i) o += (i ? "," : "") + entry_json(entries[i]);
    return o + "]}\n";
  }
  if (entries.empty()) return "Mail queue is empty\n";
  std::string o = "-Queue ID-            --Size-- ----Arrival Time---- -Sender/Recipient-------\n";
  std::uint64_t total = 0;
  for (const auto& e : entries) {
    total += e.size;
    char mark = e.queue == "active" ? '*' : e.queue == "hold" ? '!' : ' ';
    char line[512];
    std::string id_mark = e.id + mark;
    std::snprintf(line, sizeof line, "%-21s %8llu %-20s %s\n", id_mark.c_str(),
                  static_cast<unsigned long long>(e.size), local_time(e.arrival).c_str(),
                  printable(e.sender.empty() ? "MAILER-DAEMON" : e.sender).c_str());
    o += line;
    for (const auto& r : e.recipients) {
      if (r.status == "sent" || r.status == "bounced") continue;
      if (!r.reason.empty()) o += "(" + printable(r.reason) + ")\n";
      o += std::string(52, ' ') + printable(r.address) + "\n";
    }
    o += "\n";
  }
  o += "-- " + std::to_string((total + 1023) / 1024) + " Kbytes in " + std::to_string(entries.size()) +
       (entries.size() == 1 ? " Request.\n" : " Requests.\n");
  return o;
}

std::string format_show(const MessageDetails& m, bool json) {
  const auto& env = m.file.envelope;
  if (json) {
    std::string o = entry_json(m.entry);
    o.pop_back();  // reopen the object to add envelope details
    o += ",\"envid\":\"" + json_escape(env.envid) + "\",\"helo\":\"" + json_escape(env.client.helo) +
         "\",\"client\":\"" + json_escape(env.client.ip.str()) + "\",\"protocol\":\"" +
         json_escape(env.client.protocol) + "\",\"auth_user\":\"" + json_escape(env.client.auth_user) +
         "\",\"headers\":\"" + json_escape(m.headers) + "\"}\n";
    return o;
  }
  std::string o;
  o += "Queue ID: " + m.entry.id + " (" + m.entry.queue + ")\n";
  o += "Arrival: " + dsn::rfc5322_date(env.arrival) + "\n";
  o += "Size: " + std::to_string(m.entry.size) + "\n";
  o += "Sender: <" + printable(env.sender) + ">\n";
  o += "Client: " + printable(env.client.reverse_name.empty() ? "unknown" : env.client.reverse_name) + "[" +
       env.client.ip.str() + "] helo=" + printable(env.client.helo) + " protocol=" + printable(env.client.protocol) + "\n";
  if (!env.envid.empty()) o += "ENVID: " + printable(env.envid) + "\n";
  o += "Attempts: " + std::to_string(m.entry.attempts) + "\n";
  for (const auto& r : m.entry.recipients) {
    o += "Recipient: <" + printable(r.address) + "> " + r.status;
    if (!r.reason.empty()) o += " (" + printable(r.reason) + ")";
    o += "\n";
  }
  o += "\n" + printable(m.headers);
  return o;
}

}  // namespace moat::gateway::admin

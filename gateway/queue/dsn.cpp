// See dsn.hpp. Layout of a bounce (RFC 3464 §2, RFC 6522 multipart/report):
//   multipart/report; report-type=delivery-status
//     text/plain                     for people
//     message/delivery-status        per-message fields, then per recipient
//     message/rfc822 | text/rfc822-headers   the original (RET)
#include "gateway/queue/dsn.hpp"

#include <ctime>

#include "common/proto/xtext.hpp"

namespace moat::gateway::dsn {
namespace {

// Header values never carry CR or LF from the envelope (header injection).
std::string clean(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) out.push_back(c == '\r' || c == '\n' ? ' ' : c);
  return out;
}

// ENVID and ORCPT arrive as xtext; the report carries them decoded
// (RFC 3461 §6.3). Undecodable values are passed through as they came.
std::string decode_xtext(std::string_view s) {
  auto d = proto::smtp::xtext_decode(s);
  return clean(d ? *d : std::string(s));
}

std::string remote_mta(std::string_view relay) {
  if (relay.empty() || relay == "none") return {};
  auto b = relay.find('[');
  return clean(relay.substr(0, b));
}

bool is_smtp_reply(std::string_view d) {
  return d.size() >= 3 && d[0] >= '2' && d[0] <= '5' && std::isdigit(static_cast<unsigned char>(d[1])) &&
         std::isdigit(static_cast<unsigned char>(d[2]));
}

void human_part(std::string& o, const Report& r) {
  o += "This is the mail system at host " + r.reporting_mta + ".\r\n\r\n";
  o += "I'm sorry to have to inform you that your message could not\r\n";
  o += "be delivered to one or more recipients. It's attached below.\r\n\r\n";
  o += "For further assistance, please send mail to postmaster.\r\n\r\n";
  o += "                   The mail system\r\n\r\n";
  for (const auto& f : r.failed) {
    o += "<" + clean(f.rcpt->address) + ">: ";
    if (!f.status.empty() && f.status[0] == '4') o += "message expired in the queue; last error: ";
    o += clean(f.diagnostic.empty() ? "delivery failed" : f.diagnostic) + "\r\n";
  }
}

void status_part(std::string& o, const Report& r) {
  const Envelope& env = *r.original;
  o += "Reporting-MTA: dns; " + clean(r.reporting_mta) + "\r\n";
  o += "X-Moat-Queue-ID: " + clean(r.queue_id) + "\r\n";
  if (!env.envid.empty()) o += "Original-Envelope-Id: " + decode_xtext(env.envid) + "\r\n";
  o += "X-Moat-Sender: rfc822; " + clean(env.sender) + "\r\n";
  o += "Arrival-Date: " + rfc5322_date(env.arrival) + "\r\n";
  for (const auto& f : r.failed) {
    o += "\r\n";
    if (!f.rcpt->orcpt.empty()) o += "Original-Recipient: " + decode_xtext(f.rcpt->orcpt) + "\r\n";
    o += "Final-Recipient: rfc822; " + clean(f.rcpt->address) + "\r\n";
    o += "Action: failed\r\n";
    o += "Status: " + clean(f.status.empty() ? "5.0.0" : f.status) + "\r\n";
    if (auto m = remote_mta(f.relay); !m.empty()) o += "Remote-MTA: dns; " + m + "\r\n";
    if (!f.diagnostic.empty()) {
      std::string_view d = f.diagnostic;
      o += std::string(is_smtp_reply(d) ? "Diagnostic-Code: smtp; " : "Diagnostic-Code: X-Moat; ") + clean(d) + "\r\n";
    }
    o += "Last-Attempt-Date: " + rfc5322_date(r.now) + "\r\n";
  }
}

}  // namespace

bool wants_failure_report(const Envelope& env, const Recipient& r) {
  if (env.sender.empty()) return false;
  if (r.notify == DsnNotify::Default) return true;
  if (has(r.notify, DsnNotify::Never)) return false;
  return has(r.notify, DsnNotify::Failure);
}

bool return_headers_only(const Envelope& env, std::size_t message_size) {
  return env.ret == DsnRet::Hdrs || message_size > kReturnSizeLimit;
}

std::string_view header_section(std::string_view m) {
  if (m.substr(0, 2) == "\r\n") return {};
  auto p = m.find("\r\n\r\n");
  return p == std::string_view::npos ? m : m.substr(0, p + 2);
}

std::string rfc5322_date(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[64];
  std::size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return std::string(buf, n);
}

Envelope envelope(const Envelope& original, std::chrono::system_clock::time_point now) {
  Envelope e;
  e.sender = "";
  e.recipients.push_back(Recipient{original.sender, DsnNotify::Never, {}});
  e.body = original.body == BodyType::SevenBit ? BodyType::SevenBit : BodyType::EightBitMime;
  e.smtputf8 = original.smtputf8;
  e.client.protocol = "local";
  e.client.helo = "localhost";
  e.arrival = now;
  return e;
}

std::string build(const Report& r) {
  const Envelope& env = *r.original;
  std::string boundary = r.bounce_id + "." + std::to_string(
      std::chrono::duration_cast<std::chrono::seconds>(r.now.time_since_epoch()).count()) + "/" + clean(r.reporting_mta);
  std::string o;
  o += "From: MAILER-DAEMON@" + clean(r.reporting_mta) + " (Mail Delivery System)\r\n";
  o += "To: " + clean(env.sender) + "\r\n";
  o += "Subject: Undelivered Mail Returned to Sender\r\n";
  o += "Date: " + rfc5322_date(r.now) + "\r\n";
  o += "Message-ID: <" + clean(r.bounce_id) + "@" + clean(r.reporting_mta) + ">\r\n";
  o += "Auto-Submitted: auto-replied\r\n";  // RFC 3834: never answer this
  o += "MIME-Version: 1.0\r\n";
  o += "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary + "\"\r\n";
  o += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";
  o += "--" + boundary + "\r\n";
  o += "Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
  human_part(o, r);
  o += "\r\n--" + boundary + "\r\n";
  o += "Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n";
  status_part(o, r);
  o += "\r\n--" + boundary + "\r\n";
  if (r.headers_only) {
    o += "Content-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n";
    o += header_section(r.original_message);
  } else {
    o += "Content-Description: Undelivered Message\r\nContent-Type: message/rfc822\r\n";
    if (env.body != BodyType::SevenBit) o += "Content-Transfer-Encoding: 8bit\r\n";
    o += "\r\n";
    o += r.original_message;
  }
  if (o.size() < 2 || o.compare(o.size() - 2, 2, "\r\n") != 0) o += "\r\n";
  o += "\r\n--" + boundary + "--\r\n";
  return o;
}

}  // namespace moat::gateway::dsn

// Delivery status notifications: RFC 3464 multipart/report bounces, the
// RFC 3461 NOTIFY/RET/ENVID/ORCPT rules for when and what to send, and
// RFC 3834 Auto-Submitted. Pure functions: the queue manager spools the result.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/envelope.hpp"

namespace moat::gateway::dsn {

// Postfix bounce_size_limit: a larger original is returned as headers only.
inline constexpr std::size_t kReturnSizeLimit = 50000;

struct FailedRecipient {
  const Recipient* rcpt = nullptr;
  std::string status;       // RFC 3463 "5.1.1"; a 4.x.x here means expired
  std::string relay;        // "mx.example.org[192.0.2.1]:25", "none" or empty
  std::string diagnostic;   // "550 5.1.1 ..." or a local reason
};

struct Report {
  std::string reporting_mta;                // our hostname
  std::string queue_id;                     // of the failed message
  std::string bounce_id;                    // Message-ID local part / boundary salt
  const Envelope* original = nullptr;
  std::vector<FailedRecipient> failed;
  std::string original_message;             // whole message or only its header
  bool headers_only = false;                // RET=HDRS or over the size limit
  std::chrono::system_clock::time_point now{};
};

// Whether a permanent failure of `r` is reported to the sender: never for
// the null sender (no backscatter loops), never for NOTIFY=NEVER, and with an
// explicit NOTIFY only when it names FAILURE.
bool wants_failure_report(const Envelope& env, const Recipient& r);

// True when the report must carry only the original header section.
bool return_headers_only(const Envelope& env, std::size_t message_size);

// The header section of a message (through the empty line).
std::string_view header_section(std::string_view message);

// The complete bounce message, CRLF lines.
std::string build(const Report& r);

// The bounce's envelope: from <> to the original sender, NOTIFY=NEVER.
Envelope envelope(const Envelope& original, std::chrono::system_clock::time_point now);

// "Tue, 15 Nov 1994 08:12:31 +0000" (RFC 5322 §3.3).
std::string rfc5322_date(std::chrono::system_clock::time_point t);

}  // namespace moat::gateway::dsn

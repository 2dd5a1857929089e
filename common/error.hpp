// Errors on the data path are values: one enum that keeps temporary failures
// apart from permanent ones, a Result<T> to carry them, and the single table
// from error to SMTP reply (RFC 5321 §4.2, RFC 3463 enhanced status codes).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace moat {

enum class Errc : std::uint16_t {
  // --- temporary: the client keeps the message and retries (4xx) ---
  TempFailure = 1,     // generic local problem
  IoError,             // read/write/fsync failed
  DiskFull,            // ENOSPC / EDQUOT
  Timeout,             // a deadline passed
  DnsTempFail,         // resolver SERVFAIL / timeout
  ScanUnavailable,     // a fail-closed filter could not run
  ScanTimeout,         // a filter ran over its budget
  DirectoryUnavailable,// user database / LDAP / SQL down
  NextHopUnavailable,  // recipient verification callout could not reach the next hop
  RateLimited,         // too many connections / messages from this client
  ShuttingDown,        // service is stopping or reloading
  TooManyErrors,       // 421 after hard_errors
  QueueFull,           // spool over its configured size
  PolicyTempFail,      // policy decided to tempfail (score)
  Greylisted,          // first attempt of an unknown triplet (greylisting)
  MessageRateLimited,  // message / recipient rate of a client or user exceeded
  ConnectTempFail,     // a connect-phase check could not decide or deferred: 421 instead of the banner
  MailboxFull,         // a local user is over quota (RFC 3463 4.2.2)
  TempLast_,           // marker: everything below is temporary

  // --- permanent: 5xx, the client must not retry unchanged ---
  SyntaxError = 100,   // unparsable command
  ParamSyntax,         // bad argument / parameter
  UnknownCommand,
  LineTooLong,
  BadSequence,         // command out of order
  NotImplemented,      // parameter or extension not offered
  MessageTooLarge,
  HeaderTooLarge,
  TooManyRecipients,
  RelayDenied,
  UnknownRecipient,
  BadAddress,          // syntactically bad or forbidden address form
  LoopDetected,        // too many Received: hops
  BareLineEnding,      // bare CR or LF in DATA with policy=reject
  AuthRequired,
  AuthFailed,
  AuthMechUnsupported,
  EncryptionRequired,  // AUTH/MAIL before STARTTLS where TLS is required
  PolicyReject,        // a filter/policy verdict
  ConnectRefused,      // a connect-phase check refused the client: 554 instead of the banner
  DnsblListed,         // client address on a DNS blocklist
  SpfFail,             // SPF fail (RFC 7372 5.7.23)
  DkimFail,            // no valid DKIM signature where one was required (RFC 7372 5.7.20)
  DmarcReject,         // DMARC p=reject (RFC 7489 §6.7)
  BadHelo,
  NotFound,            // admin operations: no such queue id / user
  Corrupt,             // a stored file failed its checks
  Invalid,             // generic invalid input (config, CLI)
};

constexpr bool is_temporary(Errc e) { return e < Errc::TempLast_; }

struct Error {
  Errc code{Errc::TempFailure};
  std::string detail;  // for logs and the reply text where safe
};

// Result<T>: a value or an Error. std::expected is C++23; g++ 12 in C++20 mode
// does not have it, so this is the small subset we use.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                    // NOLINT(implicit)
  Result(Error err) : v_(std::move(err)) {}                    // NOLINT(implicit)
  Result(Errc code, std::string detail = {}) : v_(Error{code, std::move(detail)}) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error err) : err_(std::move(err)), ok_(false) {}      // NOLINT(implicit)
  Result(Errc code, std::string detail = {}) : err_{code, std::move(detail)}, ok_(false) {}
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return err_; }

 private:
  Error err_{};
  bool ok_ = true;
};

using Status = Result<void>;

// The one table from error to SMTP reply.
struct SmtpReply {
  int code;
  std::string_view enhanced;  // RFC 3463 "x.y.z"
  std::string_view text;
};
const SmtpReply& smtp_reply(Errc e);
std::string_view errc_name(Errc e);

// Formats "CODE X.Y.Z text" (no CRLF). detail, when non-empty, replaces text.
std::string format_reply(Errc e, std::string_view detail = {});

}  // namespace moat

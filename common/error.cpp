// The error-to-reply table (Postfix cleanup_strerror.c, Dovecot mail-error.h
// in spirit): every place that answers a client goes through here.
#include "common/error.hpp"

#include <array>

namespace moat {
namespace {

struct Row {
  Errc e;
  std::string_view name;
  SmtpReply reply;
};

constexpr std::array kTable{
    Row{Errc::TempFailure, "temp_failure", {451, "4.3.0", "Temporary local problem, try again later"}},
    Row{Errc::IoError, "io_error", {451, "4.3.0", "Local I/O error, try again later"}},
    Row{Errc::DiskFull, "disk_full", {452, "4.3.1", "Insufficient system storage"}},
    Row{Errc::Timeout, "timeout", {421, "4.4.2", "Timeout, closing connection"}},
    Row{Errc::DnsTempFail, "dns_temp_fail", {451, "4.4.3", "Temporary DNS failure, try again later"}},
    Row{Errc::ScanUnavailable, "scan_unavailable", {451, "4.7.1", "Content scan unavailable, try again later"}},
    Row{Errc::ScanTimeout, "scan_timeout", {451, "4.7.1", "Content scan timed out, try again later"}},
    Row{Errc::DirectoryUnavailable, "directory_unavailable", {451, "4.3.0", "User directory unavailable, try again later"}},
    Row{Errc::NextHopUnavailable, "next_hop_unavailable", {451, "4.4.0", "Recipient verification unavailable, try again later"}},
    Row{Errc::RateLimited, "rate_limited", {421, "4.7.0", "Too many connections or messages, slow down"}},
    Row{Errc::ShuttingDown, "shutting_down", {421, "4.3.2", "Service shutting down, closing connection"}},
    Row{Errc::TooManyErrors, "too_many_errors", {421, "4.7.0", "Too many errors, closing connection"}},
    Row{Errc::QueueFull, "queue_full", {452, "4.3.1", "Queue full, try again later"}},
    Row{Errc::PolicyTempFail, "policy_temp_fail", {451, "4.7.1", "Try again later"}},
    Row{Errc::Greylisted, "greylisted", {451, "4.7.1", "Greylisted, please try again later"}},
    Row{Errc::MessageRateLimited, "message_rate_limited", {451, "4.7.1", "Rate limit exceeded, try again later"}},
    Row{Errc::ConnectTempFail, "connect_temp_fail", {421, "4.7.0", "Service temporarily unavailable, closing connection"}},
    Row{Errc::MailboxFull, "mailbox_full", {452, "4.2.2", "Mailbox full"}},
    Row{Errc::TempLast_, "temp_last", {451, "4.3.0", "Temporary failure"}},
    Row{Errc::SyntaxError, "syntax_error", {500, "5.5.2", "Syntax error"}},
    Row{Errc::ParamSyntax, "param_syntax", {501, "5.5.4", "Syntax error in parameters or arguments"}},
    Row{Errc::UnknownCommand, "unknown_command", {502, "5.5.1", "Command not recognized"}},
    Row{Errc::LineTooLong, "line_too_long", {500, "5.5.6", "Line too long"}},
    Row{Errc::BadSequence, "bad_sequence", {503, "5.5.1", "Bad sequence of commands"}},
    Row{Errc::NotImplemented, "not_implemented", {504, "5.5.4", "Parameter not implemented"}},
    Row{Errc::MessageTooLarge, "message_too_large", {552, "5.3.4", "Message size exceeds fixed limit"}},
    Row{Errc::HeaderTooLarge, "header_too_large", {552, "5.3.4", "Message header exceeds fixed limit"}},
    Row{Errc::TooManyRecipients, "too_many_recipients", {452, "4.5.3", "Too many recipients"}},
    Row{Errc::RelayDenied, "relay_denied", {554, "5.7.1", "Relay access denied"}},
    Row{Errc::UnknownRecipient, "unknown_recipient", {550, "5.1.1", "Recipient address rejected: User unknown"}},
    Row{Errc::BadAddress, "bad_address", {553, "5.1.3", "Address rejected: bad address syntax"}},
    Row{Errc::LoopDetected, "loop_detected", {554, "5.4.6", "Too many hops, mail loop detected"}},
    Row{Errc::BareLineEnding, "bare_line_ending", {550, "5.6.11", "Bare CR or LF in message data is not allowed"}},
    Row{Errc::AuthRequired, "auth_required", {530, "5.7.0", "Authentication required"}},
    Row{Errc::AuthFailed, "auth_failed", {535, "5.7.8", "Authentication credentials invalid"}},
    Row{Errc::AuthMechUnsupported, "auth_mech_unsupported", {504, "5.5.4", "Unrecognized authentication type"}},
    Row{Errc::EncryptionRequired, "encryption_required", {530, "5.7.0", "Must issue a STARTTLS command first"}},
    Row{Errc::PolicyReject, "policy_reject", {550, "5.7.1", "Message rejected by policy"}},
    Row{Errc::ConnectRefused, "connect_refused", {554, "5.7.1", "Service unavailable, connection refused by policy"}},
    Row{Errc::DnsblListed, "dnsbl_listed", {554, "5.7.1", "Service unavailable, client host is on a DNS blocklist"}},
    Row{Errc::SpfFail, "spf_fail", {550, "5.7.23", "SPF validation failed"}},
    Row{Errc::DkimFail, "dkim_fail", {550, "5.7.20", "No passing DKIM signature found"}},
    Row{Errc::DmarcReject, "dmarc_reject", {550, "5.7.1", "Rejected by the sender domain's DMARC policy"}},
    Row{Errc::BadHelo, "bad_helo", {501, "5.5.4", "Invalid HELO/EHLO argument"}},
    Row{Errc::NotFound, "not_found", {550, "5.1.0", "Not found"}},
    Row{Errc::Corrupt, "corrupt", {451, "4.3.0", "Stored data is corrupt"}},
    Row{Errc::Invalid, "invalid", {501, "5.5.4", "Invalid input"}},
};

const Row& find(Errc e) {
  for (const auto& r : kTable)
    if (r.e == e) return r;
  return kTable[0];
}

}  // namespace

const SmtpReply& smtp_reply(Errc e) { return find(e).reply; }
std::string_view errc_name(Errc e) { return find(e).name; }

std::string format_reply(Errc e, std::string_view detail) {
  const auto& r = smtp_reply(e);
  std::string out = std::to_string(r.code);
  out += ' ';
  out += r.enhanced;
  out += ' ';
  out += detail.empty() ? r.text : detail;
  return out;
}

}  // namespace moat

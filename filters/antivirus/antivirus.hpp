// Antivirus filter (issue 4): at end of DATA, the raw message and every leaf
// of the shared MIME parse, decoded (filters/attachments/leaves.hpp, the
// same leaves the attachment policy reads: ScanContext::leaves), go to
// moat-scand in one request frame, which scans them with libclamav. Symbols:
//   VIRUS_FOUND        detail "SIGNATURE in NAME"
//   AV_LIMIT_EXCEEDED  a ClamAV or MIME limit was hit: unscanned is not clean
//   AV_SCAN_ERROR      libclamav failed on one item
// all forcing Quarantine (never Reject: viruses are not bounced). A scanner
// that cannot be reached, drops the connection or answers late is an error
// (451 with the default fail = "closed"); a late one is also restarted.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <filesystem>

#include "common/config.hpp"
#include "common/proto/scand/scand.hpp"
#include "filters/attachments/leaves.hpp"
#include "filters/filter.hpp"

namespace moat::filters::antivirus {

inline constexpr std::string_view kVirusFound = "VIRUS_FOUND";
inline constexpr std::string_view kLimitExceeded = "AV_LIMIT_EXCEEDED";
inline constexpr std::string_view kScanError = "AV_SCAN_ERROR";

// What moat-scand is asked to scan: item 0 is the raw message, then the
// decoded leaves, except a root whose body is the message's own bytes. The
// items point into `message` and `leaves`. Exposed for tests.
std::vector<proto::scand::ItemRef> request_items(std::string_view message, const attachments::Leaves& leaves);

// Symbols for a reply (Clean adds none); `items` as sent.
void add_symbols(const proto::scand::ScanReply& reply, const std::vector<proto::scand::ItemRef>& items, ScanContext& ctx);

class AntivirusFilter final : public Filter {
 public:
  AntivirusFilter(const config::Config& cfg, const config::Filter& settings, boost::asio::thread_pool* blocking);
  std::string_view name() const override { return "antivirus"; }
  PhaseMask phases() const override { return mask(Phase::EndOfData); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

 private:
  std::filesystem::path socket_;
  std::chrono::milliseconds timeout_;
  attachments::LeafLimits extract_;
  proto::scand::Limits limits_;
  boost::asio::thread_pool* blocking_;
};

// Frame limits both sides use for a message size cap (decoded parts can
// add up to about three times the message).
proto::scand::Limits frame_limits(const config::Config& cfg);

}  // namespace moat::filters::antivirus

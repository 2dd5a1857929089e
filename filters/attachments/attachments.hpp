// Attachment policy (issue 4): blocked file extensions, double extensions
// ("invoice.pdf.exe"), true types by content (libmagic), names and types
// inside archives (libarchive, nested up to archive_depth), and encrypted
// archives, whose contents no scanner can see. Parts and their file names
// (RFC 2231 / RFC 2047) come from the shared MIME parse (leaves.hpp). The
// policy is per recipient domain
// ([[attachments.domain]]); a message for several domains gets the union of
// their findings. Every finding forces Quarantine (filters/scores.cpp).
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "filters/attachments/leaves.hpp"
#include "filters/filter.hpp"

namespace moat::filters::attachments {

// Symbols (scores and forcing in filters/scores.cpp).
inline constexpr std::string_view kBlockedExt = "ATTACHMENT_BLOCKED_EXT";
inline constexpr std::string_view kDoubleExt = "ATTACHMENT_DOUBLE_EXT";
inline constexpr std::string_view kBlockedType = "ATTACHMENT_BLOCKED_TYPE";
inline constexpr std::string_view kBlockedInArchive = "ATTACHMENT_BLOCKED_IN_ARCHIVE";
inline constexpr std::string_view kEncrypted = "ATTACHMENT_ENCRYPTED";
inline constexpr std::string_view kArchiveLimit = "ATTACHMENT_ARCHIVE_LIMIT";
inline constexpr std::string_view kMimeLimit = "ATTACHMENT_MIME_LIMIT";

struct Finding {
  std::string symbol;
  std::string detail;
  bool operator==(const Finding&) const = default;
};

struct ArchiveLimits {
  unsigned depth = 3;
  unsigned max_entries = 1000;
  std::size_t max_entry_bytes = 16u << 20;   // read from one entry to learn its type
  std::size_t max_total_bytes = 64u << 20;   // read from one attachment's archives in all
};

// The file name as Windows would open it: the last path component, trailing
// dots and spaces dropped. Its extension, lower case ("" when none).
std::string clean_name(std::string_view name);
std::string extension(std::string_view name);

// libmagic's MIME type for the bytes ("application/x-dosexec").
std::string true_type(std::string_view data);
// The same without libmagic's text tests: "application/octet-stream" where
// only they would name a type. The policy checks read this first.
std::string binary_type(std::string_view data);
// Whether a policy needs the full reading: it blocks a type libmagic's text
// tests could name (anything but the default blocked types and archives).
bool text_matters(const config::AttachmentPolicy& policy);
// Text bytes only: no NUL and no control byte but TAB, LF, FF, CR and ESC.
// Every signature of the default blocked types and of the archives has a
// control byte (PE's "PE\0\0", OLE2's D0 CF 11 E0, ZIP's PK 03 04, ...), so
// under a policy where text does not matter such a part skips libmagic.
bool plain_text(std::string_view data);
bool is_archive_type(std::string_view mime_type);

// All findings for these parts under one policy. Pure apart from libmagic
// and libarchive reading memory; tests call it directly.
std::vector<Finding> check(const std::vector<Leaf>& parts, const config::AttachmentPolicy& policy,
                           const ArchiveLimits& limits);

// The message's leaves (ctx.shared<Leaves>()), decoded by the first content
// filter that asks (on `blocking`, or here without a pool: CPU work on
// hostile bytes); the next one reuses them. The antivirus asks here; the
// policy below decodes in its own trip to the pool when it comes first.
asio::awaitable<std::shared_ptr<const Leaves>> shared_leaves(ScanContext& ctx, const LeafLimits& limits,
                                                             boost::asio::thread_pool* blocking);

class AttachmentsFilter final : public Filter {
 public:
  AttachmentsFilter(const config::Config& cfg, boost::asio::thread_pool* blocking);
  std::string_view name() const override { return "attachments"; }
  PhaseMask phases() const override { return mask(Phase::EndOfData); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

 private:
  struct Scanned {
    std::shared_ptr<const Leaves> leaves;
    std::vector<Finding> found;
  };
  Scanned scan(const ScanContext& ctx, const mime::Message& tree, std::shared_ptr<const Leaves> leaves) const;
  config::Attachments settings_;
  LeafLimits extract_;
  ArchiveLimits archive_;
  boost::asio::thread_pool* blocking_;
};

}  // namespace moat::filters::attachments

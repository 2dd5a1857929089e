// Attachment policy (see attachments.hpp). libmagic and libarchive are
// wrapped here, each in one small RAII adapter.
#include "filters/attachments/attachments.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <magic.h>

#include <algorithm>
#include <memory>

#include "common/blocking.hpp"
#include "common/text.hpp"

namespace moat::filters::attachments {
namespace {

// One libmagic handle per thread: magic_t is not thread-safe, and loading
// the database costs a few milliseconds, so it is kept.
class Magic {
 public:
  Magic() : m_(magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR)) {
    if (m_ && magic_load(m_, nullptr) != 0) {
      magic_close(m_);
      m_ = nullptr;
    }
  }
  ~Magic() {
    if (m_) magic_close(m_);
  }
  std::string type(std::string_view data) {
    if (!m_ || data.empty()) return {};
    const char* t = magic_buffer(m_, data.data(), data.size());
    return t ? lower(t) : std::string();
  }

 private:
  magic_t m_;
};

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;

bool is_archive_type(std::string_view t) {
  static constexpr std::string_view kTypes[] = {
      "application/zip", "application/x-zip-compressed", "application/x-7z-compressed", "application/x-rar",
      "application/vnd.rar", "application/x-tar", "application/gzip", "application/x-gzip", "application/x-bzip2",
      "application/x-xz", "application/vnd.ms-cab-compressed", "application/x-arj", "application/x-cpio",
      "application/x-iso9660-image", "application/x-lzh-compressed", "application/x-lzip", "application/zstd",
      "application/x-lzma", "application/x-compress"};
  return std::find(std::begin(kTypes), std::end(kTypes), t) != std::end(kTypes);
}

bool listed(const std::vector<std::string>& list, std::string_view v) {
  return !v.empty() && std::find(list.begin(), list.end(), v) != list.end();
}

// "report.pdf.exe": a blocked extension behind another short one.
bool double_extension(std::string_view name, const config::AttachmentPolicy& p) {
  auto ext = extension(name);
  if (!listed(p.blocked_extensions, ext)) return false;
  std::string_view stem = name.substr(0, name.size() - ext.size() - 1);
  while (!stem.empty() && (stem.back() == ' ' || stem.back() == '.')) stem.remove_suffix(1);
  auto inner = extension(stem);
  return !inner.empty() && inner.size() <= 5;
}

class Checker {
 public:
  Checker(const config::AttachmentPolicy& p, const ArchiveLimits& l, std::vector<Finding>& out)
      : policy_(p), limits_(l), out_(out) {}

  void part(const Leaf& part) {
    std::string name = clean_name(part.filename);
    std::string shown = name.empty() ? "(unnamed " + part.content_type + ")" : name;
    if (!name.empty()) names(name, shown, kBlockedExt);
    if (part.body.empty()) return;
    std::string type = magic_.type(part.body);
    if (listed(policy_.blocked_types, type)) add(kBlockedType, shown + " is " + type);
    if (is_archive_type(type)) {
      budget_ = limits_.max_total_bytes;
      look_inside(part.body, shown, 1);
    }
  }

 private:
  void add(std::string_view symbol, std::string detail) {
    Finding f{std::string(symbol), std::move(detail)};
    if (std::find(out_.begin(), out_.end(), f) == out_.end()) out_.push_back(std::move(f));
  }

  void names(const std::string& name, const std::string& shown, std::string_view symbol) {
    if (listed(policy_.blocked_extensions, extension(name))) add(symbol, shown);
    if (policy_.block_double_extension && double_extension(name, policy_)) add(kDoubleExt, shown);
  }

  void look_inside(std::string_view data, const std::string& where, unsigned depth) {
    ArchivePtr a(archive_read_new());
    if (!a) return;
    archive_read_support_filter_all(a.get());
    archive_read_support_format_all(a.get());
    archive_read_support_format_raw(a.get());  // a lone .gz / .bz2 of one file
    if (archive_read_open_memory(a.get(), data.data(), data.size()) != ARCHIVE_OK) return encrypted_error(a.get(), where);
    unsigned entries = 0;
    archive_entry* e = nullptr;
    for (;;) {
      int rc = archive_read_next_header(a.get(), &e);
      if (rc == ARCHIVE_EOF) break;
      if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) return encrypted_error(a.get(), where);
      if (++entries > limits_.max_entries)
        return add(kArchiveLimit, where + ": more than " + std::to_string(limits_.max_entries) + " entries");
      const char* p = archive_entry_pathname(e);
      std::string entry = clean_name(p ? p : "");
      std::string shown = where + "/" + (entry.empty() ? "(unnamed)" : entry);
      if (!entry.empty() && entry != "data") names(entry, shown, kBlockedInArchive);
      if (archive_entry_is_encrypted(e)) {
        if (policy_.block_encrypted) add(kEncrypted, shown);
        continue;
      }
      std::string body = read_entry(a.get());
      if (body.empty()) continue;
      std::string type = magic_.type(body);
      if (listed(policy_.blocked_types, type)) add(kBlockedInArchive, shown + " is " + type);
      if (is_archive_type(type)) {
        if (depth >= limits_.depth) add(kArchiveLimit, shown + ": archives nested deeper than " + std::to_string(limits_.depth));
        else look_inside(body, shown, depth + 1);
      }
    }
  }

  // Encrypted headers (7z -mhe, RAR -hp) stop the reader before any entry.
  void encrypted_error(::archive* a, const std::string& where) {
    const char* msg = archive_error_string(a);
    std::string m = msg ? lower(msg) : "";
    if (policy_.block_encrypted && (m.find("encrypt") != std::string::npos || m.find("passphrase") != std::string::npos))
      add(kEncrypted, where);
  }

  std::string read_entry(::archive* a) {
    std::string out;
    char buf[16384];
    for (;;) {
      la_ssize_t n = archive_read_data(a, buf, sizeof buf);
      if (n <= 0) break;
      std::size_t take = std::min<std::size_t>(std::size_t(n), budget_);
      budget_ -= take;
      out.append(buf, take);
      if (out.size() >= limits_.max_entry_bytes || budget_ == 0) break;
    }
    return out;
  }

  const config::AttachmentPolicy& policy_;
  const ArchiveLimits& limits_;
  std::vector<Finding>& out_;
  std::size_t budget_ = 0;
  static thread_local Magic magic_;
};

thread_local Magic Checker::magic_;

// Details go to logs and the quarantine UI; file names are the sender's text.
std::string safe(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 300)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  return out;
}

std::string_view domain_of(std::string_view address) {
  auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view{} : address.substr(at + 1);
}

}  // namespace

std::string clean_name(std::string_view name) {
  auto slash = name.find_last_of("/\\");
  if (slash != std::string_view::npos) name.remove_prefix(slash + 1);
  while (!name.empty() && (name.back() == ' ' || name.back() == '.' || name.back() == '\t')) name.remove_suffix(1);
  while (!name.empty() && (name.front() == ' ' || name.front() == '\t')) name.remove_prefix(1);
  return std::string(name);
}

std::string extension(std::string_view name) {
  auto dot = name.rfind('.');
  if (dot == std::string_view::npos || dot + 1 == name.size()) return {};
  return lower(name.substr(dot + 1));
}

std::string true_type(std::string_view data) {
  static thread_local Magic m;
  return m.type(data);
}

std::vector<Finding> check(const std::vector<Leaf>& parts, const config::AttachmentPolicy& policy,
                           const ArchiveLimits& limits) {
  std::vector<Finding> out;
  Checker c(policy, limits, out);
  for (const auto& p : parts) c.part(p);
  return out;
}

AttachmentsFilter::AttachmentsFilter(const config::Config& cfg, boost::asio::thread_pool* blocking)
    : settings_(cfg.attachments), blocking_(blocking) {
  extract_.max_bytes = std::max<std::size_t>(4 * cfg.limits.message_size, 1u << 20);
  archive_.depth = settings_.archive_depth;
  archive_.max_entries = settings_.max_archive_entries;
}

std::vector<Finding> AttachmentsFilter::scan(const ScanContext& ctx, const mime::Message& tree) const {
  Leaves ex = collect_leaves(ctx.message, tree, extract_);
  std::vector<const config::AttachmentPolicy*> policies;
  for (const auto& r : ctx.envelope.recipients) {
    const auto* p = &settings_.for_domain(domain_of(r.address));
    if (std::find(policies.begin(), policies.end(), p) == policies.end()) policies.push_back(p);
  }
  if (policies.empty()) policies.push_back(&settings_.policy);
  std::vector<Finding> out;
  if (!ex.limit.empty()) out.push_back({std::string(kMimeLimit), ex.limit});
  for (const auto* p : policies)
    for (auto& f : check(ex.parts, *p, archive_))
      if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(std::move(f));
  return out;
}

asio::awaitable<Status> AttachmentsFilter::run(Phase, ScanContext& ctx) {
  // Decoding and archive reading are CPU work on hostile bytes: off the I/O threads.
  // The shared parse is made (or taken) here, on the session's side, and only
  // read from the pool: a filter after us that times this one out never races it.
  const mime::Message* tree = &ctx.mime();
  std::vector<Finding> found;
  if (blocking_) found = co_await run_blocking(*blocking_, [this, &ctx, tree] { return scan(ctx, *tree); });
  else found = scan(ctx, *tree);
  // One symbol per kind (details joined), so several findings do not add up.
  std::vector<Finding> merged;
  for (auto& f : found) {
    auto it = std::find_if(merged.begin(), merged.end(), [&](const Finding& m) { return m.symbol == f.symbol; });
    if (it == merged.end()) merged.push_back(std::move(f));
    else it->detail += "; " + f.detail;
  }
  for (auto& f : merged) ctx.add(std::move(f.symbol), safe(f.detail));
  co_return Status{};
}

}  // namespace moat::filters::attachments

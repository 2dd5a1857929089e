// Attachment policy (see attachments.hpp). libmagic and libarchive are
// wrapped here, each in one small RAII adapter.
#include "filters/attachments/attachments.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <magic.h>

#include <algorithm>
#include <array>
#include <memory>

#include "common/blocking.hpp"
#include "common/text.hpp"

namespace moat::filters::attachments {
namespace {

// libmagic's MIME type, as two readings. libmagic tries its binary tests
// (magic numbers) first, then, for data that looks like text, its text tests
// (file(1)'s ascmagic: some 400 patterns, many of them regular expressions
// over the text). Mail parts are nearly all text, and the text tests were
// three quarters of the time: 1.6 ms a part with them, 0.44 ms without (the
// leaves of 300 SpamAssassin corpus messages). The reading without them
// (MAGIC_NO_CHECK_TEXT) names the same type as the full one whenever it
// names one at all, as every step before the text tests is the same; where
// it finds nothing ("application/octet-stream") the full reading runs only
// if its answer can matter (text_matters). A handle of each per thread:
// magic_t is not thread-safe, and loading the database costs milliseconds.
constexpr std::string_view kUnknownType = "application/octet-stream";

class Magic {
 public:
  explicit Magic(int flags) : m_(magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR | flags)) {
    if (m_ && magic_load(m_, nullptr) != 0) {
      magic_close(m_);
      m_ = nullptr;
    }
  }
  ~Magic() {
    if (m_) magic_close(m_);
  }
  Magic(const Magic&) = delete;
  Magic& operator=(const Magic&) = delete;
  std::string type(std::string_view data) {
    if (!m_ || data.empty()) return {};
    const char* t = magic_buffer(m_, data.data(), data.size());
    return t ? lower(t) : std::string();
  }

 private:
  magic_t m_;
};

std::string magic_type(std::string_view data, bool full_if_unknown) {
  static thread_local Magic binary(MAGIC_NO_CHECK_TEXT);
  std::string t = binary.type(data);
  if (t != kUnknownType || !full_if_unknown) return t;
  static thread_local Magic full(0);
  return full.type(data);
}

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;

}  // namespace

bool is_archive_type(std::string_view t) {
  static constexpr std::string_view kTypes[] = {
      "application/zip", "application/x-zip-compressed", "application/x-7z-compressed", "application/x-rar",
      "application/vnd.rar", "application/x-tar", "application/gzip", "application/x-gzip", "application/x-bzip2",
      "application/x-xz", "application/vnd.ms-cab-compressed", "application/x-arj", "application/x-cpio",
      "application/x-iso9660-image", "application/x-lzh-compressed", "application/x-lzip", "application/zstd",
      "application/x-lzma", "application/x-compress"};
  return std::find(std::begin(kTypes), std::end(kTypes), t) != std::end(kTypes);
}

bool plain_text(std::string_view data) {
  // A byte table, so the loop has no branch per byte worth predicting.
  static constexpr auto kText = [] {
    std::array<bool, 256> t{};
    for (int c = 0x20; c < 256; ++c) t[std::size_t(c)] = true;
    for (unsigned char c : {'\t', '\n', '\f', '\r', '\x1b'}) t[c] = true;  // ESC: ISO-2022-JP text
    return t;
  }();
  bool ok = true;
  for (unsigned char c : data) ok &= kText[c];
  return ok;
}

namespace {

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
      : policy_(p), limits_(l), out_(out), text_matters_(text_matters(p)) {}

  void part(const Leaf& part) {
    std::string name = clean_name(part.filename);
    std::string shown = name.empty() ? "(unnamed " + part.content_type + ")" : name;
    if (!name.empty()) names(name, shown, kBlockedExt);
    if (part.body.empty() || skip_magic(part.body)) return;
    std::string type = magic_type(part.body, text_matters_);
    if (listed(policy_.blocked_types, type)) add(kBlockedType, shown + " is " + type);
    if (is_archive_type(type)) {
      budget_ = limits_.max_total_bytes;
      look_inside(part.body, shown, 1);
    }
  }

 private:
  // Most mail parts are text; libmagic's binary tests cost ~0.4 ms a part.
  bool skip_magic(std::string_view body) const { return !text_matters_ && plain_text(body); }

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
      if (body.empty() || skip_magic(body)) continue;
      std::string type = magic_type(body, text_matters_);
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
  const bool text_matters_;
  std::size_t budget_ = 0;
};

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

std::string true_type(std::string_view data) { return magic_type(data, true); }

std::string binary_type(std::string_view data) { return magic_type(data, false); }

// Types only libmagic's binary tests name: the default blocked types and the
// archives. No test of its text set names one (`file --list`, libmagic 5.44,
// lists both sets), and the unit tests check that both readings agree on
// Debian's clamav-testfiles and a sample of the SpamAssassin corpus. A policy
// that blocks any other type (a script, text/html, application/octet-stream
// itself) gets the full reading.
bool text_matters(const config::AttachmentPolicy& p) {
  static const std::vector<std::string> binary_only = config::default_blocked_types();
  return std::any_of(p.blocked_types.begin(), p.blocked_types.end(), [](const std::string& t) {
    return std::find(binary_only.begin(), binary_only.end(), t) == binary_only.end() && !is_archive_type(t);
  });
}

std::vector<Finding> check(const std::vector<Leaf>& parts, const config::AttachmentPolicy& policy,
                           const ArchiveLimits& limits) {
  std::vector<Finding> out;
  Checker c(policy, limits, out);
  for (const auto& p : parts) c.part(p);
  return out;
}

asio::awaitable<std::shared_ptr<const Leaves>> shared_leaves(ScanContext& ctx, const LeafLimits& limits,
                                                             boost::asio::thread_pool* blocking) {
  if (auto done = ctx.shared<Leaves>()) co_return done;
  // The shared parse is made (or taken) here, on the session's side, and
  // only read from the pool.
  const mime::Message* tree = &ctx.mime();
  const std::string_view message = ctx.message;
  auto decode = [message, tree, &limits] { return std::make_shared<const Leaves>(collect_leaves(message, *tree, limits)); };
  std::shared_ptr<const Leaves> leaves;
  if (blocking) leaves = co_await run_blocking(*blocking, decode);
  else leaves = decode();
  ctx.share(leaves);
  co_return leaves;
}

AttachmentsFilter::AttachmentsFilter(const config::Config& cfg, boost::asio::thread_pool* blocking)
    : settings_(cfg.attachments), extract_(leaf_limits(cfg.limits.message_size)), blocking_(blocking) {
  archive_.depth = settings_.archive_depth;
  archive_.max_entries = settings_.max_archive_entries;
}

AttachmentsFilter::Scanned AttachmentsFilter::scan(const ScanContext& ctx, const mime::Message& tree,
                                                   std::shared_ptr<const Leaves> leaves) const {
  if (!leaves) leaves = std::make_shared<const Leaves>(collect_leaves(ctx.message, tree, extract_));
  std::vector<const config::AttachmentPolicy*> policies;
  for (const auto& r : ctx.envelope.recipients) {
    const auto* p = &settings_.for_domain(domain_of(r.address));
    if (std::find(policies.begin(), policies.end(), p) == policies.end()) policies.push_back(p);
  }
  if (policies.empty()) policies.push_back(&settings_.policy);
  std::vector<Finding> out;
  if (!leaves->limit.empty()) out.push_back({std::string(kMimeLimit), leaves->limit});
  for (const auto* p : policies)
    for (auto& f : check(leaves->parts, *p, archive_))
      if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(std::move(f));
  return {std::move(leaves), std::move(out)};
}

asio::awaitable<Status> AttachmentsFilter::run(Phase, ScanContext& ctx) {
  // Decoding (when the antivirus has not), libmagic and libarchive are CPU
  // work on hostile bytes: off the I/O threads, in one trip to the pool.
  // The shared parse is made (or taken) here, on the session's side, and
  // only read from the pool.
  const mime::Message* tree = &ctx.mime();
  auto job = [this, &ctx, tree, leaves = ctx.shared<Leaves>()] { return scan(ctx, *tree, leaves); };
  Scanned scanned;
  if (blocking_) scanned = co_await run_blocking(*blocking_, job);
  else scanned = job();
  ctx.share(std::move(scanned.leaves));
  // One symbol per kind (details joined), so several findings do not add up.
  std::vector<Finding> merged;
  for (auto& f : scanned.found) {
    auto it = std::find_if(merged.begin(), merged.end(), [&](const Finding& m) { return m.symbol == f.symbol; });
    if (it == merged.end()) merged.push_back(std::move(f));
    else it->detail += "; " + f.detail;
  }
  for (auto& f : merged) ctx.add(std::move(f.symbol), safe(f.detail));
  co_return Status{};
}

}  // namespace moat::filters::attachments

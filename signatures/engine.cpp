// libclamav adapter (see engine.hpp). The one place that includes clamav.h.
#include "signatures/engine.hpp"

#include <clamav.h>

#include <mutex>

namespace moat::signatures {
namespace fs = std::filesystem;
namespace {

Status init_once() {
  static std::once_flag once;
  static cl_error_t rc = CL_SUCCESS;
  std::call_once(once, [] { rc = cl_init(CL_INIT_DEFAULT); });
  if (rc != CL_SUCCESS) return Error{Errc::TempFailure, std::string("cl_init: ") + cl_strerror(rc)};
  return {};
}

bool is_db_file(const fs::path& p) {
  static constexpr std::string_view kExt[] = {".cvd", ".cld", ".cud", ".hdb", ".hsb", ".mdb", ".msb", ".ndb",
                                              ".ldb", ".idb", ".cdb", ".fp",  ".sfp", ".ign", ".ign2", ".ftm",
                                              ".pdb", ".gdb", ".wdb", ".cbc", ".cat", ".crb", ".imp", ".yar", ".yara"};
  auto ext = p.extension().string();
  for (auto e : kExt)
    if (ext == e) return true;
  return false;
}

// Every limit, explicitly (SECURITY.md promise 2 and 3).
Status set_limits(cl_engine* e, const Limits& l) {
  struct U64 { cl_engine_field f; std::uint64_t v; };
  const U64 nums[] = {
      {CL_ENGINE_MAX_SCANSIZE, l.max_scan_size},
      {CL_ENGINE_MAX_FILESIZE, l.max_file_size},
      {CL_ENGINE_MAX_RECURSION, l.max_recursion},
      {CL_ENGINE_MAX_FILES, l.max_files},
      {CL_ENGINE_MAX_EMBEDDEDPE, l.max_embedded_pe},
      {CL_ENGINE_MAX_HTMLNORMALIZE, l.max_html_normalize},
      {CL_ENGINE_MAX_HTMLNOTAGS, l.max_html_notags},
      {CL_ENGINE_MAX_SCRIPTNORMALIZE, l.max_script_normalize},
      {CL_ENGINE_MAX_ZIPTYPERCG, l.max_zip_type_rcg},
      {CL_ENGINE_MAX_PARTITIONS, l.max_partitions},
      {CL_ENGINE_MAX_ICONSPE, l.max_icons_pe},
      {CL_ENGINE_MAX_RECHWP3, l.max_rec_hwp3},
      {CL_ENGINE_MAX_SCANTIME, l.max_scan_time_ms},
      {CL_ENGINE_PCRE_MATCH_LIMIT, l.pcre_match_limit},
      {CL_ENGINE_PCRE_RECMATCH_LIMIT, l.pcre_recmatch_limit},
      {CL_ENGINE_PCRE_MAX_FILESIZE, l.pcre_max_file_size},
  };
  for (const auto& [field, value] : nums)
    if (cl_error_t rc = cl_engine_set_num(e, field, static_cast<long long>(value)); rc != CL_SUCCESS)
      return Error{Errc::Invalid, std::string("cl_engine_set_num: ") + cl_strerror(rc)};
  return {};
}

cl_scan_options scan_options() {
  cl_scan_options o{};
  o.general = CL_SCAN_GENERAL_HEURISTICS;
  o.parse = ~0u;  // every parser: archives, mail, OLE2, PDF, PE, HTML, ...
  // A file over a limit is reported, not passed as clean (ClamAV AlertExceedsMax).
  o.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX | CL_SCAN_HEURISTIC_BROKEN;
  return o;
}

// libclamav 1.4 leaves the scan's virname NULL for heuristic alerts (the
// limit ones among them) unless a virus-found callback is registered; the
// callback also hands the name over through the scan's context.
void on_found(int, const char* virname, void* context) {
  if (context && virname) *static_cast<std::string*>(context) = virname;
}

}  // namespace

bool is_limit_name(std::string_view s) { return s.starts_with("Heuristics.Limits.Exceeded"); }

bool has_databases(const fs::path& dir) {
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (is_db_file(it->path())) return true;
  return false;
}

Result<std::shared_ptr<const Engine>> Engine::load(const std::vector<fs::path>& dirs, const Limits& limits,
                                                   const fs::path& tmpdir) {
  if (auto st = init_once(); !st) return st.error();
  std::shared_ptr<Engine> e(new Engine());
  e->engine_ = cl_engine_new();
  if (!e->engine_) return Error{Errc::TempFailure, "cl_engine_new failed"};
  if (auto st = set_limits(e->engine_, limits); !st) return st.error();
  if (!tmpdir.empty()) cl_engine_set_str(e->engine_, CL_ENGINE_TMPDIR, tmpdir.c_str());
  cl_engine_set_clcb_virus_found(e->engine_, on_found);
  for (const auto& d : dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) return Error{Errc::Invalid, d.string() + ": not a directory"};
    unsigned n = 0;
    if (cl_error_t rc = cl_load(d.c_str(), e->engine_, &n, CL_DB_STDOPT); rc != CL_SUCCESS)
      return Error{Errc::Invalid, d.string() + ": " + cl_strerror(rc)};
    e->signatures_ += n;
  }
  if (e->signatures_ == 0) return Error{Errc::Invalid, "no signatures loaded"};
  if (cl_error_t rc = cl_engine_compile(e->engine_); rc != CL_SUCCESS)
    return Error{Errc::Invalid, std::string("cl_engine_compile: ") + cl_strerror(rc)};
  return std::shared_ptr<const Engine>(std::move(e));
}

Engine::~Engine() {
  if (engine_) cl_engine_free(engine_);
}

ScanResult Engine::scan(std::string_view data, std::string_view name) const {
  cl_fmap_t* map = cl_fmap_open_memory(data.data(), data.size());
  if (!map) return {Outcome::Error, "cl_fmap_open_memory failed"};
  cl_scan_options opts = scan_options();
  const char* virname = nullptr;
  unsigned long scanned = 0;
  // The name is only a hint for ClamAV's logs; no file is opened by it.
  std::string hint(name.empty() ? "item" : name);
  std::string found;
  cl_error_t rc = cl_scanmap_callback(map, hint.c_str(), &virname, &scanned, engine_, &opts, &found);
  cl_fmap_close(map);
  switch (rc) {
    case CL_CLEAN: return {Outcome::Clean, {}};
    case CL_VIRUS: {
      std::string v = virname ? virname : !found.empty() ? found : "Unknown";
      return {is_limit_name(v) ? Outcome::LimitExceeded : Outcome::Virus, v};
    }
    // Limits reported as errors rather than heuristics: still a verdict.
    case CL_ETIMEOUT: return {Outcome::LimitExceeded, "Heuristics.Limits.Exceeded.MaxScanTime"};
    case CL_EMAXREC: return {Outcome::LimitExceeded, "Heuristics.Limits.Exceeded.MaxRecursion"};
    case CL_EMAXSIZE: return {Outcome::LimitExceeded, "Heuristics.Limits.Exceeded.MaxScanSize"};
    case CL_EMAXFILES: return {Outcome::LimitExceeded, "Heuristics.Limits.Exceeded.MaxFiles"};
    default: return {Outcome::Error, std::string("scan error: ") + cl_strerror(rc)};
  }
}

Holder::Holder(std::vector<fs::path> dirs, Limits limits, fs::path tmpdir)
    : dirs_(std::move(dirs)), limits_(limits), tmpdir_(std::move(tmpdir)) {}

Status Holder::reload() {
  auto e = Engine::load(dirs_, limits_, tmpdir_);
  if (!e) return e.error();
  std::lock_guard lk(mu_);
  engine_ = std::move(*e);
  return {};
}

std::shared_ptr<const Engine> Holder::current() const {
  std::lock_guard lk(mu_);
  return engine_;
}

fs::file_time_type Holder::newest_change() const {
  fs::file_time_type newest{};
  std::error_code ec;
  for (const auto& d : dirs_) {
    newest = std::max(newest, fs::last_write_time(d, ec));
    for (auto it = fs::directory_iterator(d, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      newest = std::max(newest, fs::last_write_time(it->path(), ec));
  }
  return newest;
}

}  // namespace moat::signatures

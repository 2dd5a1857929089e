// ClamAV engine wrapper for moat-scand (the only libclamav user): loads the
// signature directories into a compiled cl_engine with every CL_ENGINE_MAX_*
// limit set, scans memory buffers, and swaps in a freshly loaded engine
// atomically so a reload never stops the scans in flight (they keep the old
// engine until they finish; the last one frees it).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

struct cl_engine;

namespace moat::signatures {

// libclamav's limits. Defaults follow clamd.conf(5); moat never leaves one at
// libclamav's built-in value, so a build with other defaults cannot widen them.
struct Limits {
  std::uint64_t max_scan_size = 100u << 20;      // bytes read from one item, nested content included
  std::uint64_t max_file_size = 25u << 20;       // largest file (or embedded file) scanned
  std::uint32_t max_recursion = 17;              // nesting of archives / embedded files
  std::uint32_t max_files = 10000;               // files inside one archive
  std::uint32_t max_scan_time_ms = 20000;        // per item
  std::uint64_t max_embedded_pe = 10u << 20;
  std::uint64_t max_html_normalize = 10u << 20;
  std::uint64_t max_html_notags = 2u << 20;
  std::uint64_t max_script_normalize = 5u << 20;
  std::uint64_t max_zip_type_rcg = 1u << 20;
  std::uint32_t max_partitions = 50;
  std::uint32_t max_icons_pe = 100;
  std::uint32_t max_rec_hwp3 = 16;
  std::uint64_t pcre_match_limit = 100000;
  std::uint64_t pcre_recmatch_limit = 2000;
  std::uint64_t pcre_max_file_size = 100u << 20;
};

enum class Outcome : std::uint8_t { Clean, Virus, LimitExceeded, Error };

struct ScanResult {
  Outcome outcome = Outcome::Clean;
  std::string name;  // signature, or the limit / error that was hit
};

// True for the names libclamav gives limit hits with CL_SCAN_HEURISTIC_EXCEEDS_MAX
// ("Heuristics.Limits.Exceeded.MaxFileSize", ...).
bool is_limit_name(std::string_view signature);

class Engine {
 public:
  // Loads every database file of each directory (ClamAV formats: .cvd .cld
  // .hdb .hsb .ndb .ldb ...). A directory that does not exist is an error;
  // loading no signature at all is an error too (an empty engine passes
  // everything, which is failing open).
  static Result<std::shared_ptr<const Engine>> load(const std::vector<std::filesystem::path>& dirs,
                                                   const Limits& limits, const std::filesystem::path& tmpdir = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Thread-safe: a compiled engine may be shared by concurrent scans.
  ScanResult scan(std::string_view data, std::string_view name) const;
  unsigned signatures() const { return signatures_; }

 private:
  Engine() = default;
  cl_engine* engine_ = nullptr;
  unsigned signatures_ = 0;
};

// The engine in use; reload() builds a new one off to the side and swaps it
// in only when it loaded whole, so a broken update keeps the old signatures.
class Holder {
 public:
  Holder(std::vector<std::filesystem::path> dirs, Limits limits, std::filesystem::path tmpdir = {});
  Status reload();
  std::shared_ptr<const Engine> current() const;
  // Newest modification time of the database directories and their files,
  // for the periodic self-check (clamd SelfCheck).
  std::filesystem::file_time_type newest_change() const;
  const std::vector<std::filesystem::path>& dirs() const { return dirs_; }

 private:
  std::vector<std::filesystem::path> dirs_;
  Limits limits_;
  std::filesystem::path tmpdir_;
  mutable std::mutex mu_;
  std::shared_ptr<const Engine> engine_;
};

// Default places: the system ClamAV database directory when it holds any
// database (freshclam's /var/lib/clamav).
bool has_databases(const std::filesystem::path& dir);

}  // namespace moat::signatures

// DMARC aggregate report data (RFC 7489 §7.2, appendix C "row"): one row per
// day, source IP, From domain, disposition and authentication outcome, with
// a message count. Kept in SQLite under data_dir/db/dmarc.sqlite; sending
// the reports is a later step. Every call blocks: run it on the blocking pool.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/sqlite.hpp"

namespace moat::filters::dmarc {

struct ReportRow {
  std::string day;            // "2026-11-27" (UTC)
  std::string source_ip;
  std::string header_from;
  std::string policy;         // published p/sp/np that applied
  std::string disposition;    // none | quarantine | reject (after pct and overrides)
  std::string dkim;           // pass | fail (aligned DKIM)
  std::string dkim_domains;   // space-separated d= of the DKIM results seen
  std::string spf;            // pass | fail (aligned SPF)
  std::string spf_domain;
};

class ReportStore {
 public:
  static Result<std::unique_ptr<ReportStore>> open(const std::filesystem::path& file);
  ReportStore(const ReportStore&) = delete;
  ReportStore& operator=(const ReportStore&) = delete;

  Status add(const std::vector<ReportRow>& rows);  // count += 1 for each row, in one transaction
  Result<std::vector<std::pair<ReportRow, unsigned>>> rows();  // all rows, for read-outs and tests

 private:
  explicit ReportStore(sqlite::Db db) : db_(std::move(db)) {}
  std::mutex mu_;
  sqlite::Db db_;  // the upsert is a cached statement: compiling it per message showed in bench/auth's profile
};

}  // namespace moat::filters::dmarc

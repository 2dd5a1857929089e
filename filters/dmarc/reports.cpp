// SQLite store of DMARC aggregate report data (see reports.hpp).
#include "filters/dmarc/reports.hpp"

#include <sqlite3.h>

namespace moat::filters::dmarc {
namespace {

// synchronous=NORMAL: aggregate counts are statistics, not mail; an fsync of
// the WAL per message (the default, FULL) halved the throughput of a gateway
// running DMARC (bench/auth). A power loss may lose the last few counts.
constexpr const char* kSchema =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS dmarc_rows ("
    " day TEXT NOT NULL, source_ip TEXT NOT NULL, header_from TEXT NOT NULL, policy TEXT NOT NULL,"
    " disposition TEXT NOT NULL, dkim TEXT NOT NULL, dkim_domains TEXT NOT NULL, spf TEXT NOT NULL,"
    " spf_domain TEXT NOT NULL, count INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (day, source_ip, header_from, policy, disposition, dkim, dkim_domains, spf, spf_domain));";

constexpr const char* kInsert =
    "INSERT INTO dmarc_rows VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,1)"
    " ON CONFLICT DO UPDATE SET count = count + 1";

Error db_error(sqlite3* db, const std::string& what) {
  return Error{Errc::IoError, what + ": " + (db ? sqlite3_errmsg(db) : "out of memory")};
}

}  // namespace

Result<std::unique_ptr<ReportStore>> ReportStore::open(const std::filesystem::path& file) {
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    Error e = db_error(db, file.string());
    sqlite3_close(db);
    return e;
  }
  sqlite3_busy_timeout(db, 2000);
  if (sqlite3_exec(db, kSchema, nullptr, nullptr, nullptr) != SQLITE_OK) {
    Error e = db_error(db, file.string());
    sqlite3_close(db);
    return e;
  }
  sqlite3_stmt* insert = nullptr;
  if (sqlite3_prepare_v2(db, kInsert, -1, &insert, nullptr) != SQLITE_OK) {
    Error e = db_error(db, file.string());
    sqlite3_close(db);
    return e;
  }
  return std::unique_ptr<ReportStore>(new ReportStore(db, insert));
}

ReportStore::~ReportStore() {
  sqlite3_finalize(insert_);
  sqlite3_close(db_);
}

Status ReportStore::add(const std::vector<ReportRow>& rows) {
  std::lock_guard lock(mu_);
  if (sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) return db_error(db_, "dmarc report");
  for (const auto& r : rows) {
    const std::string* vals[] = {&r.day, &r.source_ip, &r.header_from, &r.policy, &r.disposition,
                                 &r.dkim, &r.dkim_domains, &r.spf, &r.spf_domain};
    for (int i = 0; i < 9; ++i)
      sqlite3_bind_text(insert_, i + 1, vals[i]->c_str(), int(vals[i]->size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(insert_);
    sqlite3_reset(insert_);  // ready for the next row; bindings are all replaced then
    if (rc != SQLITE_DONE) {
      Error e = db_error(db_, "dmarc report");
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return e;
    }
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    Error e = db_error(db_, "dmarc report");
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return e;
  }
  return {};
}

Result<std::vector<std::pair<ReportRow, unsigned>>> ReportStore::rows() {
  std::lock_guard lock(mu_);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT * FROM dmarc_rows ORDER BY day, header_from, source_ip", -1, &st, nullptr) !=
      SQLITE_OK)
    return db_error(db_, "dmarc report");
  std::vector<std::pair<ReportRow, unsigned>> out;
  auto col = [&](int i) {
    auto p = sqlite3_column_text(st, i);
    return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
  };
  while (sqlite3_step(st) == SQLITE_ROW) {
    ReportRow r{col(0), col(1), col(2), col(3), col(4), col(5), col(6), col(7), col(8)};
    out.emplace_back(std::move(r), unsigned(sqlite3_column_int(st, 9)));
  }
  sqlite3_finalize(st);
  return out;
}

}  // namespace moat::filters::dmarc

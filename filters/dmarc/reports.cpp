// SQLite store of DMARC aggregate report data (see reports.hpp), on the
// common SQLite adapter (common/sqlite.hpp).
#include "filters/dmarc/reports.hpp"

namespace moat::filters::dmarc {
namespace {

// synchronous=NORMAL: aggregate counts are statistics, not mail; an fsync of
// the WAL per message (the default, FULL) halved the throughput of a gateway
// running DMARC (bench/auth). A power loss may lose the last few counts.
constexpr const char* kPragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;";

constexpr const char* kSchema[] = {
    "CREATE TABLE IF NOT EXISTS dmarc_rows ("
    " day TEXT NOT NULL, source_ip TEXT NOT NULL, header_from TEXT NOT NULL, policy TEXT NOT NULL,"
    " disposition TEXT NOT NULL, dkim TEXT NOT NULL, dkim_domains TEXT NOT NULL, spf TEXT NOT NULL,"
    " spf_domain TEXT NOT NULL, count INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (day, source_ip, header_from, policy, disposition, dkim, dkim_domains, spf, spf_domain));",
};

constexpr const char* kInsert =
    "INSERT INTO dmarc_rows VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,1)"
    " ON CONFLICT DO UPDATE SET count = count + 1";

}  // namespace

Result<std::unique_ptr<ReportStore>> ReportStore::open(const std::filesystem::path& file) {
  sqlite::Options opts;
  opts.label = "dmarc report";
  opts.pragmas = kPragmas;
  opts.migrations = kSchema;
  auto db = sqlite::Db::open(file, std::move(opts));
  if (!db) return db.error();
  return std::unique_ptr<ReportStore>(new ReportStore(std::move(*db)));
}

Status ReportStore::add(const std::vector<ReportRow>& rows) {
  std::lock_guard lock(mu_);
  auto tx = db_.transaction();
  if (!tx) return tx.error();
  for (const auto& r : rows) {
    auto st = db_.cached(kInsert);
    st.bind(1, r.day).bind(2, r.source_ip).bind(3, r.header_from).bind(4, r.policy).bind(5, r.disposition);
    st.bind(6, r.dkim).bind(7, r.dkim_domains).bind(8, r.spf).bind(9, r.spf_domain);
    if (auto done = st.run(); !done) return done;
  }
  return tx->commit();
}

Result<std::vector<std::pair<ReportRow, unsigned>>> ReportStore::rows() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT * FROM dmarc_rows ORDER BY day, header_from, source_ip");
  std::vector<std::pair<ReportRow, unsigned>> out;
  auto read = st.each([&] {
    ReportRow r{st.text(0), st.text(1), st.text(2), st.text(3), st.text(4),
                st.text(5), st.text(6), st.text(7), st.text(8)};
    out.emplace_back(std::move(r), unsigned(st.integer(9)));
  });
  if (!read) return read.error();
  return out;
}

}  // namespace moat::filters::dmarc

// See store.hpp. Every statement binds its parameters; the schema is created
// by numbered migrations (sqlite::Db::migrate, one IMMEDIATE transaction
// each), so moatd and moatctl opening a fresh file together cannot both
// apply one.
#include "common/file_io.hpp"
#include "quarantine/store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <set>

#include "common/failpoint.hpp"
#include "common/log.hpp"

namespace moat::quarantine {
namespace fs = std::filesystem;

namespace {

// Migration i takes user_version i to i+1. Append only.
constexpr std::array<const char*, 1> kMigrations{
    "CREATE TABLE messages ("
    "  id TEXT PRIMARY KEY,"
    "  kind INTEGER NOT NULL,"
    "  time INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL,"
    "  sender TEXT NOT NULL,"
    "  recipients TEXT NOT NULL,"     // one address per line
    "  from_field TEXT NOT NULL,"
    "  subject TEXT NOT NULL,"
    "  score REAL NOT NULL,"
    "  symbols TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  client TEXT NOT NULL,"
    "  auth_domain TEXT NOT NULL,"
    "  size INTEGER NOT NULL"
    ");"
    "CREATE INDEX messages_time ON messages(time);"
    "CREATE INDEX messages_expires ON messages(expires);"
    "CREATE TABLE sender_lists ("
    "  domain TEXT PRIMARY KEY COLLATE NOCASE,"
    "  kind INTEGER NOT NULL,"
    "  added INTEGER NOT NULL"
    ");",
};

Error io_error(std::string_view what, int e) {
  return Error{(e == ENOSPC || e == EDQUOT) ? Errc::DiskFull : Errc::IoError,
               "quarantine: " + std::string(what) + ": " + std::strerror(e)};
}

std::string join_lines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : "\n") + s;
  return out;
}

std::vector<std::string> split_lines(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    auto nl = s.find('\n');
    out.emplace_back(s.substr(0, nl));
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
  return out;
}

constexpr const char* kColumns =
    "id, kind, time, expires, sender, recipients, from_field, subject, score, symbols, reason, client, "
    "auth_domain, size";

Entry read_entry(const sqlite::Stmt& st) {
  Entry e;
  e.id = st.text(0);
  e.kind = st.integer(1) == 1 ? Kind::Rejected : Kind::Quarantined;
  e.time = st.integer(2);
  e.expires = st.integer(3);
  e.sender = st.text(4);
  e.recipients = split_lines(st.text(5));
  e.from = st.text(6);
  e.subject = st.text(7);
  e.score = st.real(8);
  e.symbols = st.text(9);
  e.reason = st.text(10);
  e.client = st.text(11);
  e.auth_domain = st.text(12);
  e.size = std::uint64_t(st.integer(13));
  return e;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

}  // namespace

std::string_view kind_name(Kind k) { return k == Kind::Rejected ? "reject" : "quarantine"; }
std::string_view list_name(ListKind k) { return k == ListKind::Block ? "block" : "allow"; }

bool valid_id(std::string_view id) {
  if (id.size() < 10 || id.size() > 20) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return false;
  return true;
}

Store::Store(fs::path dir, fs::path db_file) : dir_(std::move(dir)), db_file_(std::move(db_file)) {}

Store::~Store() = default;

Status Store::ensure_open() {
  if (db_.is_open()) return {};
  sqlite::Options o;
  o.label = "quarantine database";
  o.file_mode = 0600;  // subjects and senders of held mail are private
  o.pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;";
  o.migrations = kMigrations;
  auto db = sqlite::Db::open(db_file_, std::move(o));
  if (!db) return db.error();
  db_ = std::move(*db);
  return {};
}

Status Store::open(bool recover_files) {
  std::error_code ec;
  for (const char* sub : {"tmp", "msg"}) {
    fs::create_directories(dir_ / sub, ec);
    if (ec) return io_error((dir_ / sub).string(), ec.value());
    fs::permissions(dir_ / sub, fs::perms::owner_all, ec);
  }
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st;
  return recover_files ? recover() : Status{};
}

Status Store::recover() {
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir_ / "tmp", ec)) fs::remove(f.path(), ec);
  std::set<std::string> rows;
  {
    auto q = db_.prepare("SELECT id FROM messages");
    if (auto st = q.each([&] { rows.insert(q.text(0)); }); !st) return st;
  }
  std::set<std::string> files;
  for (const auto& f : fs::directory_iterator(dir_ / "msg", ec)) {
    std::string id = f.path().filename().string();
    if (rows.count(id)) {
      files.insert(id);
      continue;
    }
    // Renamed into msg/ but the row never committed: no 250 was sent.
    log::warning("quarantine: " + id + ": file without a database row removed (never acknowledged)");
    fs::remove(f.path(), ec);
  }
  for (const auto& id : rows) {
    if (files.count(id)) continue;
    log::warning("quarantine: " + id + ": row without a file dropped");
    if (auto st = db_.cached("DELETE FROM messages WHERE id = ?1").bind(1, id).run(); !st) return st;
  }
  return {};
}

Status Store::write_file(const Entry& e, std::string_view bytes, bool durable) {
  auto tmp = dir_ / "tmp" / e.id;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("create " + tmp.string(), errno);
  Status st = write_all(fd, bytes);
  if (st && failpoint::hit("quarantine.write")) st = Error{Errc::IoError, "quarantine: write: injected failure"};
  if (st && durable && ::fdatasync(fd) != 0) st = io_error("fdatasync", errno);
  if (::close(fd) != 0 && st) st = io_error("close", errno);
  if (st && ::rename(tmp.c_str(), file(e.id).c_str()) != 0) st = io_error("rename into msg/", errno);
  if (st && durable) st = fsync_dir(dir_ / "msg");
  if (!st) {
    ::unlink(tmp.c_str());
    ::unlink(file(e.id).c_str());
  }
  return st;
}

Status Store::insert_row(const Entry& e, bool durable) {
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st;
  // Rejected copies need no fsync: the client still holds the message.
  if (!durable) (void)db_.exec("PRAGMA synchronous=NORMAL");
  auto st = db_.cached(
      "INSERT OR REPLACE INTO messages (id, kind, time, expires, sender, recipients, from_field, subject, score, "
      "symbols, reason, client, auth_domain, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
      "?13, ?14)");
  st.bind(1, e.id).bind(2, e.kind == Kind::Rejected ? 1 : 0).bind(3, e.time).bind(4, e.expires).bind(5, e.sender);
  st.bind(6, join_lines(e.recipients)).bind(7, e.from).bind(8, e.subject).bind(9, e.score).bind(10, e.symbols);
  st.bind(11, e.reason).bind(12, e.client).bind(13, e.auth_domain).bind(14, std::int64_t(e.size));
  Status done = st.run();
  if (!durable) (void)db_.exec("PRAGMA synchronous=FULL");
  return done;
}

Status Store::put(const Entry& e, std::string_view bytes, bool durable) {
  if (!valid_id(e.id)) return Error{Errc::Invalid, "quarantine: bad id"};
  if (auto st = write_file(e, bytes, durable); !st) return st;
  Status st = failpoint::hit("quarantine.before_row") ? Status(Errc::IoError, "quarantine: injected failure before the row")
                                                       : insert_row(e, durable);
  // No row, no 250: the file must not outlive the failure (recover() would drop it too).
  if (!st) ::unlink(file(e.id).c_str());
  return st;
}

Result<std::vector<Entry>> Store::list(std::size_t limit, std::optional<Kind> kind) {
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st.error();
  std::string sql = std::string("SELECT ") + kColumns + " FROM messages" + (kind ? " WHERE kind = ?1" : "") +
                    " ORDER BY time DESC, id DESC" + (limit ? " LIMIT " + std::to_string(limit) : "");
  auto q = db_.prepare(sql);
  if (kind) q.bind(1, *kind == Kind::Rejected ? 1 : 0);
  std::vector<Entry> out;
  if (auto st = q.each([&] { out.push_back(read_entry(q)); }); !st) return st.error();
  return out;
}

Result<Entry> Store::get(std::string_view id) {
  if (!valid_id(id)) return Error{Errc::Invalid, "invalid quarantine id"};
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st.error();
  static const std::string sql = std::string("SELECT ") + kColumns + " FROM messages WHERE id = ?1";
  auto q = db_.cached(sql);
  auto row = q.bind(1, id).step();
  if (!row) return row.error();
  if (!*row) return Error{Errc::NotFound, std::string(id) + ": not in quarantine"};
  return read_entry(q);
}

Result<std::string> Store::read(std::string_view id) {
  if (!valid_id(id)) return Error{Errc::Invalid, "invalid quarantine id"};
  auto p = file(id);
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Error{Errc::NotFound, std::string(id) + ": not in quarantine"};
    return io_error("open " + p.string(), errno);
  }
  auto out = read_all(fd);
  ::close(fd);
  if (!out) return Error{out.error().code, p.string() + ": " + out.error().detail};
  return out;
}

Status Store::remove(std::string_view id) {
  if (!valid_id(id)) return Error{Errc::Invalid, "invalid quarantine id"};
  {
    std::lock_guard lk(mu_);
    if (auto st = ensure_open(); !st) return st;
    if (auto st = db_.cached("DELETE FROM messages WHERE id = ?1").bind(1, id).run(); !st) return st;
    if (db_.changes() == 0) return Error{Errc::NotFound, std::string(id) + ": not in quarantine"};
  }
  // A crash here leaves a file without a row, which the next start removes.
  if (::unlink(file(id).c_str()) != 0 && errno != ENOENT) return io_error("unlink", errno);
  return {};
}

Result<std::size_t> Store::expire(std::int64_t now) {
  std::vector<std::string> ids;
  {
    std::lock_guard lk(mu_);
    if (auto st = ensure_open(); !st) return st.error();
    auto sel = db_.prepare("SELECT id FROM messages WHERE expires <= ?1");
    if (auto st = sel.bind(1, now).each([&] { ids.push_back(sel.text(0)); }); !st) return st.error();
    if (auto st = db_.prepare("DELETE FROM messages WHERE expires <= ?1").bind(1, now).run(); !st) return st.error();
  }
  for (const auto& id : ids)
    if (valid_id(id)) ::unlink(file(id).c_str());
  return ids.size();
}

Status Store::set_list(std::string_view domain, ListKind kind) {
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st;
  auto st = db_.prepare("INSERT OR REPLACE INTO sender_lists (domain, kind, added) VALUES (?1, ?2, strftime('%s','now'))");
  return st.bind(1, lower(domain)).bind(2, kind == ListKind::Block ? 1 : 0).run();
}

Status Store::unlist(std::string_view domain) {
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st;
  if (auto st = db_.prepare("DELETE FROM sender_lists WHERE domain = ?1").bind(1, lower(domain)).run(); !st) return st;
  if (db_.changes() == 0) return Error{Errc::NotFound, std::string(domain) + ": not listed"};
  return {};
}

Result<std::vector<ListEntry>> Store::lists() {
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st.error();
  auto q = db_.prepare("SELECT domain, kind, added FROM sender_lists ORDER BY domain");
  std::vector<ListEntry> out;
  auto st = q.each([&] {
    out.push_back(ListEntry{q.text(0), q.integer(1) == 1 ? ListKind::Block : ListKind::Allow, q.integer(2)});
  });
  if (!st) return st.error();
  return out;
}

Result<std::optional<ListKind>> Store::lookup(std::string_view domain) {
  if (domain.empty()) return std::optional<ListKind>();
  std::lock_guard lk(mu_);
  if (auto st = ensure_open(); !st) return st.error();
  std::string d = lower(domain);
  std::string_view rest = d;
  // mail.example.com, then example.com, then com: the most specific first.
  for (;;) {
    auto q = db_.cached("SELECT kind FROM sender_lists WHERE domain = ?1");
    auto row = q.bind(1, rest).step();
    if (!row) return row.error();
    if (*row) return std::optional<ListKind>(q.integer(0) == 1 ? ListKind::Block : ListKind::Allow);
    auto dot = rest.find('.');
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  return std::optional<ListKind>();
}

}  // namespace moat::quarantine

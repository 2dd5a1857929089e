// SQLite token store (see store.hpp), on the shared wrapper common/sqlite.
// Tokens are kept as their 64-bit hash (rspamd and bogofilter keep no text
// either), so the database holds no message content.
#include "filters/bayes/store.hpp"

#include <algorithm>
#include <array>
#include <map>
#include <utility>

namespace moat::filters::bayes {
namespace {

constexpr int kBusyTimeoutMs = 10000;

// Migration i takes user_version i to i+1; append only. IF NOT EXISTS: files
// made before versioning have these tables at version 0.
constexpr std::array<const char*, 3> kMigrations{
    "CREATE TABLE IF NOT EXISTS user(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
    " spam INTEGER NOT NULL DEFAULT 0, ham INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS token(uid INTEGER NOT NULL, hash INTEGER NOT NULL, spam INTEGER NOT NULL,"
    " ham INTEGER NOT NULL, atime INTEGER NOT NULL, PRIMARY KEY(uid, hash)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS seen(uid INTEGER NOT NULL, digest INTEGER NOT NULL, spam INTEGER NOT NULL,"
    " PRIMARY KEY(uid, digest)) WITHOUT ROWID;",
    // Revisions for the readers' in-memory copy (store.hpp): meta.gen goes
    // up by one per learn/unlearn, token.rev is the gen that last wrote it.
    "ALTER TABLE token ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX token_rev ON token(rev);"
    "CREATE TABLE meta(id INTEGER PRIMARY KEY CHECK (id = 0), gen INTEGER NOT NULL);"
    "INSERT INTO meta(id, gen) VALUES (0, 0);",
    // Compaction (Store::compact): the generation at which rows of zero
    // counts were last deleted; a copy older than it reloads whole.
    "ALTER TABLE meta ADD COLUMN floor INTEGER NOT NULL DEFAULT 0;",
};

// Readers map the file: their first refresh scans the whole token table,
// and mapped pages are the OS page cache every connection and process
// shares rather than a private copy per connection.
constexpr const char* kReadPragmas = "PRAGMA journal_mode=WAL; PRAGMA mmap_size=1073741824;";
constexpr std::size_t kIdleReaders = 8;

sqlite::Options options() {
  sqlite::Options o;
  o.label = "bayes db";
  o.errc = Errc::TempFailure;  // as before the wrapper: a database that cannot answer is a 451
  // NORMAL: a power loss may forget the last learned messages (WAL keeps
  // the file consistent); an fsync per learned message is not worth that.
  // A learned message touches ~600 rows spread over the whole table: a
  // 32 MiB page cache (the default is 2 MiB) keeps a bulk learn from
  // re-reading the pages it just wrote; it fills only as far as it is used.
  o.pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-32768;";
  o.busy_timeout_ms = kBusyTimeoutMs;
  o.migrations = kMigrations;
  return o;
}

// The user's id; -1 when unknown and not created.
Result<std::int64_t> user_id(sqlite::Db& db, std::string_view user, bool create) {
  auto q = db.cached("SELECT id FROM user WHERE name = ?1");
  auto row = q.bind(1, user).step();
  if (!row) return row.error();
  if (*row) return q.integer(0);
  if (!create) return std::int64_t{-1};
  if (auto st = db.cached("INSERT INTO user(name) VALUES (?1)").bind(1, user).run(); !st) return st.error();
  return db.last_insert_rowid();
}

// A deferred read transaction: one snapshot for all of a refresh's queries,
// so the generation read and the rows read belong together.
class ReadTx {
 public:
  explicit ReadTx(sqlite::Db& db) : db_(db), st_(db.exec("BEGIN")) {}
  ~ReadTx() {
    if (st_) (void)db_.exec("COMMIT");  // read only: nothing to lose, it only ends the snapshot
  }
  ReadTx(const ReadTx&) = delete;
  ReadTx& operator=(const ReadTx&) = delete;
  const Status& status() const { return st_; }

 private:
  sqlite::Db& db_;
  Status st_;
};

}  // namespace

std::string_view class_name(Class c) { return c == Class::Spam ? "spam" : "ham"; }

// A read connection for one call, handed back to the idle list after it.
class Store::Reader {
 public:
  Reader(Store& s, std::unique_ptr<sqlite::Db> db) : s_(s), db_(std::move(db)) {}
  ~Reader() { s_.give_back(std::move(db_)); }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;
  sqlite::Db& db() { return *db_; }

 private:
  Store& s_;
  std::unique_ptr<sqlite::Db> db_;
};

Store::Store(std::filesystem::path file) : file_(std::move(file)) {}

std::shared_ptr<Store> Store::shared(const std::filesystem::path& file) {
  static std::mutex mu;
  static std::map<std::filesystem::path, std::weak_ptr<Store>> stores;
  std::lock_guard lk(mu);
  std::erase_if(stores, [](const auto& kv) { return kv.second.expired(); });
  auto& slot = stores[file];
  auto store = slot.lock();
  if (!store) {
    store = std::make_shared<Store>(file);
    slot = store;
  }
  return store;
}

Store::~Store() = default;  // an unfinished batch is rolled back (batch_ goes before db_)

Status Store::open_locked() {
  if (db_.is_open()) return {};
  auto db = sqlite::Db::open(file_, options());
  if (!db) return db.error();
  db_ = std::move(*db);
  return {};
}

Result<std::unique_ptr<sqlite::Db>> Store::take_reader() {
  {
    std::lock_guard lk(readers_mu_);
    if (!readers_.empty()) {
      auto db = std::move(readers_.back());
      readers_.pop_back();
      return db;
    }
  }
  {
    std::lock_guard lk(mu_);  // the schema exists before any reader reads it
    if (auto st = open_locked(); !st) return st.error();
  }
  sqlite::Options o = options();
  o.pragmas = kReadPragmas;
  o.migrations = {};  // open_locked() ran them
  auto db = sqlite::Db::open(file_, std::move(o));
  if (!db) return db.error();
  return std::make_unique<sqlite::Db>(std::move(*db));
}

void Store::give_back(std::unique_ptr<sqlite::Db> db) {
  std::lock_guard lk(readers_mu_);
  if (readers_.size() < kIdleReaders) readers_.push_back(std::move(db));
}

// Adds dspam/dham to each token, never below zero, stamped with revision
// `rev`. A token that reaches zero in both classes keeps its row, so that
// readers' copies learn that it is gone (rows of zero count nothing);
// compact() deletes such rows later.
Status Store::adjust_locked(std::int64_t uid, std::span<const std::uint64_t> tokens, int dspam, int dham,
                            std::int64_t now, std::int64_t rev) {
  auto up = db_.cached(
      "INSERT INTO token(uid, hash, spam, ham, atime, rev) VALUES (?1, ?2, max(?3, 0), max(?4, 0), ?5, ?6) "
      "ON CONFLICT(uid, hash) DO UPDATE SET spam = max(spam + ?3, 0), ham = max(ham + ?4, 0), atime = ?5, "
      "rev = ?6");
  up.bind(1, uid).bind(3, dspam).bind(4, dham).bind(5, now).bind(6, rev);
  // In key order: neighbouring rows share B-tree pages.
  std::vector<std::uint64_t> sorted(tokens.begin(), tokens.end());
  std::sort(sorted.begin(), sorted.end(),
            [](std::uint64_t a, std::uint64_t b) { return std::int64_t(a) < std::int64_t(b); });
  for (auto h : sorted) {
    if (auto st = up.bind(2, static_cast<std::int64_t>(h)).run(); !st) return st;
    up.reset();
  }
  return {};
}

Result<std::int64_t> Store::bump_generation_locked() {
  if (auto st = db_.cached("UPDATE meta SET gen = gen + 1 WHERE id = 0").run(); !st) return st.error();
  auto q = db_.cached("SELECT gen FROM meta WHERE id = 0");
  auto row = q.step();
  if (!row) return row.error();
  if (!*row) return Error{Errc::TempFailure, "bayes db: the meta row is missing"};
  return q.integer(0);
}

Result<LearnResult> Store::learn(std::string_view user, std::uint64_t digest, std::span<const std::uint64_t> tokens,
                                 Class cls, std::int64_t now) {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  auto tx = db_.transaction();  // a savepoint inside a batch
  if (!tx) return tx.error();
  auto uid = user_id(db_, user, true);
  if (!uid) return uid.error();
  const bool spam = cls == Class::Spam;
  auto q = db_.cached("SELECT spam FROM seen WHERE uid = ?1 AND digest = ?2");
  auto row = q.bind(1, *uid).bind(2, static_cast<std::int64_t>(digest)).step();
  if (!row) return row.error();
  LearnResult result = LearnResult::Learned;
  int dspam = spam ? 1 : 0, dham = spam ? 0 : 1;
  if (*row) {
    if ((q.integer(0) != 0) == spam) return LearnResult::AlreadyLearned;
    result = LearnResult::Relearned;
    dspam = spam ? 1 : -1;
    dham = spam ? -1 : 1;
  }
  q.reset();
  auto gen = bump_generation_locked();
  if (!gen) return gen.error();
  if (auto st = adjust_locked(*uid, tokens, dspam, dham, now, *gen); !st) return st.error();
  auto u = db_.cached("UPDATE user SET spam = max(spam + ?2, 0), ham = max(ham + ?3, 0) WHERE id = ?1");
  if (auto st = u.bind(1, *uid).bind(2, dspam).bind(3, dham).run(); !st) return st.error();
  auto s = db_.cached(
      "INSERT INTO seen(uid, digest, spam) VALUES (?1, ?2, ?3) ON CONFLICT(uid, digest) DO UPDATE SET spam = ?3");
  if (auto st = s.bind(1, *uid).bind(2, static_cast<std::int64_t>(digest)).bind(3, spam ? 1 : 0).run(); !st)
    return st.error();
  if (auto st = tx->commit(); !st) return st.error();
  return result;
}

Result<bool> Store::unlearn(std::string_view user, std::uint64_t digest, std::span<const std::uint64_t> tokens) {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  auto tx = db_.transaction();
  if (!tx) return tx.error();
  auto uid = user_id(db_, user, false);
  if (!uid) return uid.error();
  if (*uid < 0) return false;
  auto q = db_.cached("SELECT spam FROM seen WHERE uid = ?1 AND digest = ?2");
  auto row = q.bind(1, *uid).bind(2, static_cast<std::int64_t>(digest)).step();
  if (!row) return row.error();
  if (!*row) return false;
  const bool spam = q.integer(0) != 0;
  q.reset();
  const int dspam = spam ? -1 : 0, dham = spam ? 0 : -1;
  auto gen = bump_generation_locked();
  if (!gen) return gen.error();
  if (auto st = adjust_locked(*uid, tokens, dspam, dham, 0, *gen); !st) return st.error();
  auto u = db_.cached("UPDATE user SET spam = max(spam + ?2, 0), ham = max(ham + ?3, 0) WHERE id = ?1");
  if (auto st = u.bind(1, *uid).bind(2, dspam).bind(3, dham).run(); !st) return st.error();
  auto d = db_.cached("DELETE FROM seen WHERE uid = ?1 AND digest = ?2");
  if (auto st = d.bind(1, *uid).bind(2, static_cast<std::int64_t>(digest)).run(); !st) return st.error();
  if (auto st = tx->commit(); !st) return st.error();
  return true;
}

// Deletes the rows that count nothing. Readers' copies learn of removed
// tokens from those rows (rev newer than the copy), so a copy that may not
// have seen one of them must not refresh by rev alone: the deletion bumps
// the generation and records it as meta.floor, and a copy older than the
// floor reloads whole (refresh()). One full reload per reader per
// compaction (~0.25 s CPU for 700,000 tokens) is the price.
Result<std::int64_t> Store::compact() {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st.error();
  auto tx = db_.transaction();
  if (!tx) return tx.error();
  if (auto st = db_.cached("DELETE FROM token WHERE spam = 0 AND ham = 0").run(); !st) return st.error();
  const std::int64_t removed = db_.changes();
  if (removed == 0) return removed;  // nothing gone: no reason to make every copy reload (tx rolls back)
  auto gen = bump_generation_locked();
  if (!gen) return gen.error();
  if (auto st = db_.cached("UPDATE meta SET floor = ?1 WHERE id = 0").bind(1, *gen).run(); !st) return st.error();
  if (auto st = tx->commit(); !st) return st.error();
  return removed;
}

// Reads, in one snapshot, the generation and what changed since the copy's:
// the user table whole (a few rows), the tokens whose rev is newer; or
// everything, on the first load and when a compaction deleted rows the copy
// may not have seen (its generation is older than meta.floor).
Status Store::refresh() {
  auto db = take_reader();
  if (!db) return db.error();
  Reader r(*this, std::move(*db));
  ReadTx tx(r.db());
  if (!tx.status()) return tx.status();
  auto g = r.db().cached("SELECT gen, floor FROM meta WHERE id = 0");
  auto row = g.step();
  if (!row) return row.error();
  const std::int64_t gen = *row ? g.integer(0) : 0;
  const std::int64_t floor = *row ? g.integer(1) : 0;
  g.reset();
  {
    std::shared_lock lk(cache_mu_);
    if (gen <= cache_gen_) return {};
  }
  std::unique_lock lk(cache_mu_);
  if (gen <= cache_gen_) return {};  // another thread refreshed meanwhile, from a snapshot as new or newer
  std::unordered_map<std::string, UserRow> users;
  auto u = r.db().cached("SELECT name, id, spam, ham FROM user");
  auto st = u.each([&] { users[u.text(0)] = UserRow{u.integer(1), Counts{u.integer(2), u.integer(3)}}; });
  if (!st) return st;
  // Rows of a generation newer than `gen` (a learn committed after our
  // snapshot began) are not visible here; they come with the next refresh.
  // A full load scans the table in key order; later ones take the few
  // new rows through the rev index.
  const bool full = cache_gen_ < 0 || cache_gen_ < floor;
  if (full) tokens_.clear();  // also drops the slots of tokens at zero counts
  auto t = full ? r.db().cached("SELECT uid, hash, spam, ham FROM token WHERE spam + ham > 0")
                : r.db().cached("SELECT uid, hash, spam, ham FROM token WHERE rev > ?1");
  if (!full) t.bind(1, cache_gen_);
  st = t.each([&] {
    tokens_.put(TokenCache::key(t.integer(0), static_cast<std::uint64_t>(t.integer(1))),
                Counts{t.integer(2), t.integer(3)});
  });
  if (!st) {
    tokens_.clear();  // part of a refresh applied: start over next time
    cache_gen_ = -1;
    return st;
  }
  users_ = std::move(users);
  cache_gen_ = gen;
  return {};
}

Result<Counts> Store::totals(std::string_view user) {
  if (auto st = refresh(); !st) return st.error();
  std::shared_lock lk(cache_mu_);
  auto it = users_.find(std::string(user));
  return it == users_.end() ? Counts{} : it->second.messages;
}

Result<std::vector<Counts>> Store::lookup(std::string_view user, std::span<const std::uint64_t> tokens) {
  std::vector<Counts> out(tokens.size());
  if (auto st = refresh(); !st) return st.error();
  std::shared_lock lk(cache_mu_);
  auto it = users_.find(std::string(user));
  if (it == users_.end()) return out;
  for (std::size_t i = 0; i < tokens.size(); ++i) out[i] = tokens_.find(TokenCache::key(it->second.id, tokens[i]));
  return out;
}

std::size_t Store::cached_tokens() {
  std::shared_lock lk(cache_mu_);
  return tokens_.size();
}

std::size_t Store::cached_bytes() {
  std::shared_lock lk(cache_mu_);
  return tokens_.bytes();
}

Result<std::vector<UserStats>> Store::stats() {
  auto db = take_reader();
  if (!db) return db.error();
  Reader r(*this, std::move(*db));
  std::vector<UserStats> out;
  auto q = r.db().prepare("SELECT name, spam, ham, (SELECT count(*) FROM token WHERE uid = user.id AND spam + ham > 0) FROM user ORDER BY name");
  auto st = q.each([&] { out.push_back(UserStats{q.text(0), Counts{q.integer(1), q.integer(2)}, q.integer(3)}); });
  if (!st) return st.error();
  return out;
}

Status Store::begin_batch() {
  std::lock_guard lk(mu_);
  if (auto st = open_locked(); !st) return st;
  if (batch_) return {};
  auto tx = db_.transaction();
  if (!tx) return tx.error();
  batch_.emplace(std::move(*tx));
  return {};
}

Status Store::end_batch() {
  std::lock_guard lk(mu_);
  if (!batch_) return {};
  Status st = batch_->commit();
  batch_.reset();
  return st;
}

}  // namespace moat::filters::bayes

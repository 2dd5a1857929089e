// One RAII adapter for SQLite, used by every embedded database (user
// directory, greylisting, quarantine index): opening a file (folders, mode,
// pragmas, busy timeout), prepared statements with bound parameters only,
// transaction guards, numbered schema migrations, and the single mapping
// from SQLite result codes to Errc. Every call blocks: run it on the
// blocking pool (common/blocking.hpp), never on an I/O thread.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/error.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace moat::sqlite {

struct Options {
  // Prefixes every error detail: "user database: database is locked (in: INSERT ...)".
  std::string label = "database";
  // Run once after opening, before anything else: "PRAGMA journal_mode=WAL;".
  // The first statement that reads the file, so a foreign file fails here.
  std::string pragmas;
  // How long a statement waits for another connection's lock before it
  // fails with SQLITE_BUSY (moatd and moatctl share these files).
  int busy_timeout_ms = 5000;
  // Non-zero: create the file with this mode before SQLite does, which would
  // use the umask (0600 for files holding hashes or private mail metadata).
  unsigned file_mode = 0;
  // Schema migrations run by open() after the pragmas (Db::migrate).
  std::span<const char* const> migrations;
  // When set, every failure is reported as this code instead of errc_of()'s,
  // for a component whose callers rely on one code (the directory's
  // DirectoryUnavailable). It must be a temporary code.
  std::optional<Errc> errc;
};

// The one mapping from a SQLite result code: BUSY/LOCKED (another connection
// held the lock past the busy timeout) → TempFailure, FULL → DiskFull,
// anything else (a damaged or foreign file too) → IoError. All temporary:
// a database that cannot answer never turns into a 5xx.
Errc errc_of(int rc);

// Bound as a BLOB, not TEXT.
struct Blob {
  std::string_view bytes;
};

struct Conn;  // the connection and its statement cache; stays put when a Db moves

// A prepared statement. Parameters bind by 1-based index, columns read by
// 0-based index. A failure to prepare or bind is kept and returned by the
// next step(), so call sites read as one chain.
class Stmt {
 public:
  Stmt(Stmt&& o) noexcept;
  Stmt& operator=(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();  // finalizes, or for a cached statement resets and hands it back

  Stmt& bind(int i, std::string_view text);
  Stmt& bind(int i, double v);
  Stmt& bind(int i, Blob b);
  Stmt& bind(int i, std::nullptr_t);
  template <std::integral T>
  Stmt& bind(int i, T v) {
    return bind_int64(i, static_cast<std::int64_t>(v));
  }

  Result<bool> step();  // true: a row is ready; false: done
  Status run();         // for a statement without rows (INSERT, UPDATE, DELETE)
  // Steps through every row, calling on_row() for each.
  template <class F>
  Status each(F&& on_row) {
    for (;;) {
      auto r = step();
      if (!r) return r.error();
      if (!*r) return {};
      on_row();
    }
  }
  // Ready to step again from the start; bindings stay. Also ends the read
  // transaction a SELECT holds while it has rows left.
  void reset();
  // The last step broke a PRIMARY KEY or UNIQUE constraint ("already exists").
  bool duplicate() const;

  std::int64_t integer(int col) const;
  double real(int col) const;
  std::string text(int col) const;  // "" for NULL
  std::string blob(int col) const;
  bool is_null(int col) const;

 private:
  friend class Db;
  Stmt(Conn* conn, sqlite3_stmt* s, bool* in_use) : conn_(conn), s_(s), in_use_(in_use) {}
  Stmt& bind_int64(int i, std::int64_t v);
  Stmt& check_bind(int rc);
  void fail(int rc, std::string_view sql);
  void fail(int rc, const char* sql);  // sqlite3_sql() may be null
  Error error() const;

  Conn* conn_ = nullptr;
  sqlite3_stmt* s_ = nullptr;
  int rc_ = 0;              // SQLITE_OK (0), or the first prepare/bind/step failure
  std::string err_;         // its message, taken when it happened: "INSERT ...: UNIQUE constraint failed"
  bool* in_use_ = nullptr;  // set for a statement borrowed from the cache
};

// Ends a transaction on every path: rolled back on scope exit unless
// commit() succeeded. Nested inside another transaction it is a SAVEPOINT,
// so an inner failure undoes only the inner work.
class Transaction {
 public:
  Transaction(Transaction&& o) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  Status commit();

 private:
  friend class Db;
  Transaction(Conn* conn, std::string savepoint) : conn_(conn), savepoint_(std::move(savepoint)) {}
  void rollback();
  Conn* conn_;
  std::string savepoint_;  // "" for the outermost (BEGIN IMMEDIATE)
  bool done_ = false;
};

// One connection. Not thread-safe (opened SQLITE_OPEN_NOMUTEX): the owner
// serialises calls, as each store does with its mutex.
class Db {
 public:
  Db();  // closed
  Db(Db&& o) noexcept;
  Db& operator=(Db&& o) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db();

  // Creates the folder (and the file with opts.file_mode), opens it
  // read-write, sets extended result codes and the busy timeout, runs
  // opts.pragmas and then opts.migrations. Closed again on any failure.
  static Result<Db> open(const std::filesystem::path& file, Options opts = {});
  bool is_open() const { return conn_ != nullptr; }

  // Runs one or more statements without parameters (schema, pragmas).
  Status exec(const char* sql);
  // Compiled now, finalized with the Stmt.
  Stmt prepare(std::string_view sql);
  // Compiled on first use and kept until the Db closes (a statement run per
  // message should not be recompiled per message), keyed by its text: use it
  // for a fixed set of statements, values always bound. While one handle is
  // out, a second request for the same SQL gets its own fresh statement.
  Stmt cached(std::string_view sql);

  // BEGIN IMMEDIATE (the write lock now, waiting up to the busy timeout,
  // rather than a deadlock-prone upgrade later), or a SAVEPOINT when a
  // transaction is already open.
  Result<Transaction> transaction();

  // Schema migrations: steps[i] takes PRAGMA user_version from i to i+1.
  // Append only; never edit a step that has shipped. Each step runs in its
  // own IMMEDIATE transaction after re-reading the version, so two processes
  // opening a fresh file together cannot both apply one. A file newer than
  // steps.size() is refused.
  Status migrate(std::span<const char* const> steps);
  Result<std::int64_t> user_version();

  std::int64_t changes() const;  // rows the last INSERT/UPDATE/DELETE touched
  std::int64_t last_insert_rowid() const;

  // The mapped error for what just failed on this connection.
  Error error(std::string_view what, int rc) const;
  sqlite3* handle() const;  // for what this wrapper does not cover

 private:
  Status exec_pragmas(const char* sql, int busy_timeout_ms);
  std::unique_ptr<Conn> conn_;
};

}  // namespace moat::sqlite

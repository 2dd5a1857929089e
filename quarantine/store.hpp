// The quarantine store (ARCHITECTURE.md "QuarantineStore"), embedded default:
// one file per held message in data_dir/quarantine/msg/ and its metadata
// (envelope, From, Subject, score, symbols, reason, time) indexed in SQLite
// (data_dir/db/quarantine.sqlite). A held message is as durable as a spooled
// one (SECURITY.md promise 1; RFC 5321 §6.1): the file is written to tmp/,
// fdatasynced, renamed into msg/, msg/ is fsynced, and only then is the row
// committed (WAL, synchronous=FULL); the caller answers 250 after put().
// The same store keeps the sender allow/block lists (docs/quarantine.md).
//
// Every method blocks (file I/O, fsync, SQLite): call from the blocking pool.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/sqlite.hpp"

namespace moat::quarantine {

// Why a message is in the store: held by a Quarantine verdict, or a copy of
// a rejected one kept so that the reference id in the 550 can be looked up.
enum class Kind : std::uint8_t { Quarantined, Rejected };
std::string_view kind_name(Kind k);  // "quarantine" | "reject"

struct Entry {
  std::string id;                      // the queue id the session gave it
  Kind kind = Kind::Quarantined;
  std::int64_t time = 0;               // arrival, Unix seconds
  std::int64_t expires = 0;            // Unix seconds; expire() removes it then
  std::string sender;                  // "" is <>
  std::vector<std::string> recipients;
  std::string from;                    // From: value, unfolded, bounded (display only)
  std::string subject;                 // Subject: value, unfolded, bounded, as sent (RFC 2047 not decoded)
  double score = 0;
  std::string symbols;                 // "NAME(score) NAME(score)"
  std::string reason;                  // what decided: symbol names
  std::string client;                  // "name[ip]"
  std::string auth_domain;             // DMARC-aligned authenticated From domain, "" if none
  std::uint64_t size = 0;              // bytes of the stored file
};

enum class ListKind : std::uint8_t { Allow, Block };
std::string_view list_name(ListKind k);  // "allow" | "block"

struct ListEntry {
  std::string domain;
  ListKind kind = ListKind::Allow;
  std::int64_t added = 0;
};

// ^[0-9A-Za-z]{10,20}$ (the queue id shape): checked before an id touches a path.
bool valid_id(std::string_view id);

class Store {
 public:
  Store(std::filesystem::path dir, std::filesystem::path db_file);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Creates folders and schema. With recover (moatd at start-up only, never
  // while another process may be in put()): tmp/ is emptied, files without a
  // row (never acknowledged) are removed, rows without a file are dropped.
  Status open(bool recover = false);

  // Stores the message file and its row. durable: fsync file, folder and
  // database before returning (quarantine); rejected copies skip the syncs,
  // the client still holds the message.
  Status put(const Entry& entry, std::string_view file_bytes, bool durable);

  // Newest first; limit 0 is all.
  Result<std::vector<Entry>> list(std::size_t limit = 0, std::optional<Kind> kind = std::nullopt);
  Result<Entry> get(std::string_view id);   // Errc::NotFound when absent
  Result<std::string> read(std::string_view id);
  Status remove(std::string_view id);       // row first, then the file
  // Removes every entry whose expiry is at or before now; returns how many.
  Result<std::size_t> expire(std::int64_t now);

  // Sender lists, keyed on a domain (lower case). lookup() matches the domain
  // and each parent domain; the most specific entry wins.
  Status set_list(std::string_view domain, ListKind kind);
  Status unlist(std::string_view domain);   // Errc::NotFound when absent
  Result<std::vector<ListEntry>> lists();
  Result<std::optional<ListKind>> lookup(std::string_view domain);

  std::filesystem::path file(std::string_view id) const { return dir_ / "msg" / std::string(id); }

 private:
  Status ensure_open();
  Status write_file(const Entry& e, std::string_view bytes, bool durable);
  Status insert_row(const Entry& e, bool durable);
  Status recover();

  std::filesystem::path dir_;
  std::filesystem::path db_file_;
  std::mutex mu_;
  sqlite::Db db_;  // closed until ensure_open()
};

}  // namespace moat::quarantine

// The Bayes token store: per-user and global ("" user) token counts, learned
// message counts, and the digests of learned messages (so learning twice
// counts once, learning as the other class moves the message, and unlearn
// works), in SQLite with WAL so that `moatctl learn` writes while moatd
// reads. Every call blocks: moatd calls it on the blocking pool only.
// Writes share one connection. Reads (totals, lookup) are answered from an
// in-memory copy of the user and token tables (token_cache.hpp), brought up
// to date before each call from the rows whose revision is newer than the
// copy's: every learn and unlearn bumps one generation number and stamps the
// rows it touches with it, so changes made by another process (`moatctl
// learn` beside moatd) are seen at the next classification, and a refresh
// reads only what changed (compact() deletes the rows unlearning leaves at
// zero; a copy older than that reloads whole). Memory: 16 bytes per slot at
// most 70% full, so 23 to 46 bytes per stored token (all users), e.g.
// ~32 MiB for 1M tokens.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/error.hpp"
#include "common/sqlite.hpp"
#include "filters/bayes/classifier.hpp"
#include "filters/bayes/token_cache.hpp"

namespace moat::filters::bayes {

enum class Class : std::uint8_t { Ham, Spam };
std::string_view class_name(Class c);

enum class LearnResult : std::uint8_t {
  Learned,         // counted now
  AlreadyLearned,  // the same message was learned as this class before: nothing changed
  Relearned,       // it was learned as the other class: moved
};

struct UserStats {
  std::string user;      // "" is the global store
  Counts messages;       // learned spam and ham messages
  std::int64_t tokens = 0;
};

class Store {
 public:
  // Opened on first use, created with its folder when missing.
  explicit Store(std::filesystem::path file);
  // The process's one Store for `file` while anyone holds it: moatd's
  // filter instances before and after a config reload share it, so the
  // in-memory copy is loaded once, not on the first message after each reload.
  static std::shared_ptr<Store> shared(const std::filesystem::path& file);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::filesystem::path& file() const { return file_; }

  Result<LearnResult> learn(std::string_view user, std::uint64_t digest, std::span<const std::uint64_t> tokens,
                            Class cls, std::int64_t now);
  // False when the message was not learned for this user.
  Result<bool> unlearn(std::string_view user, std::uint64_t digest, std::span<const std::uint64_t> tokens);

  Result<Counts> totals(std::string_view user);
  // Counts of each token, in order; unknown tokens are {0, 0}.
  Result<std::vector<Counts>> lookup(std::string_view user, std::span<const std::uint64_t> tokens);
  Result<std::vector<UserStats>> stats();
  // Deletes the token rows at zero counts that unlearning leaves behind and
  // returns how many; readers' copies (in any process) still drop those
  // tokens, by reloading whole once (store.cpp).
  Result<std::int64_t> compact();

  // Groups learn/unlearn calls into one transaction (bulk learning is ~50x
  // faster). Keep batches short: moatd's autolearn waits for the write lock.
  Status begin_batch();
  Status end_batch();

  // The in-memory copy's size (after the last refresh): tokens held and bytes.
  std::size_t cached_tokens();
  std::size_t cached_bytes();

 private:
  class Reader;  // a read connection borrowed from readers_, handed back when it goes
  Status open_locked();
  Result<std::unique_ptr<sqlite::Db>> take_reader();
  void give_back(std::unique_ptr<sqlite::Db> db);
  // Brings the in-memory copy up to the database's generation.
  Status refresh();
  Result<std::int64_t> bump_generation_locked();
  Status adjust_locked(std::int64_t uid, std::span<const std::uint64_t> tokens, int dspam, int dham,
                       std::int64_t now, std::int64_t rev);

  std::filesystem::path file_;
  std::mutex mu_;  // the write connection and the batch
  sqlite::Db db_;
  std::optional<sqlite::Transaction> batch_;  // declared after db_: rolled back before it closes
  std::mutex readers_mu_;
  std::vector<std::unique_ptr<sqlite::Db>> readers_;  // idle read connections

  struct UserRow {
    std::int64_t id = 0;
    Counts messages;
  };
  std::shared_mutex cache_mu_;  // shared: reading the copy; unique: refreshing it
  std::int64_t cache_gen_ = -1;  // the generation the copy reflects; -1 before the first load
  std::unordered_map<std::string, UserRow> users_;
  TokenCache tokens_;
};

}  // namespace moat::filters::bayes

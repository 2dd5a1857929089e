// The Bayes token store: per-user and global ("" user) token counts, learned
// message counts, and the digests of learned messages (so learning twice
// counts once, learning as the other class moves the message, and unlearn
// works), in SQLite with WAL so that `moatctl learn` writes while moatd
// reads. Every call blocks: moatd calls it on the blocking pool only.
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "filters/bayes/classifier.hpp"

struct sqlite3;

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

  // Groups learn/unlearn calls into one transaction (bulk learning is ~50x
  // faster). Keep batches short: moatd's autolearn waits for the write lock.
  Status begin_batch();
  Status end_batch();

 private:
  Status open_locked();
  Result<std::int64_t> user_id_locked(std::string_view user, bool create);
  Status adjust_locked(std::int64_t uid, std::span<const std::uint64_t> tokens, int dspam, int dham,
                       std::int64_t now);

  std::filesystem::path file_;
  std::mutex mu_;
  sqlite3* db_ = nullptr;
  bool batch_ = false;
};

}  // namespace moat::filters::bayes

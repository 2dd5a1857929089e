// An in-memory copy of the Bayes token table for classification: an
// open-addressing hash table of 16-byte slots (64-bit key, two 32-bit
// counts), so a message's ~1,000 token lookups cost about one cache miss
// each instead of one SQLite B-tree descent each. The store (store.cpp)
// keeps it current from the table's revision numbers. Not thread-safe: the
// store guards it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "filters/bayes/classifier.hpp"

namespace moat::filters::bayes {

class TokenCache {
 public:
  // The key of a user's token: users share one table, so the user id is
  // mixed into the token hash (a collision is as unlikely as two tokens
  // sharing a hash).
  static std::uint64_t key(std::int64_t uid, std::uint64_t token_hash);

  // {0, 0} when absent.
  Counts find(std::uint64_t key) const;
  // Sets (or adds) the key's counts; {0, 0} keeps the slot, counting nothing.
  void put(std::uint64_t key, Counts c);
  void clear();

  std::size_t size() const { return used_; }
  std::size_t bytes() const { return slots_.capacity() * sizeof(Slot); }

 private:
  struct Slot {
    std::uint64_t key = 0;  // 0: empty (a real key of 0 is stored as 1)
    std::uint32_t spam = 0;
    std::uint32_t ham = 0;
  };
  static_assert(sizeof(Slot) == 16);
  void grow();
  std::size_t index(std::uint64_t key) const;

  std::vector<Slot> slots_;  // a power of two in size, at most 70% used
  std::size_t used_ = 0;
};

}  // namespace moat::filters::bayes

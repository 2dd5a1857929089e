// Open-addressing token table (see token_cache.hpp): linear probing, grown
// by doubling at 70% load, never shrunk (tokens are rarely forgotten).
#include "filters/bayes/token_cache.hpp"

#include <algorithm>
#include <limits>

namespace moat::filters::bayes {
namespace {

constexpr std::size_t kInitialSlots = 1024;

std::uint64_t nonzero(std::uint64_t k) { return k == 0 ? 1 : k; }

std::uint32_t clamp32(std::int64_t v) {
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(v, 0, std::numeric_limits<std::uint32_t>::max()));
}

// The token hashes are FNV-1a, whose low bits are weak: mix before masking.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

}  // namespace

std::uint64_t TokenCache::key(std::int64_t uid, std::uint64_t token_hash) {
  return nonzero(token_hash ^ (static_cast<std::uint64_t>(uid) * 0x9e3779b97f4a7c15ULL));
}

std::size_t TokenCache::index(std::uint64_t key) const { return mix(key) & (slots_.size() - 1); }

Counts TokenCache::find(std::uint64_t key) const {
  if (slots_.empty()) return {};
  key = nonzero(key);
  for (std::size_t i = index(key);; i = (i + 1) & (slots_.size() - 1)) {
    const Slot& s = slots_[i];
    if (s.key == key) return Counts{s.spam, s.ham};
    if (s.key == 0) return {};
  }
}

void TokenCache::put(std::uint64_t key, Counts c) {
  if ((used_ + 1) * 10 > slots_.size() * 7) grow();
  key = nonzero(key);
  for (std::size_t i = index(key);; i = (i + 1) & (slots_.size() - 1)) {
    Slot& s = slots_[i];
    if (s.key == 0) {
      s.key = key;
      ++used_;
    }
    if (s.key == key) {
      s.spam = clamp32(c.spam);
      s.ham = clamp32(c.ham);
      return;
    }
  }
}

void TokenCache::clear() {
  slots_.clear();
  slots_.shrink_to_fit();
  used_ = 0;
}

void TokenCache::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? kInitialSlots : old.size() * 2, Slot{});
  used_ = 0;
  for (const Slot& s : old)
    if (s.key != 0) put(s.key, Counts{s.spam, s.ham});
}

}  // namespace moat::filters::bayes

// Counts a component's live coroutine frames. A detached frame that outlives
// the object it belongs to is a use-after-free when it next runs or is
// destroyed, so owners stop a component and run the io_context until
// live() is 0 (or destroy the pending frames) before destroying it; the
// destructor turns a forgotten frame into a clear abort instead.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace moat {

class FrameCount {
 public:
  // Passed to a coroutine as a by-value parameter, so the frame is counted
  // from its creation to its destruction, even if it never runs.
  class Token {
   public:
    explicit Token(std::atomic<std::size_t>& n) : n_(&n) { ++n; }
    Token(Token&& o) noexcept : n_(std::exchange(o.n_, nullptr)) {}
    Token& operator=(Token&&) = delete;
    ~Token() {
      if (n_) --*n_;
    }

   private:
    std::atomic<std::size_t>* n_;
  };

  explicit FrameCount(const char* owner) : owner_(owner) {}
  FrameCount(const FrameCount&) = delete;
  FrameCount& operator=(const FrameCount&) = delete;
  ~FrameCount() {
    if (n_ != 0) {
      std::fprintf(stderr, "moat: %s destroyed with %zu coroutines pending\n", owner_, n_.load());
      std::abort();
    }
  }

  Token token() { return Token(n_); }
  std::size_t live() const { return n_; }

 private:
  const char* owner_;
  std::atomic<std::size_t> n_{0};
};

}  // namespace moat

// Meta rules: boolean and counting expressions over other rules' hits, the
// SpamAssassin meta syntax (&&, ||, !, + - *, comparisons, parentheses,
// integers). Compiled once to postfix code over rule indices.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace moat::rules {

class MetaExpr {
 public:
  // resolve: symbol -> rule index, nullopt when unknown (an error).
  static Result<MetaExpr> compile(std::string_view text,
                                  const std::function<std::optional<std::uint32_t>(std::string_view)>& resolve);
  // values[i]: 1 when rule i hit (or its meta value), else 0.
  std::int64_t eval(std::span<const std::int64_t> values) const;
  // Rules this expression reads (for ordering metas after their inputs).
  std::vector<std::uint32_t> inputs() const;

  enum class Op : std::uint8_t { Push, Rule, Not, Neg, Add, Sub, Mul, And, Or, Gt, Ge, Lt, Le, Eq, Ne };
  struct Instr {
    Op op;
    std::int64_t arg = 0;
  };

 private:
  std::vector<Instr> code_;
};

inline constexpr std::size_t kMaxMetaLength = 16 * 1024;
inline constexpr unsigned kMaxMetaDepth = 64;

}  // namespace moat::rules

// The one list of filter names moat knows. Config validation (common/config.cpp)
// reads it and filters/registry.cpp builds each of them, so a new filter is
// added here and in make_filter(), nowhere else. Header-only on purpose: the
// config loader lives in moat_common, which does not link moat_filters.
#pragma once

#include <array>
#include <string_view>

namespace moat::filters {

// In the order a default configuration (no [[filter]] tables) runs them.
inline constexpr std::array<std::string_view, 3> kKnownFilters{"helo", "hops", "size"};

constexpr bool is_known_filter(std::string_view name) {
  for (auto k : kKnownFilters)
    if (k == name) return true;
  return false;
}

}  // namespace moat::filters

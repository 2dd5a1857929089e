// The one list of filter names moat knows. Config validation (common/config.cpp)
// reads it and filters/registry.cpp builds each of them, so a new filter is
// added here and in make_filter(), nowhere else. Header-only on purpose: the
// config loader lives in moat_common, which does not link moat_filters.
#pragma once

#include <array>
#include <string_view>

namespace moat::filters {

// In the order a default configuration (no [[filter]] tables) runs them.
inline constexpr std::array<std::string_view, 14> kKnownFilters{"helo", "hops", "size", "ratelimit", "dnsbl", "spf", "greylist", "dkim", "arc", "dmarc", "rules", "bayes", "attachments", "antivirus"};

// Known filters that run only when a [[filter]] table names them: they ask
// outside services (DNS, moat-scand), defer mail (greylisting) or need
// training first (bayes), which no one should get by leaving [[filter]] out.
inline constexpr std::array<std::string_view, 9> kOptInFilters{"ratelimit", "dnsbl", "spf", "greylist", "dkim", "arc", "dmarc", "antivirus", "bayes"};

constexpr bool is_opt_in_filter(std::string_view name) {
  for (auto k : kOptInFilters)
    if (k == name) return true;
  return false;
}

constexpr bool is_known_filter(std::string_view name) {
  for (auto k : kKnownFilters)
    if (k == name) return true;
  return false;
}

}  // namespace moat::filters

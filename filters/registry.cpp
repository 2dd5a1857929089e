// Filter factory (see registry.hpp). Adding a filter: its folder under
// filters/, its name in known.hpp, one line here.
#include "filters/registry.hpp"

#include "filters/helo/helo.hpp"
#include "filters/hops/hops.hpp"
#include "filters/known.hpp"
#include "filters/size/size.hpp"

namespace moat::filters {

std::vector<std::string_view> known_filters() { return {kKnownFilters.begin(), kKnownFilters.end()}; }

Result<std::unique_ptr<Filter>> make_filter(const config::Filter& settings, const config::Config& cfg,
                                            const Services& services) {
  (void)services;  // the built-ins below need no daemon services
  const auto& n = settings.name;
  if (n == "helo") return std::unique_ptr<Filter>(std::make_unique<helo::HeloFilter>(cfg));
  if (n == "hops") return std::unique_ptr<Filter>(std::make_unique<hops::HopsFilter>(cfg));
  if (n == "size") return std::unique_ptr<Filter>(std::make_unique<size::SizeFilter>(cfg));
  return Error{Errc::Invalid, "unknown filter \"" + n + "\""};
}

}  // namespace moat::filters

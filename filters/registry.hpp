// Explicit filter registration: one function that knows every built-in
// filter (static self-registration gets dropped by static libraries). The
// list of names lives in filters/known.hpp so config validation shares it.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "common/config.hpp"
#include "common/error.hpp"
#include "filters/filter.hpp"
#include "filters/services.hpp"

namespace moat::filters {

std::vector<std::string_view> known_filters();

// Builds the filter named by settings.name; Errc::Invalid for unknown names.
Result<std::unique_ptr<Filter>> make_filter(const config::Filter& settings, const config::Config& cfg,
                                            const Services& services = {});

}  // namespace moat::filters

// Received: hop counting (see hops.hpp). The session counts the headers into
// ScanContext::received_hops; this filter only compares.
#include "filters/hops/hops.hpp"

#include <string>

namespace moat::filters::hops {

asio::awaitable<Status> HopsFilter::run(Phase, ScanContext& ctx) {
  if (ctx.received_hops > max_hops_)
    ctx.add("HOPS_LOOP", std::to_string(ctx.received_hops) + " hops > " + std::to_string(max_hops_));
  co_return Status{};
}

}  // namespace moat::filters::hops

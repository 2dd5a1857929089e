// MSG_LARGE (see size.hpp): lets admins score big mail through [scores]
// without touching the hard size limit.
#include "filters/size/size.hpp"

#include <string>

namespace moat::filters::size {

asio::awaitable<Status> SizeFilter::run(Phase, ScanContext& ctx) {
  if (ctx.message_size > large_) ctx.add("MSG_LARGE", std::to_string(ctx.message_size) + " bytes");
  co_return Status{};
}

}  // namespace moat::filters::size

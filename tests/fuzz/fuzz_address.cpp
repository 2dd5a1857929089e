// Fuzz target: parse_path (RFC 5321 §4.1.2) under both UTF-8 settings, the
// relay guard, and a round trip through Mailbox::str().
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/proto/address.hpp"

using namespace moat::proto::smtp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view path(reinterpret_cast<const char*>(data), size);
  for (bool utf8 : {false, true}) {
    auto m = parse_path(path, utf8, true);
    if (!m) continue;
    if (m->local.size() > kMaxLocalPart || m->domain.size() > kMaxDomain) std::abort();
    if (!utf8 && m->utf8) std::abort();
    (void)check_relay_safe(*m, utf8);
    (void)lower_domain(m->domain);
    if (m->domain.empty() || m->source_route) continue;
    // str() re-quotes as needed: it must parse back to the same mailbox
    auto again = parse_path(m->str(), utf8);
    if (!again && m->str().size() + 2 <= kMaxPath && m->str().find('@') <= kMaxLocalPart) std::abort();
    if (again && (again->local != m->local || again->domain != m->domain)) std::abort();
  }
  return 0;
}

// Destination::key (transport.hpp): one key per next hop, so concurrency
// limits and connection caches count the same peer once.
#include "gateway/queue/transport.hpp"

namespace moat::gateway {

std::string Destination::key() const {
  if (next_hop) return "[" + next_hop->host + "]:" + std::to_string(next_hop->port);
  return "mx:" + domain;
}

}  // namespace moat::gateway

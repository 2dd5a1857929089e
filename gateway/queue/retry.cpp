// See retry.hpp. Doubling saturates well before overflow: the shift is capped.
#include "gateway/queue/retry.hpp"

#include <algorithm>

namespace moat::gateway::retry {

config::Seconds backoff(const config::Queue& q, std::uint32_t attempts) {
  auto min = std::max<std::int64_t>(q.min_backoff.count(), 1);
  auto max = std::max<std::int64_t>(q.max_backoff.count(), min);
  std::uint32_t shift = attempts == 0 ? 0 : std::min<std::uint32_t>(attempts - 1, 30);
  std::int64_t d = min << shift;
  return config::Seconds(std::min(d, max));
}

config::Seconds lifetime(const config::Queue& q, const Envelope& env) {
  return env.sender.empty() ? q.bounce_lifetime : q.lifetime;
}

bool expired(const config::Queue& q, const Envelope& env, std::chrono::system_clock::time_point now) {
  return now - env.arrival >= lifetime(q, env);
}

}  // namespace moat::gateway::retry

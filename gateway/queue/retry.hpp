// Retry schedule (Postfix qmgr: minimal_backoff_time doubling per attempt up
// to maximal_backoff_time) and queue lifetime (maximal_queue_lifetime;
// bounce_lifetime for our own bounces, whose sender is <>).
#pragma once

#include <chrono>
#include <cstdint>

#include "common/config.hpp"
#include "common/envelope.hpp"

namespace moat::gateway::retry {

// Delay before attempt `attempts + 1`, after `attempts` failed attempts (≥1).
config::Seconds backoff(const config::Queue& q, std::uint32_t attempts);

config::Seconds lifetime(const config::Queue& q, const Envelope& env);

bool expired(const config::Queue& q, const Envelope& env, std::chrono::system_clock::time_point now);

}  // namespace moat::gateway::retry

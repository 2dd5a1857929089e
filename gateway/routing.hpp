// Where a recipient's mail goes next: relay domains to their configured next
// hop, everything else (authenticated submission, relay networks) to the
// smarthost or the domain's MX (RFC 5321 §5.1).
#pragma once

#include <string>
#include <string_view>

#include "common/config.hpp"
#include "gateway/queue/transport.hpp"

namespace moat::gateway {

// The recipient's domain, lower-cased, without a trailing dot ("" when none).
std::string recipient_domain(std::string_view recipient);

Destination destination_for(const config::Config& cfg, std::string_view recipient);

// The transport name registered with QueueManager::add_transport. "smtp"
// today; the mailbox store's local transport will answer "local" for its
// domains.
std::string transport_for(const config::Config& cfg, std::string_view recipient);

}  // namespace moat::gateway

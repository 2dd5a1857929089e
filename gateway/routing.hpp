// Where a recipient's mail goes next: relay domains to their configured next
// hop, everything else (authenticated submission, relay networks) to the
// smarthost or the domain's MX (RFC 5321 §5.1).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/config.hpp"
#include "gateway/queue/transport.hpp"

namespace moat::gateway {

// The recipient's domain, lower-cased, without a trailing dot ("" when none).
std::string recipient_domain(std::string_view recipient);

Destination destination_for(const config::Config& cfg, std::string_view recipient);

// The transport name registered with QueueManager::add_transport: "local"
// for local domains (the mailbox store), "smtp" for everything else.
std::string transport_for(const config::Config& cfg, std::string_view recipient);

// Local domains: [local] domains in the config, and those added at run time
// to the user database, which the local transport keeps current here.
bool is_local_domain(const config::Config& cfg, std::string_view domain);
void set_runtime_local_domains(std::vector<std::string> domains);

}  // namespace moat::gateway

// DNS blocklists (RFC 5782): the client address against "ip" zones (DNSBL,
// reversed octets or IPv6 nibbles) and the HELO and MAIL FROM domains against
// "domain" zones (RHSBL). One symbol per listing zone, scored by its weight.
// A lookup error is logged and skipped: one broken list never defers mail.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/config.hpp"
#include "common/net.hpp"
#include "filters/filter.hpp"
#include "filters/services.hpp"

namespace moat::dns {
class Resolver;
}

namespace moat::filters::dnsbl {

// "2.0.0.127.zone" for 127.0.0.2; 32 reversed nibbles for IPv6 (RFC 5782 §2.1, §2.4).
std::string ip_query(const IpAddr& ip, std::string_view zone);
// "example.org.zone" (lower case); nullopt when the name is not a domain or
// the query would exceed 253 characters (RFC 5782 §2.3).
std::optional<std::string> domain_query(std::string_view domain, std::string_view zone);

enum class Outcome { Clean, Listed, Error };
struct Match {
  Outcome outcome = Outcome::Clean;
  IpAddr answer;  // the A record that listed (or the error code)
};
// What the A records of one lookup mean for a zone. With no configured
// answers: listed for 127.0.0.2-127.255.255.254; 127.255.255.0/24 is the
// Spamhaus-style "query refused" code (an error); anything outside 127/8 is
// ignored (a hijacking resolver), as RFC 5782 §2.1 keeps answers in 127/8.
Match match(const std::vector<IpAddr>& records, const config::DnsblZone& zone);

// Lookup results by query name, shared by every session and kept across
// reloads (owned by the daemon). Errors are never cached. Bounded: the oldest
// entries go first. Thread-safe.
class Cache {
 public:
  using Clock = std::chrono::steady_clock;
  // The A records of `qname` if stored less than `ttl` ago.
  std::optional<std::vector<IpAddr>> get(const std::string& qname, std::chrono::seconds ttl, Clock::time_point now);
  void put(const std::string& qname, std::vector<IpAddr> records, Clock::time_point now, std::size_t max_entries);
  std::size_t size() const;

 private:
  struct Entry {
    std::vector<IpAddr> records;
    Clock::time_point stored;
    std::list<std::string>::iterator age;
  };
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> order_;  // front: oldest
};

// Symbols: per zone, config::dnsbl_symbol() unless the zone names its own
// (DNSBL_ZEN_SPAMHAUS_ORG, RHSBL_DBL_SPAMHAUS_ORG). Phases: Connect (ip
// zones), Helo (domain zones on the HELO name), MailFrom (all again, from the
// cache, so the listings count in the message's score; plus the sender
// domain). Skipped for relay.networks and, from MAIL on, for authenticated users.
class DnsblFilter final : public Filter {
 public:
  // Lookups get 4/5 of `budget` (the [[filter]] budget), then count as failed.
  DnsblFilter(const config::Config& cfg, dns::Resolver* resolver, Cache* cache,
              std::chrono::milliseconds budget = std::chrono::milliseconds(5000));
  std::string_view name() const override { return "dnsbl"; }
  PhaseMask phases() const override;
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

 private:
  struct Query {
    const config::DnsblZone* zone;
    std::string what;   // "127.0.0.1", "helo example.org", "from example.org"
    std::string qname;
  };
  std::vector<Query> queries(Phase phase, const ScanContext& ctx) const;
  asio::awaitable<std::vector<std::optional<std::vector<IpAddr>>>> lookup_all(const std::vector<Query>& qs);
  bool exempt(const ScanContext& ctx, Phase phase) const;

  config::Dnsbl cfg_;
  std::vector<Cidr> exempt_;
  dns::Resolver* resolver_;
  std::unique_ptr<Cache> own_cache_;
  Cache* cache_;
  std::chrono::milliseconds deadline_;
};

}  // namespace moat::filters::dnsbl

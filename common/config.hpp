// moat's configuration: one TOML file, validated at start, held as an
// immutable snapshot (shared_ptr<const Config>) that SIGHUP replaces whole.
// docs/configuration.md describes every key; keep the two in step.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/net.hpp"

namespace moat::config {

using Seconds = std::chrono::seconds;

enum class ListenerMode {
  Smtp,         // port 25 style: STARTTLS offered, AUTH only after TLS
  Submission,   // 587 style: STARTTLS + AUTH required before MAIL
  Submissions,  // 465 style: implicit TLS, AUTH required
};

struct Listener {
  std::string name;           // "smtp", "submission", ...
  HostPort address;           // loopback in the embedded default
  ListenerMode mode = ListenerMode::Smtp;
};

struct Tls {
  std::filesystem::path cert;  // PEM chain; created self-signed on first start if both missing
  std::filesystem::path key;
};

enum class BareLinePolicy { Reject, Normalize };

// SECURITY.md promise 3: every limit is enforced and has a test.
struct Limits {
  std::size_t line_length = 2048;          // longest command or DATA line, CRLF included
  std::uint64_t message_size = 10 * 1024 * 1024;
  std::size_t header_size = 100 * 1024;    // bytes of message header section
  std::size_t recipients = 1000;           // per message
  unsigned hard_errors = 20;               // then 421
  Seconds command_timeout{300};            // per command
  Seconds data_timeout{600};               // whole DATA/BDAT phase
  unsigned max_connections = 1000;         // whole server
  unsigned connections_per_client = 50;
  unsigned max_hops = 50;                  // Received: headers before loop reject
  unsigned auth_failures = 3;              // per session, then 421
  std::chrono::milliseconds greet_pause{0};  // wait before the banner; early talkers are refused
  BareLinePolicy bare_line = BareLinePolicy::Reject;
};

enum class TlsPolicy { None, May, Encrypt };

enum class VerifyMode { None, Static, Callout };

struct RelayDomain {
  std::string name;                        // lower-case, no trailing dot
  std::optional<HostPort> next_hop;        // empty: MX lookup of name
  TlsPolicy tls = TlsPolicy::May;
  VerifyMode verify = VerifyMode::None;
  std::vector<std::string> recipients;     // Static: lower-cased full addresses or "@domain"
  Seconds callout_cache_ttl{3600};
};

struct Relay {
  std::vector<Cidr> networks;              // clients allowed to relay anywhere
  std::vector<RelayDomain> domains;
  std::optional<HostPort> smarthost;       // for mail to other domains; empty: MX
  TlsPolicy outbound_tls = TlsPolicy::May;
};

struct Queue {
  Seconds min_backoff{300};                // Postfix minimal_backoff_time
  Seconds max_backoff{4000};               // Postfix maximal_backoff_time
  Seconds lifetime{5 * 24 * 3600};         // maximal_queue_lifetime
  Seconds bounce_lifetime{5 * 24 * 3600};  // for our own DSNs
  Seconds scan_interval{60};               // deferred queue rescan
  unsigned destination_concurrency = 20;   // per next hop
  unsigned total_concurrency = 100;        // outbound connections in all
  Seconds connect_timeout{30};
  Seconds command_timeout{300};
  Seconds data_timeout{600};
  std::size_t max_messages_per_connection = 100;
};

struct Dns {
  std::optional<HostPort> upstream;        // e.g. 127.0.0.1:5353 for tests; empty: /etc/resolv.conf
  Seconds timeout{10};
};

enum class FailMode { Open, Closed };

struct Filter {
  std::string name;                        // "size", "hops", "helo"
  bool enabled = true;
  std::chrono::milliseconds budget{5000};
  FailMode fail = FailMode::Closed;
};

struct Actions {                           // score thresholds (Rspamd actions.conf)
  double tag = 5.0;
  double quarantine = 10.0;
  double tempfail = 1e9;                   // disabled unless configured
  double reject = 15.0;
  std::string subject_prefix;              // optional "[SPAM] " on tag
};

struct Server {
  std::string hostname = "moat.localdomain";
  std::filesystem::path data_dir = "var";  // relative to the config file's folder
  unsigned threads = 0;                    // 0: one per core
  std::string user;                        // drop privileges to this user after bind; empty: stay
  std::filesystem::path control_socket;    // default data_dir/run/moatd.sock
  std::string authserv_id;                 // Authentication-Results id (RFC 8601); default: hostname
};

struct Config {
  std::filesystem::path source;            // the file it came from
  Server server;
  std::vector<Listener> listeners;
  Tls tls;
  Limits limits;
  Relay relay;
  Queue queue;
  Dns dns;
  std::vector<Filter> filters;
  std::vector<std::pair<std::string, double>> scores;  // symbol -> score overrides
  Actions actions;

  // data_dir-relative helpers
  std::filesystem::path spool_dir() const { return server.data_dir / "spool"; }
  std::filesystem::path db_path() const { return server.data_dir / "db" / "moat.sqlite"; }
  std::filesystem::path tls_dir() const { return server.data_dir / "tls"; }
  const RelayDomain* relay_domain(std::string_view domain) const;  // case-insensitive
  const Filter* filter(std::string_view name) const;
};

using Snapshot = std::shared_ptr<const Config>;

// Parses and validates. Errors read "FILE:LINE: message" (one per line in
// Error::detail when several).
Result<Snapshot> load(const std::filesystem::path& file);
Result<Snapshot> parse(std::string_view toml_text, const std::filesystem::path& name);

// --- helpers the loader uses that are useful elsewhere (additions) ---

// "300s", "5d", "250ms", "2h", "1w", "10m", or digits alone meaning seconds.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s);

// RFC 1035 §2.3.1 preferred name syntax (letters, digits, hyphens; labels of
// 1..63, 253 in all); one trailing dot allowed. No underscores: these are
// host and mail domain names, not SRV/DKIM owner names.
bool is_domain_name(std::string_view s);

// The effective configuration as TOML that parse() reads back to the same
// values (paths absolute): `moatctl config show` and the fuzz round trip.
std::string to_toml(const Config& cfg);

}  // namespace moat::config

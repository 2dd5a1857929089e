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
  Imap,         // 143 style: STARTTLS offered, login only after TLS (store/imap)
  Imaps,        // 993 style: implicit TLS (RFC 8314)
  Pop3,         // 110 style: STLS offered, login only after TLS (store/pop3)
  Pop3s,        // 995 style: implicit TLS (RFC 8314)
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

// [dnsbl]: DNS blocklists (RFC 5782) for the client address and RHSBLs for
// the HELO and MAIL FROM domains (filters/dnsbl).
struct DnsblZone {
  std::string zone;                        // "zen.spamhaus.org", lower case, no trailing dot
  bool domain = false;                     // type = "domain": an RHSBL; "ip": a DNSBL
  double weight = 0;                       // the symbol's score
  std::vector<std::pair<IpAddr, IpAddr>> answers;  // listed when an A record is in one of these ranges; empty: 127.0.0.2-127.255.255.254 minus 127.255.255.0/24
  std::string symbol;                      // DNSBL_<ZONE> / RHSBL_<ZONE> unless set
};

struct Dnsbl {
  std::vector<DnsblZone> zones;
  Seconds cache_ttl{300};                  // how long a result (listed or not) is reused
  std::size_t cache_size = 20000;          // entries; the oldest go first
};

// [greylist] (filters/greylist): triplets of client network, sender, recipient.
struct Greylist {
  Seconds delay{300};                      // a retry is accepted this long after the first attempt
  Seconds retry_window{2 * 86400};         // ... and no later than this after it
  Seconds expiry{36 * 86400};              // passed triplets and auto-allowed networks, refreshed on use
  unsigned auto_allow_after = 5;           // correct retries before the network skips greylisting; 0: never
  unsigned ipv4_prefix = 24;
  unsigned ipv6_prefix = 64;
  std::vector<Cidr> whitelist;             // client networks never greylisted (besides relay.networks)
};

// A token-bucket rate: `count` per `period` (burst of `count`); count 0 is off.
struct Rate {
  unsigned count = 0;
  Seconds period{0};
  bool enabled() const { return count > 0; }
  bool operator==(const Rate&) const = default;
};

// [ratelimit] (filters/ratelimit). Client keys are the IPv4 address or the
// IPv6 /64; authenticated sessions count messages and recipients per user.
struct RateLimit {
  Rate connections;                        // per client, at connect: 421
  Rate messages;                           // per client, at MAIL: 451
  Rate recipients;                         // per client, at RCPT: 451
  Rate user_messages;                      // per authenticated user
  Rate user_recipients;
  std::size_t max_entries = 100000;        // buckets kept; idle ones are evicted first
  std::vector<Cidr> whitelist;             // clients never limited
};

enum class FailMode { Open, Closed };

struct Filter {
  std::string name;                        // "size", "hops", "helo"
  bool enabled = true;
  std::chrono::milliseconds budget{5000};
  FailMode fail = FailMode::Closed;
};

// Which messages get X-Spam-Flag/-Score/-Symbols (filters/policy.hpp).
enum class SpamHeaders { Spam, All, None };   // Spam: Tag and Quarantine only
// What a message with a virus symbol (VIRUS_*) gets instead of a Reject:
// viruses are never bounced (SECURITY.md promise 4), so no 5xx that makes a
// relaying client write a bounce to a forged sender.
enum class VirusAction { Quarantine, Discard };

struct Actions {                           // score thresholds (Rspamd actions.conf)
  double tag = 5.0;
  double quarantine = 10.0;
  double tempfail = 1e9;                   // disabled unless configured
  double reject = 15.0;
  double discard = 1e9;                    // accept and drop silently; disabled unless configured
  std::string subject_prefix;              // optional "[SPAM] " on tag
  SpamHeaders spam_headers = SpamHeaders::Spam;
  VirusAction virus = VirusAction::Quarantine;
};

// [[actions.domain]]: the thresholds for mail to one recipient domain; keys
// not given there are the [actions] ones (docs/quarantine.md).
struct DomainActions {
  std::string domain;                      // lower case; subdomains not included
  Actions actions;
};

// [quarantine] (quarantine/): held messages and the copies of rejected ones.
struct Quarantine {
  Seconds retention{30 * 86400};           // quarantined messages are expired after this
  Seconds rejected_retention{7 * 86400};   // copies of rejected messages; 0: not kept
  Seconds expire_interval{3600};           // how often moatd expires; 0: only `moatctl quarantine expire`
};

struct Server {
  std::string hostname = "moat.localdomain";
  std::filesystem::path data_dir = "var";  // relative to the config file's folder
  unsigned threads = 0;                    // 0: one per core
  std::string user;                        // drop privileges to this user after bind; empty: stay
  std::filesystem::path control_socket;    // default data_dir/run/moatd.sock
  std::string authserv_id;                 // Authentication-Results id (RFC 8601); default: hostname
};

// [dmarc] (RFC 7489): per-domain overrides of the published policy, and
// whether aggregate report data is recorded.
enum class DmarcPolicy { None, Quarantine, Reject };
struct DmarcOverride {
  std::string domain;                      // the From domain, lower case; subdomains not included
  DmarcPolicy policy = DmarcPolicy::None;
};
struct Dmarc {
  bool reports = true;                     // record aggregate data in data_dir/db/dmarc.sqlite
  std::vector<DmarcOverride> overrides;    // [[dmarc.override]]
};

// [arc] (RFC 8617): sealing is on when domain, selector and key are all set.
struct Arc {
  std::string domain;                      // d= of our ARC-Seal / ARC-Message-Signature
  std::string selector;                    // s=
  std::filesystem::path key;               // PEM private key (RSA or Ed25519)
  bool sealing() const { return !domain.empty() && !selector.empty() && !key.empty(); }
};

// [dkim] (RFC 6376, RFC 8463; filters/dkim): verification limits and the
// keys outbound mail is signed with, per From domain and selector.
struct DkimKey {
  std::string domain;                      // the From domain it signs for (d=), lower case
  std::string selector;                    // s=
  std::filesystem::path key;               // PEM private key, RSA or Ed25519; read when filters are built
  std::uint32_t line = 0;                  // where it is configured, for key errors
};
struct Dkim {
  std::vector<DkimKey> sign;               // [[dkim.sign]]
  std::vector<std::string> sign_headers;   // lower case; empty: the built-in list (filters/dkim)
  unsigned max_signatures = 10;            // verified per message; later ones are ignored
  unsigned min_key_bits = 1024;            // RFC 8301 §3.2
  bool allow_sha1 = false;                 // rsa-sha1 signatures (RFC 8301 §3.1 says no)
};

// [spf] (filters/spf, RFC 7208). MAIL FROM is always checked (the HELO
// identity stands in for <>, §2.4); check_helo adds the HELO identity on its
// own (§2.3) as SPF_HELO_* symbols.
struct Spf {
  bool check_helo = false;
};

// [bayes] (filters/bayes, docs/bayes.md): the token store and when the
// classifier speaks. Until min_spam spam and min_ham ham are learned it adds
// no symbol (SpamAssassin's bayes_min_spam_num / bayes_min_ham_num).
struct Bayes {
  std::filesystem::path db;                // default data_dir/db/bayes.sqlite
  unsigned min_spam = 200;
  unsigned min_ham = 200;
  bool per_user = false;                   // mail to one recipient uses that user's tokens once trained
  bool autolearn = false;                  // learn from the other filters' verdicts (safeguards in docs/bayes.md)
  double autolearn_spam = 12;              // learn as spam when the other symbols sum to at least this
  double autolearn_ham = -1;               // learn as ham when they sum to at most this
};

// [antivirus] (filters/antivirus, tools/moat-scand.cpp, docs/antivirus.md).
// The max_* keys are libclamav's limits; the rest of CL_ENGINE_MAX_* is set
// to clamd's defaults in signatures/engine.hpp.
struct Antivirus {
  std::filesystem::path socket;            // default data_dir/run/moat-scand.sock
  std::filesystem::path scand;             // moat-scand binary; default: beside moatd
  bool supervise = true;                   // moatd starts moat-scand and restarts it when it dies
  std::vector<std::filesystem::path> signatures;  // our database folders (relative to the config file)
  std::filesystem::path system_signatures = "/var/lib/clamav";  // loaded too when it holds databases
  Seconds timeout{30};                     // one scan as moatd waits for it; then 451 and a restart
  unsigned threads = 2;                    // moat-scand scan workers
  std::uint64_t memory = 2ull << 30;       // moat-scand address-space cap (RLIMIT_AS); 0: none
  std::string user;                        // moat-scand runs as; default server.user, else "nobody"
  Seconds reload_check{60};                // database change check; 0: SIGHUP only
  std::uint64_t max_scan_size = 100u << 20;
  std::uint64_t max_file_size = 25u << 20;
  unsigned max_recursion = 17;
  unsigned max_files = 10000;
  std::chrono::milliseconds max_scan_time{20000};
};

// [attachments] (filters/attachments): what may not be attached. The global
// policy applies unless a [[attachments.domain]] for the recipient's domain
// replaces some of its keys.
struct AttachmentPolicy {
  std::vector<std::string> blocked_extensions;  // lower case, no dot
  std::vector<std::string> blocked_types;       // MIME types as libmagic names them
  bool block_encrypted = true;                  // encrypted archives (contents unscannable)
  bool block_double_extension = true;           // "invoice.pdf.exe"
};
struct AttachmentDomain {
  std::string name;                             // recipient domain, lower case
  AttachmentPolicy policy;
};
struct Attachments {
  AttachmentPolicy policy;
  std::vector<AttachmentDomain> domains;
  unsigned archive_depth = 3;                   // archives inside archives looked into
  unsigned max_archive_entries = 1000;          // per archive; more is ATTACHMENT_ARCHIVE_LIMIT
  const AttachmentPolicy& for_domain(std::string_view domain) const;  // case-insensitive
};
std::vector<std::string> default_blocked_extensions();
std::vector<std::string> default_blocked_types();

// [rules] (rules/, filters/rules; docs/rules.md): rule and score files.
struct Rules {
  std::vector<std::filesystem::path> dirs; // folders of *.rules and *.scores, read in name order; empty: the default set
  bool cache = true;                       // keep compiled databases in data_dir/rules-cache
};

// [local] (store/, docs/store.md): domains whose mail moat keeps in its own
// mailbox store. `moatctl domain add` adds more at run time (in the user
// database); these are the ones fixed in the file.
struct Local {
  std::vector<std::string> domains;        // lower case, no trailing dot; never also a relay domain
  // Codec for message bodies of at least compress_min bytes: LZ4 reads back
  // about 4x faster than zstd, zstd stores about a fifth fewer bytes.
  enum class Compression { None, Lz4, Zstd } compress = Compression::Lz4;
  std::size_t compress_min = 512;
  bool spam_to_junk = true;                // messages the policy tagged (X-Spam-Flag: YES) go to Junk
  Seconds compact_interval{3600};          // index compaction and body sweep
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
  Dnsbl dnsbl;
  Greylist greylist;
  RateLimit ratelimit;
  std::vector<Filter> filters;
  std::vector<std::pair<std::string, double>> scores;  // symbol -> score overrides
  Actions actions;
  std::vector<DomainActions> domain_actions;
  Quarantine quarantine;
  Dmarc dmarc;
  Arc arc;
  Spf spf;
  Dkim dkim;
  Bayes bayes;
  Antivirus antivirus;
  Attachments attachments;
  Rules rules;
  Local local;

  // data_dir-relative helpers
  std::filesystem::path spool_dir() const { return server.data_dir / "spool"; }
  std::filesystem::path db_path() const { return server.data_dir / "db" / "moat.sqlite"; }
  std::filesystem::path tls_dir() const { return server.data_dir / "tls"; }
  std::filesystem::path quarantine_dir() const { return server.data_dir / "quarantine"; }
  std::filesystem::path quarantine_db() const { return server.data_dir / "db" / "quarantine.sqlite"; }
  const RelayDomain* relay_domain(std::string_view domain) const;  // case-insensitive
  bool local_domain(std::string_view domain) const;                // [local] domains, case-insensitive
  std::filesystem::path store_dir() const { return server.data_dir / "store"; }
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

// "20/60s", "100/1h", "5/m" ("/m" is "/1m"): a count per period; nullopt when malformed.
std::optional<Rate> parse_rate(std::string_view s);

// The default symbol of a [[dnsbl.zone]]: "DNSBL_ZEN_SPAMHAUS_ORG" for an ip
// zone, "RHSBL_DBL_SPAMHAUS_ORG" for a domain zone (non-alphanumerics → '_').
std::string dnsbl_symbol(std::string_view zone, bool domain);

// RFC 1035 §2.3.1 preferred name syntax (letters, digits, hyphens; labels of
// 1..63, 253 in all); one trailing dot allowed. No underscores: these are
// host and mail domain names, not SRV/DKIM owner names.
bool is_domain_name(std::string_view s);

// The effective configuration as TOML that parse() reads back to the same
// values (paths absolute): `moatctl config show` and the fuzz round trip.
std::string to_toml(const Config& cfg);

}  // namespace moat::config

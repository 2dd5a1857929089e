// Loads moat.toml (TOML 1.0 via toml++) into a validated, immutable Config.
// Every key is checked: unknown keys, wrong types and out-of-range values are
// errors reported as "FILE:LINE: key: message", all of them at once, because a
// typo that silently does nothing is worse than a refusal to start.
//
// toml++ is used in its default exception mode (Debian's shared library only
// ships the `ex` ABI); this is the only translation unit that includes it, and
// parse errors are caught here and turned into values.
#include "common/config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <span>
#include <sstream>
#include <utility>

#include "common/text.hpp"
#include "filters/known.hpp"

namespace moat::config {
namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

constexpr std::uint64_t kKiB = 1024, kMiB = 1024 * kKiB, kGiB = 1024 * kMiB;

// Relay domain names and lookups: lower case, one trailing dot dropped.
std::string canonical_domain(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return lower(s);
}

std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a number";
    case toml::node_type::boolean: return "a boolean";
    default: return "a date/time";
  }
}

// All errors of one load, sorted by line when rendered.
class Errors {
 public:
  explicit Errors(std::string file) : file_(std::move(file)) {}
  void add(std::uint32_t line, std::string msg) { list_.emplace_back(std::max<std::uint32_t>(line, 1), std::move(msg)); }
  bool empty() const { return list_.empty(); }
  std::string render() {
    std::stable_sort(list_.begin(), list_.end(), [](auto& a, auto& b) { return a.first < b.first; });
    std::string out;
    for (auto& [line, msg] : list_) {
      if (!out.empty()) out += '\n';
      out += file_ + ":" + std::to_string(line) + ": " + msg;
    }
    return out;
  }

 private:
  std::string file_;
  std::vector<std::pair<std::uint32_t, std::string>> list_;
};

// Spellings of each enum, shared by the reader and to_toml().
template <class E>
using Names = std::span<const std::pair<std::string_view, E>>;
constexpr std::pair<std::string_view, ListenerMode> kModes[] = {
    {"smtp", ListenerMode::Smtp}, {"submission", ListenerMode::Submission}, {"submissions", ListenerMode::Submissions},
    {"imap", ListenerMode::Imap},   {"imaps", ListenerMode::Imaps},
    {"pop3", ListenerMode::Pop3},   {"pop3s", ListenerMode::Pop3s}};
constexpr std::pair<std::string_view, TlsPolicy> kTlsPolicies[] = {
    {"none", TlsPolicy::None}, {"may", TlsPolicy::May}, {"encrypt", TlsPolicy::Encrypt}};
constexpr std::pair<std::string_view, VerifyMode> kVerifyModes[] = {
    {"none", VerifyMode::None}, {"static", VerifyMode::Static}, {"callout", VerifyMode::Callout}};
constexpr std::pair<std::string_view, BareLinePolicy> kBareLine[] = {
    {"reject", BareLinePolicy::Reject}, {"normalize", BareLinePolicy::Normalize}};
constexpr std::pair<std::string_view, Local::Compression> kCompression[] = {
    {"none", Local::Compression::None}, {"lz4", Local::Compression::Lz4}, {"zstd", Local::Compression::Zstd}};
constexpr std::pair<std::string_view, FailMode> kFailModes[] = {{"open", FailMode::Open}, {"closed", FailMode::Closed}};

std::uint32_t line_of(const toml::node& n) { return n.source().begin.line; }

// One TOML table being read. Each getter marks its key as known; finish()
// reports whatever is left, which is how typos are caught.
class Section {
 public:
  Section(const toml::table& t, std::string path, Errors& errs) : t_(t), path_(std::move(path)), errs_(errs) {}

  std::uint32_t line() const { return line_of(t_); }
  std::string key_path(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  void error(const toml::node& n, std::string_view key, std::string_view msg) {
    errs_.add(line_of(n), key_path(key) + ": " + std::string(msg));
  }
  void error_here(std::string_view msg) {
    errs_.add(line(), (path_.empty() ? std::string("config") : path_) + ": " + std::string(msg));
  }

  const toml::node* get(std::string_view key) {
    used_.insert(std::string(key));
    return t_.get(key);
  }
  const toml::node* require(std::string_view key) {
    const auto* n = get(key);
    if (!n) errs_.add(line(), (path_.empty() ? std::string("config") : path_) + ": missing key '" + std::string(key) + "'");
    return n;
  }
  bool expect(const toml::node& n, std::string_view key, toml::node_type type, std::string_view want) {
    if (n.type() == type) return true;
    error(n, key, "expected " + std::string(want) + ", got " + std::string(type_name(n)));
    return false;
  }

  bool str(std::string_view key, std::string& out, bool required = false) {
    const auto* n = required ? require(key) : get(key);
    if (!n || !expect(*n, key, toml::node_type::string, "a string")) return false;
    out = n->as_string()->get();
    return true;
  }

  template <class T>
  void uint(std::string_view key, T& out, std::uint64_t min, std::uint64_t max) {
    const auto* n = get(key);
    if (!n || !expect(*n, key, toml::node_type::integer, "an integer")) return;
    auto v = n->as_integer()->get();
    if (v < 0 || std::uint64_t(v) < min || std::uint64_t(v) > max) {
      error(*n, key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
      return;
    }
    out = static_cast<T>(v);
  }

  void number(std::string_view key, double& out) {
    const auto* n = get(key);
    if (!n) return;
    if (auto i = n->as_integer()) {
      out = double(i->get());
    } else if (auto f = n->as_floating_point(); f && std::isfinite(f->get())) {
      out = f->get();
    } else {
      error(*n, key, "expected a finite number, got " + std::string(type_name(*n)));
    }
  }

  void boolean(std::string_view key, bool& out) {
    const auto* n = get(key);
    if (n && expect(*n, key, toml::node_type::boolean, "true or false")) out = n->as_boolean()->get();
  }

  std::optional<milliseconds> duration(std::string_view key, milliseconds min, milliseconds max) {
    const auto* n = get(key);
    if (!n) return std::nullopt;
    std::optional<milliseconds> d;
    if (auto i = n->as_integer()) {
      if (i->get() >= 0 && i->get() <= 100LL * 365 * 86400) d = std::chrono::seconds(i->get());
    } else if (auto s = n->as_string()) {
      d = parse_duration(s->get());
    }
    if (!d) {
      error(*n, key, "expected a duration like \"300s\", \"250ms\", \"5m\", \"2h\", \"5d\" or seconds");
      return std::nullopt;
    }
    if (*d < min || *d > max) {
      error(*n, key, "must be between " + show(min) + " and " + show(max));
      return std::nullopt;
    }
    return d;
  }

  void seconds(std::string_view key, Seconds& out, Seconds min, Seconds max) {
    auto d = duration(key, min, max);
    if (!d) return;
    if (d->count() % 1000 != 0) {
      error(*t_.get(key), key, "must be a whole number of seconds");
      return;
    }
    out = std::chrono::duration_cast<Seconds>(*d);
  }

  template <class E>
  void choice(std::string_view key, E& out, Names<E> options) {
    const auto* n = get(key);
    if (!n || !expect(*n, key, toml::node_type::string, "a string")) return;
    const auto& v = n->as_string()->get();
    std::string names;
    for (const auto& [name, e] : options) {
      if (v == name) {
        out = e;
        return;
      }
      names += (names.empty() ? "" : " | ") + std::string(name);
    }
    error(*n, key, "unknown value \"" + v + "\" (expected " + names + ")");
  }

  void host_port(std::string_view key, std::optional<HostPort>& out, std::uint16_t default_port) {
    std::string s;
    if (!str(key, s)) return;
    auto hp = parse_host_port(s, default_port);
    if (!hp || !(parse_ip(hp->host) || is_domain_name(hp->host)))
      return error(*t_.get(key), key, "expected host:port, [address]:port or host, got \"" + s + "\"");
    out = std::move(hp);
  }

  void path(std::string_view key, fs::path& out) {
    std::string s;
    if (!str(key, s)) return;
    if (s.empty() || s.find('\0') != std::string::npos) return error(*t_.get(key), key, "expected a non-empty path");
    out = s;
  }

  // Arrays of tables ([[listener]]): calls fn(table, path) for each.
  template <class Fn>
  void tables(std::string_view key, Fn&& fn) {
    const auto* n = get(key);
    if (!n) return;
    const auto* arr = n->as_array();
    if (!arr) return error(*n, key, "expected an array of tables ([[" + key_path(key) + "]])");
    for (std::size_t i = 0; i < arr->size(); ++i) {
      const auto& item = (*arr)[i];
      std::string p = key_path(key) + "[" + std::to_string(i + 1) + "]";
      if (const auto* t = item.as_table()) {
        Section s(*t, p, errs_);
        fn(s);
        s.finish();
      } else {
        errs_.add(line_of(item), p + ": expected a table, got " + std::string(type_name(item)));
      }
    }
  }

  // A sub-table ([limits]): calls fn(section) if present.
  template <class Fn>
  void table(std::string_view key, Fn&& fn) {
    const auto* n = get(key);
    if (!n) return;
    if (!expect(*n, key, toml::node_type::table, "a table")) return;
    Section s(*n->as_table(), key_path(key), errs_);
    fn(s);
    s.finish();
  }

  void finish() {
    for (const auto& [k, v] : t_)
      if (!used_.count(std::string(k.str())))
        errs_.add(line_of(v), "unknown key '" + key_path(k.str()) + "'");
  }

  const toml::table& raw() const { return t_; }
  Errors& errors() { return errs_; }

 private:
  static std::string show(milliseconds d) {
    if (d.count() % 1000 != 0) return std::to_string(d.count()) + "ms";
    return std::to_string(d.count() / 1000) + "s";
  }

  const toml::table& t_;
  std::string path_;
  Errors& errs_;
  std::set<std::string> used_;
};

constexpr Seconds kSecond{1};
constexpr Seconds kDay{86400};
constexpr Seconds kYear{365 * 86400};

// ---- sections ----

void read_server(Section& s, Server& srv) {
  if (s.str("hostname", srv.hostname) &&
      (!is_domain_name(srv.hostname) || srv.hostname.find('.') == std::string::npos ||
       srv.hostname.back() == '.'))
    s.error(*s.raw().get("hostname"), "hostname", "expected a fully-qualified host name like \"mx.example.org\"");
  s.path("data_dir", srv.data_dir);
  s.uint("threads", srv.threads, 0, 1024);
  if (s.str("user", srv.user) && !srv.user.empty() &&
      !std::all_of(srv.user.begin(), srv.user.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
      }))
    s.error(*s.raw().get("user"), "user", "expected a system user name");
  s.path("control_socket", srv.control_socket);
  if (s.str("authserv_id", srv.authserv_id) && !srv.authserv_id.empty() && !is_domain_name(srv.authserv_id))
    s.error(*s.raw().get("authserv_id"), "authserv_id", "expected a host name (RFC 8601 authserv-id)");
}

void read_listener(Section& s, Config& cfg) {
  Listener l;
  s.str("name", l.name, true);
  if (const auto* n = s.require("address"); n && s.expect(*n, "address", toml::node_type::string, "a string")) {
    const auto& text = n->as_string()->get();
    auto hp = parse_host_port(text, 25);
    if (!hp || !parse_ip(hp->host))
      s.error(*n, "address", "expected an IP address and port like \"127.0.0.1:25\" or \"[::]:25\", got \"" +
                                 text + "\"");
    else
      l.address = *hp;
  }
  s.choice("mode", l.mode, Names<ListenerMode>(kModes));
  cfg.listeners.push_back(std::move(l));
}

void check_listeners(const toml::table& root, Config& cfg, Errors& errs) {
  const auto* arr = root.get("listener") ? root.get("listener")->as_array() : nullptr;
  if (cfg.listeners.empty()) {
    errs.add(arr ? line_of(*arr) : 1, "at least one [[listener]] is required");
    return;
  }
  std::set<std::pair<std::string, std::uint16_t>> addrs;
  std::set<std::string> names;
  for (std::size_t i = 0; i < cfg.listeners.size(); ++i) {
    const auto& l = cfg.listeners[i];
    auto line = arr && i < arr->size() ? line_of((*arr)[i]) : 1;
    std::string p = "listener[" + std::to_string(i + 1) + "]";
    if (!l.name.empty() && !names.insert(l.name).second) errs.add(line, p + ": duplicate listener name '" + l.name + "'");
    auto ip = parse_ip(l.address.host);
    // Port 0 asks the kernel for a free port (tests), so it never collides.
    if (ip && l.address.port != 0 && !addrs.insert({ip->str(), l.address.port}).second)
      errs.add(line, p + ": duplicate listener address " + l.address.str());
  }
}

void read_limits(Section& s, Limits& l) {
  // RFC 5321 §4.5.3.1: text lines of 1000 octets must be accepted.
  s.uint("line_length", l.line_length, 1000, 1 * kMiB);
  s.uint("message_size", l.message_size, 1 * kKiB, 16 * kGiB);
  s.uint("header_size", l.header_size, 1 * kKiB, 64 * kMiB);
  s.uint("recipients", l.recipients, 1, 100000);
  s.uint("hard_errors", l.hard_errors, 1, 1000);
  s.seconds("command_timeout", l.command_timeout, kSecond, Seconds{3600});
  s.seconds("data_timeout", l.data_timeout, kSecond, kDay);
  s.uint("max_connections", l.max_connections, 1, 1000000);
  s.uint("connections_per_client", l.connections_per_client, 1, 1000000);
  s.uint("max_hops", l.max_hops, 1, 1000);
  s.uint("auth_failures", l.auth_failures, 1, 100);
  if (auto d = s.duration("greet_pause", milliseconds{0}, milliseconds{60000})) l.greet_pause = *d;
  s.choice("bare_line", l.bare_line, Names<BareLinePolicy>(kBareLine));
  if (l.connections_per_client > l.max_connections)
    s.error_here("connections_per_client must not exceed max_connections");
}


void read_recipients(Section& s, RelayDomain& d) {
  const auto* n = s.get("recipients");
  if (!n) return;
  if (!s.expect(*n, "recipients", toml::node_type::array, "an array of addresses")) return;
  for (const auto& item : *n->as_array()) {
    const auto* v = item.as_string();
    std::string a = v ? lower(v->get()) : std::string();
    auto at = a.rfind('@');
    bool ok = v && at != std::string::npos && canonical_domain(std::string_view(a).substr(at + 1)) == d.name &&
              a.find_first_of(" \t\r\n<>") == std::string::npos;
    if (!ok) {
      s.error(item, "recipients",
              "expected \"user@" + d.name + "\" or \"@" + d.name + "\" (an address in this domain)");
      continue;
    }
    d.recipients.push_back(a.substr(0, at + 1) + d.name);
  }
}

void read_domain(Section& s, Relay& relay) {
  RelayDomain d;
  if (s.str("name", d.name, true)) {
    d.name = canonical_domain(d.name);
    if (!is_domain_name(d.name)) s.error(*s.raw().get("name"), "name", "expected a domain name");
  }
  s.host_port("next_hop", d.next_hop, 25);
  s.choice("tls", d.tls, Names<TlsPolicy>(kTlsPolicies));
  s.choice("verify", d.verify, Names<VerifyMode>(kVerifyModes));
  read_recipients(s, d);
  s.seconds("callout_cache_ttl", d.callout_cache_ttl, Seconds{0}, 30 * kDay);
  if (d.verify == VerifyMode::Static && d.recipients.empty())
    s.error_here("verify = \"static\" needs a non-empty recipients list");
  if (d.verify != VerifyMode::Static && s.raw().get("recipients"))
    s.error(*s.raw().get("recipients"), "recipients", "is only used with verify = \"static\"");
  relay.domains.push_back(std::move(d));
}

void read_relay(Section& s, Relay& r) {
  if (const auto* n = s.get("networks"); n && s.expect(*n, "networks", toml::node_type::array, "an array of CIDRs")) {
    for (const auto& item : *n->as_array()) {
      auto c = item.as_string() ? parse_cidr(item.as_string()->get()) : std::nullopt;
      if (!c)
        s.error(item, "networks", "expected a CIDR like \"192.0.2.0/24\" or \"2001:db8::/32\"");
      else
        r.networks.push_back(*c);
    }
  }
  s.host_port("smarthost", r.smarthost, 25);
  s.choice("outbound_tls", r.outbound_tls, Names<TlsPolicy>(kTlsPolicies));
  s.tables("domain", [&](Section& d) { read_domain(d, r); });
  std::set<std::string> seen;
  const auto* arr = s.raw().get("domain") ? s.raw().get("domain")->as_array() : nullptr;
  for (std::size_t i = 0; i < r.domains.size(); ++i)
    if (!r.domains[i].name.empty() && !seen.insert(r.domains[i].name).second)
      s.errors().add(arr && i < arr->size() ? line_of((*arr)[i]) : s.line(),
                     "relay.domain[" + std::to_string(i + 1) + "]: duplicate domain '" + r.domains[i].name + "'");
}

void read_queue(Section& s, Queue& q) {
  s.seconds("min_backoff", q.min_backoff, kSecond, kDay);
  s.seconds("max_backoff", q.max_backoff, kSecond, 7 * kDay);
  s.seconds("lifetime", q.lifetime, Seconds{0}, kYear);
  s.seconds("bounce_lifetime", q.bounce_lifetime, Seconds{0}, kYear);
  s.seconds("scan_interval", q.scan_interval, kSecond, kDay);
  s.uint("destination_concurrency", q.destination_concurrency, 1, 10000);
  s.uint("total_concurrency", q.total_concurrency, 1, 100000);
  s.seconds("connect_timeout", q.connect_timeout, kSecond, Seconds{3600});
  s.seconds("command_timeout", q.command_timeout, kSecond, Seconds{3600});
  s.seconds("data_timeout", q.data_timeout, kSecond, kDay);
  s.uint("max_messages_per_connection", q.max_messages_per_connection, 1, 100000);
  if (q.min_backoff > q.max_backoff) s.error_here("min_backoff must not exceed max_backoff");
}

void read_dns(Section& s, Dns& d) {
  s.host_port("upstream", d.upstream, 53);
  s.seconds("timeout", d.timeout, kSecond, Seconds{300});
}

// ---- reputation: [dnsbl], [greylist], [ratelimit] ----

void read_cidrs(Section& s, std::string_view key, std::vector<Cidr>& out) {
  const auto* n = s.get(key);
  if (!n || !s.expect(*n, key, toml::node_type::array, "an array of CIDRs")) return;
  for (const auto& item : *n->as_array()) {
    auto c = item.as_string() ? parse_cidr(item.as_string()->get()) : std::nullopt;
    if (!c)
      s.error(item, key, "expected a CIDR like \"192.0.2.0/24\" or \"2001:db8::/32\"");
    else
      out.push_back(*c);
  }
}

bool is_symbol_name(std::string_view s);

bool ip_less_equal(const IpAddr& a, const IpAddr& b) { return a.b <= b.b; }

// "127.0.0.2" or "127.0.0.2-127.0.0.11": A records that mean "listed".
void read_answers(Section& s, DnsblZone& z) {
  const auto* n = s.get("answers");
  if (!n || !s.expect(*n, "answers", toml::node_type::array, "an array of addresses or ranges")) return;
  for (const auto& item : *n->as_array()) {
    std::string_view text = item.as_string() ? std::string_view(item.as_string()->get()) : std::string_view();
    auto dash = text.find('-');
    auto lo = parse_ip(text.substr(0, dash));
    auto hi = dash == std::string_view::npos ? lo : parse_ip(text.substr(dash + 1));
    if (!lo || !hi || !lo->v4 || !hi->v4 || !ip_less_equal(*lo, *hi)) {
      s.error(item, "answers", "expected an IPv4 address or range like \"127.0.0.2\" or \"127.0.0.2-127.0.0.11\"");
      continue;
    }
    z.answers.emplace_back(*lo, *hi);
  }
}

constexpr std::pair<std::string_view, bool> kZoneTypes[] = {{"ip", false}, {"domain", true}};

void read_zone(Section& s, Dnsbl& d) {
  DnsblZone z;
  if (s.str("zone", z.zone, true)) {
    z.zone = canonical_domain(z.zone);
    if (!is_domain_name(z.zone) || z.zone.find('.') == std::string::npos)
      s.error(*s.raw().get("zone"), "zone", "expected a DNS zone like \"zen.spamhaus.org\"");
  }
  s.choice("type", z.domain, Names<bool>(kZoneTypes));
  if (!s.raw().get("weight")) s.error_here("missing key 'weight' (the score of a listing)");
  s.number("weight", z.weight);
  if (std::abs(z.weight) > 1e6) s.error(*s.raw().get("weight"), "weight", "must be between -1000000 and 1000000");
  read_answers(s, z);
  if (s.str("symbol", z.symbol) && !is_symbol_name(z.symbol))
    s.error(*s.raw().get("symbol"), "symbol", "expected a symbol name in UPPER_SNAKE case");
  if (z.symbol.empty()) z.symbol = dnsbl_symbol(z.zone, z.domain);
  d.zones.push_back(std::move(z));
}

void read_dnsbl(Section& s, Dnsbl& d) {
  s.seconds("cache_ttl", d.cache_ttl, Seconds{0}, kDay);
  s.uint("cache_size", d.cache_size, 0, 10000000);
  s.tables("zone", [&](Section& z) { read_zone(z, d); });
  const auto* arr = s.raw().get("zone") ? s.raw().get("zone")->as_array() : nullptr;
  std::set<std::string> symbols, zones;
  for (std::size_t i = 0; i < d.zones.size(); ++i) {
    const auto& z = d.zones[i];
    auto line = arr && i < arr->size() ? line_of((*arr)[i]) : s.line();
    std::string p = "dnsbl.zone[" + std::to_string(i + 1) + "]: ";
    if (!z.zone.empty() && !zones.insert(z.zone + (z.domain ? "/domain" : "/ip")).second)
      s.errors().add(line, p + "zone '" + z.zone + "' is listed twice with the same type");
    else if (!symbols.insert(z.symbol).second)
      s.errors().add(line, p + "symbol '" + z.symbol + "' is used by another zone");
  }
}

void read_greylist(Section& s, Greylist& g) {
  s.seconds("delay", g.delay, Seconds{0}, kDay);
  s.seconds("retry_window", g.retry_window, kSecond, 30 * kDay);
  s.seconds("expiry", g.expiry, kSecond, kYear);
  s.uint("auto_allow_after", g.auto_allow_after, 0, 1000);
  s.uint("ipv4_prefix", g.ipv4_prefix, 8, 32);
  s.uint("ipv6_prefix", g.ipv6_prefix, 16, 128);
  read_cidrs(s, "whitelist", g.whitelist);
  if (g.retry_window <= g.delay) s.error_here("retry_window must be longer than delay");
}

void rate(Section& s, std::string_view key, Rate& out) {
  std::string text;
  if (!s.str(key, text)) return;
  auto r = parse_rate(text);
  if (!r || r->count < 1 || r->count > 1000000 || r->period < kSecond || r->period > 7 * kDay) {
    s.error(*s.raw().get(key), key,
            "expected a rate like \"20/60s\" or \"100/1h\" (1 to 1000000 per 1s to 7d, whole seconds)");
    return;
  }
  out = *r;
}

void read_ratelimit(Section& s, RateLimit& r) {
  rate(s, "connections", r.connections);
  rate(s, "messages", r.messages);
  rate(s, "recipients", r.recipients);
  rate(s, "user_messages", r.user_messages);
  rate(s, "user_recipients", r.user_recipients);
  s.uint("max_entries", r.max_entries, 100, 10000000);
  read_cidrs(s, "whitelist", r.whitelist);
}

void read_filter(Section& s, std::vector<Filter>& out) {
  Filter f;
  if (s.str("name", f.name, true) && !filters::is_known_filter(f.name)) {
    std::string known;
    for (auto k : filters::kKnownFilters) known += (known.empty() ? "" : ", ") + std::string(k);
    s.error(*s.raw().get("name"), "name", "unknown filter \"" + f.name + "\" (known: " + known + ")");
  }
  s.boolean("enabled", f.enabled);
  if (auto d = s.duration("budget", milliseconds{1}, milliseconds{600000})) f.budget = *d;
  s.choice("fail", f.fail, Names<FailMode>(kFailModes));
  for (const auto& prev : out)
    if (!f.name.empty() && prev.name == f.name) s.error_here("filter '" + f.name + "' is configured twice");
  out.push_back(std::move(f));
}

bool is_symbol_name(std::string_view s) {
  if (s.empty() || s.size() > 64 || !std::isupper(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isupper(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_';
  });
}

void read_scores(Section& s, Config& cfg) {
  for (const auto& [k, v] : s.raw()) {
    std::string name(k.str());
    if (!is_symbol_name(name)) {
      s.get(name);
      s.error(v, name, "expected a symbol name in UPPER_SNAKE case");
      continue;
    }
    double score = 0;
    s.number(name, score);
    if (std::abs(score) > 1e6) s.error(v, name, "score must be between -1000000 and 1000000");
    cfg.scores.emplace_back(std::move(name), score);
  }
}

constexpr std::pair<std::string_view, SpamHeaders> kSpamHeaders[] = {
    {"spam", SpamHeaders::Spam}, {"all", SpamHeaders::All}, {"none", SpamHeaders::None}};
constexpr std::pair<std::string_view, VirusAction> kVirusActions[] = {
    {"quarantine", VirusAction::Quarantine}, {"discard", VirusAction::Discard}};

// The keys of [actions] and of each [[actions.domain]] (which starts from [actions]).
void read_action_keys(Section& s, Actions& a) {
  s.number("tag", a.tag);
  s.number("quarantine", a.quarantine);
  s.number("tempfail", a.tempfail);
  s.number("reject", a.reject);
  s.number("discard", a.discard);
  // The prefix goes into the Subject: header, so no line breaks (header injection).
  if (s.str("subject_prefix", a.subject_prefix) &&
      (a.subject_prefix.size() > 64 ||
       std::any_of(a.subject_prefix.begin(), a.subject_prefix.end(),
                   [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })))
    s.error(*s.raw().get("subject_prefix"), "subject_prefix", "must be at most 64 characters without control characters");
  s.choice("spam_headers", a.spam_headers, Names<SpamHeaders>(kSpamHeaders));
  s.choice("virus", a.virus, Names<VirusAction>(kVirusActions));
}

void read_actions(Section& s, Config& cfg) {
  read_action_keys(s, cfg.actions);
  s.tables("domain", [&](Section& t) {
    DomainActions d{{}, cfg.actions};
    if (t.str("domain", d.domain, true)) {
      d.domain = canonical_domain(d.domain);
      if (!is_domain_name(d.domain)) t.error(*t.raw().get("domain"), "domain", "expected a domain name");
      for (const auto& prev : cfg.domain_actions)
        if (prev.domain == d.domain) t.error_here("domain '" + d.domain + "' is configured twice");
    }
    read_action_keys(t, d.actions);
    cfg.domain_actions.push_back(std::move(d));
  });
}

void read_quarantine(Section& s, Quarantine& q) {
  s.seconds("retention", q.retention, kSecond, 10 * kYear);
  s.seconds("rejected_retention", q.rejected_retention, Seconds{0}, 10 * kYear);
  s.seconds("expire_interval", q.expire_interval, Seconds{0}, kDay);
}

constexpr std::pair<std::string_view, DmarcPolicy> kDmarcPolicies[] = {
    {"none", DmarcPolicy::None}, {"quarantine", DmarcPolicy::Quarantine}, {"reject", DmarcPolicy::Reject}};

void read_dmarc(Section& s, Dmarc& d) {
  s.boolean("reports", d.reports);
  s.tables("override", [&](Section& t) {
    DmarcOverride o;
    if (t.str("domain", o.domain, true)) {
      o.domain = canonical_domain(o.domain);
      if (!is_domain_name(o.domain)) t.error(*t.raw().get("domain"), "domain", "expected a domain name");
      for (const auto& prev : d.overrides)
        if (prev.domain == o.domain) t.error_here("domain '" + o.domain + "' is overridden twice");
    }
    if (t.require("policy")) t.choice("policy", o.policy, Names<DmarcPolicy>(kDmarcPolicies));
    d.overrides.push_back(std::move(o));
  });
}

// DKIM/ARC selectors may hold underscores (RFC 6376 §3.1 uses sub-domain).
bool is_selector(std::string_view s) {
  return !s.empty() && s.size() <= 63 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

void read_arc(Section& s, Arc& a) {
  if (s.str("domain", a.domain)) {
    a.domain = canonical_domain(a.domain);
    if (!is_domain_name(a.domain)) s.error(*s.raw().get("domain"), "domain", "expected a domain name");
  }
  if (s.str("selector", a.selector) && !is_selector(a.selector))
    s.error(*s.raw().get("selector"), "selector", "expected a DKIM selector like \"arc2024\"");
  s.path("key", a.key);
  int set = !a.domain.empty() + !a.selector.empty() + !a.key.empty();
  if (set != 0 && set != 3) s.error_here("sealing needs all of domain, selector and key");
}

// [dkim]: header names go to libopendkim, so only letters, digits and '-'.
bool is_header_name(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
  });
}

void read_dkim_key(Section& s, Dkim& d) {
  DkimKey k;
  k.line = s.line();
  if (s.str("domain", k.domain, true)) {
    k.domain = canonical_domain(k.domain);
    if (!is_domain_name(k.domain)) s.error(*s.raw().get("domain"), "domain", "expected a domain name");
  }
  if (s.str("selector", k.selector, true) && !is_selector(k.selector))
    s.error(*s.raw().get("selector"), "selector", "expected a DKIM selector like \"mail2024\"");
  if (s.require("key")) s.path("key", k.key);
  for (const auto& prev : d.sign)
    if (!k.domain.empty() && prev.domain == k.domain && prev.selector == k.selector)
      s.error_here("domain '" + k.domain + "' with selector '" + k.selector + "' is configured twice");
  d.sign.push_back(std::move(k));
}

void read_dkim(Section& s, Dkim& d) {
  if (const auto* n = s.get("sign_headers");
      n && s.expect(*n, "sign_headers", toml::node_type::array, "an array of header names")) {
    for (const auto& item : *n->as_array()) {
      const auto* v = item.as_string();
      if (!v || !is_header_name(v->get()))
        s.error(item, "sign_headers", "expected a header field name like \"subject\"");
      else
        d.sign_headers.push_back(lower(v->get()));
    }
    // RFC 6376 §5.4: the From header field MUST be signed.
    if (std::find(d.sign_headers.begin(), d.sign_headers.end(), "from") == d.sign_headers.end())
      s.error(*n, "sign_headers", "must include \"from\" (RFC 6376 §5.4)");
  }
  s.uint("max_signatures", d.max_signatures, 1, 50);
  s.uint("min_key_bits", d.min_key_bits, 512, 8192);
  s.boolean("allow_sha1", d.allow_sha1);
  s.tables("sign", [&](Section& t) { read_dkim_key(t, d); });
}

void read_spf(Section& s, Spf& spf) { s.boolean("check_helo", spf.check_helo); }

void read_local(Section& s, Local& l, const Relay& relay) {
  if (const auto* n = s.get("domains"); n && s.expect(*n, "domains", toml::node_type::array, "an array of domains")) {
    for (const auto& item : *n->as_array()) {
      const auto* v = item.as_string();
      std::string d = v ? canonical_domain(v->get()) : std::string();
      if (!v || !is_domain_name(d)) {
        s.error(item, "domains", "expected a domain name");
        continue;
      }
      for (const auto& r : relay.domains)
        if (r.name == d) s.error(item, "domains", "'" + d + "' is also a [[relay.domain]]");
      if (std::find(l.domains.begin(), l.domains.end(), d) == l.domains.end()) l.domains.push_back(d);
    }
  }
  s.choice("compress", l.compress, Names<Local::Compression>(kCompression));
  s.uint("compress_min", l.compress_min, 0, std::uint64_t(1) << 30);
  s.boolean("spam_to_junk", l.spam_to_junk);
  s.seconds("compact_interval", l.compact_interval, Seconds{10}, Seconds{7 * 86400});
}

void read_rules(Section& s, Rules& r) {
  if (const auto* n = s.get("dirs"); n && s.expect(*n, "dirs", toml::node_type::array, "an array of folders")) {
    for (const auto& item : *n->as_array()) {
      const auto* v = item.as_string();
      if (!v || v->get().empty() || v->get().find('\0') != std::string::npos)
        s.error(item, "dirs", "expected a folder name");
      else
        r.dirs.emplace_back(v->get());
    }
  }
  s.boolean("cache", r.cache);
}

void read_bayes(Section& s, Bayes& b) {
  s.path("db", b.db);
  s.uint("min_spam", b.min_spam, 1, 1000000);
  s.uint("min_ham", b.min_ham, 1, 1000000);
  s.boolean("per_user", b.per_user);
  s.boolean("autolearn", b.autolearn);
  s.number("autolearn_spam", b.autolearn_spam);
  s.number("autolearn_ham", b.autolearn_ham);
  if (b.autolearn_ham >= b.autolearn_spam) s.error_here("autolearn_ham must be below autolearn_spam");
}

// ---- [antivirus] and [attachments] (docs/antivirus.md) ----

void read_antivirus(Section& s, Antivirus& av) {
  s.path("socket", av.socket);
  s.path("scand", av.scand);
  s.boolean("supervise", av.supervise);
  if (const auto* n = s.get("signatures"); n && s.expect(*n, "signatures", toml::node_type::array, "an array of folders")) {
    for (const auto& item : *n->as_array()) {
      const auto* v = item.as_string();
      if (!v || v->get().empty()) s.error(item, "signatures", "expected a folder path");
      else av.signatures.emplace_back(v->get());
    }
  }
  std::string sys;
  if (s.str("system_signatures", sys)) av.system_signatures = sys;  // "" turns it off
  s.seconds("timeout", av.timeout, kSecond, Seconds{3600});
  s.uint("threads", av.threads, 1, 64);
  s.uint("memory", av.memory, 0, std::uint64_t(1) << 40);
  if (av.memory != 0 && av.memory < 64 * kMiB) s.error_here("memory: must be 0 or at least 64 MiB");
  s.str("user", av.user);
  s.seconds("reload_check", av.reload_check, Seconds{0}, kDay);
  s.uint("max_scan_size", av.max_scan_size, kMiB, 4 * kGiB);
  s.uint("max_file_size", av.max_file_size, kKiB, 4 * kGiB);
  s.uint("max_recursion", av.max_recursion, 1, 100);
  s.uint("max_files", av.max_files, 1, 1000000);
  if (auto d = s.duration("max_scan_time", milliseconds{100}, milliseconds{3600000})) av.max_scan_time = *d;
  // libclamav must give up before moatd does, or a slow scan kills the scanner.
  if (av.max_scan_time >= milliseconds(av.timeout)) s.error_here("max_scan_time must be shorter than timeout");
}

// Lower-case strings matching ok(); errors name the key.
template <class Ok>
void read_words(Section& s, std::string_view key, std::vector<std::string>& out, std::string_view want, Ok ok) {
  const auto* n = s.get(key);
  if (!n || !s.expect(*n, key, toml::node_type::array, "an array of strings")) return;
  out.clear();
  for (const auto& item : *n->as_array()) {
    const auto* v = item.as_string();
    std::string w = v ? lower(v->get()) : std::string();
    if (!v || !ok(w)) s.error(item, key, "expected " + std::string(want));
    else out.push_back(std::move(w));
  }
}

void read_attachment_policy(Section& s, AttachmentPolicy& p) {
  read_words(s, "blocked_extensions", p.blocked_extensions, "a file extension without the dot, like \"exe\"",
             [](const std::string& w) {
               return !w.empty() && w.size() <= 32 && w[0] != '.' &&
                      std::all_of(w.begin(), w.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'; });
             });
  read_words(s, "blocked_types", p.blocked_types, "a MIME type like \"application/x-dosexec\"", [](const std::string& w) {
    auto slash = w.find('/');
    return slash != std::string::npos && slash > 0 && slash + 1 < w.size() && w.size() <= 128 &&
           std::all_of(w.begin(), w.end(), [](char c) { return std::isgraph(static_cast<unsigned char>(c)); });
  });
  s.boolean("block_encrypted", p.block_encrypted);
  s.boolean("block_double_extension", p.block_double_extension);
}

void read_attachments(Section& s, Attachments& a) {
  read_attachment_policy(s, a.policy);
  s.uint("archive_depth", a.archive_depth, 0, 10);
  s.uint("max_archive_entries", a.max_archive_entries, 1, 100000);
  s.tables("domain", [&](Section& t) {
    AttachmentDomain d{{}, a.policy};
    if (t.str("name", d.name, true)) {
      d.name = canonical_domain(d.name);
      if (!is_domain_name(d.name)) t.error(*t.raw().get("name"), "name", "expected a domain name");
      for (const auto& prev : a.domains)
        if (prev.name == d.name) t.error_here("domain '" + d.name + "' is configured twice");
    }
    read_attachment_policy(t, d.policy);
    a.domains.push_back(std::move(d));
  });
}

// Relative paths resolve against the config file's folder, so a config works
// wherever it is started from; then defaults hang off data_dir.
void resolve_paths(Config& cfg, const fs::path& name) {
  std::error_code ec;
  fs::path base = fs::absolute(name, ec).parent_path();
  auto resolve = [&](const fs::path& p) { return (base / p).lexically_normal(); };
  cfg.source = fs::absolute(name, ec).lexically_normal();
  cfg.server.data_dir = resolve(cfg.server.data_dir);
  cfg.tls.cert = cfg.tls.cert.empty() ? cfg.tls_dir() / "cert.pem" : resolve(cfg.tls.cert);
  cfg.tls.key = cfg.tls.key.empty() ? cfg.tls_dir() / "key.pem" : resolve(cfg.tls.key);
  if (!cfg.arc.key.empty()) cfg.arc.key = resolve(cfg.arc.key);
  cfg.bayes.db = cfg.bayes.db.empty() ? cfg.server.data_dir / "db" / "bayes.sqlite" : resolve(cfg.bayes.db);
  for (auto& k : cfg.dkim.sign) k.key = resolve(k.key);
  for (auto& d : cfg.rules.dirs) d = resolve(d);
  auto& av = cfg.antivirus;
  av.socket = av.socket.empty() ? cfg.server.data_dir / "run" / "moat-scand.sock" : resolve(av.socket);
  if (!av.scand.empty()) av.scand = resolve(av.scand);
  for (auto& d : av.signatures) d = resolve(d);
  cfg.server.control_socket = cfg.server.control_socket.empty() ? cfg.server.data_dir / "run" / "moatd.sock"
                                                                : resolve(cfg.server.control_socket);
}

void read_root(const toml::table& root, Config& cfg, Errors& errs) {
  Section s(root, "", errs);
  s.table("server", [&](Section& t) { read_server(t, cfg.server); });
  s.tables("listener", [&](Section& t) { read_listener(t, cfg); });
  check_listeners(root, cfg, errs);
  s.table("tls", [&](Section& t) {
    t.path("cert", cfg.tls.cert);
    t.path("key", cfg.tls.key);
  });
  s.table("limits", [&](Section& t) { read_limits(t, cfg.limits); });
  s.table("relay", [&](Section& t) { read_relay(t, cfg.relay); });
  s.table("queue", [&](Section& t) { read_queue(t, cfg.queue); });
  s.table("dns", [&](Section& t) { read_dns(t, cfg.dns); });
  s.table("dnsbl", [&](Section& t) { read_dnsbl(t, cfg.dnsbl); });
  s.table("greylist", [&](Section& t) { read_greylist(t, cfg.greylist); });
  s.table("ratelimit", [&](Section& t) { read_ratelimit(t, cfg.ratelimit); });
  if (root.get("filter")) {
    s.tables("filter", [&](Section& t) { read_filter(t, cfg.filters); });
  } else {
    // No [[filter]] at all: run the built-ins with their defaults. `filter = []`
    // is the explicit way to run none.
    for (auto k : filters::kKnownFilters)
      if (!filters::is_opt_in_filter(k)) cfg.filters.push_back(Filter{std::string(k)});
  }
  s.table("scores", [&](Section& t) { read_scores(t, cfg); });
  s.table("actions", [&](Section& t) { read_actions(t, cfg); });
  s.table("quarantine", [&](Section& t) { read_quarantine(t, cfg.quarantine); });
  s.table("dmarc", [&](Section& t) { read_dmarc(t, cfg.dmarc); });
  s.table("arc", [&](Section& t) { read_arc(t, cfg.arc); });
  s.table("spf", [&](Section& t) { read_spf(t, cfg.spf); });
  s.table("local", [&](Section& t) { read_local(t, cfg.local, cfg.relay); });
  s.table("bayes", [&](Section& t) { read_bayes(t, cfg.bayes); });
  s.table("dkim", [&](Section& t) { read_dkim(t, cfg.dkim); });
  s.table("antivirus", [&](Section& t) { read_antivirus(t, cfg.antivirus); });
  s.table("attachments", [&](Section& t) { read_attachments(t, cfg.attachments); });
  s.table("rules", [&](Section& t) { read_rules(t, cfg.rules); });
  s.finish();
}

// ---- rendering (to_toml) ----

std::string quote(std::string_view s) {
  std::ostringstream o;
  o << toml::value<std::string>(std::string(s));
  return o.str();
}

// The largest unit that divides evenly, so "5d" prints back as "5d".
std::string dur(milliseconds d) {
  static constexpr std::pair<std::int64_t, const char*> kUnits[] = {
      {86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
  for (auto [ms, unit] : kUnits)
    if (d.count() != 0 && d.count() % ms == 0) return std::to_string(d.count() / ms) + unit;
  return std::to_string(d.count()) + (d.count() == 0 ? "s" : "ms");
}
std::string dur(Seconds d) { return quote(dur(milliseconds(d))); }
std::string dur_ms(milliseconds d) { return quote(dur(d)); }

std::string num(double v) {
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, p);
  // TOML floats need a '.' or exponent; 1e+09 is valid TOML, "15" is an integer (also accepted).
  return s;
}

template <class E>
std::string_view enum_name(E e, Names<E> options) {
  for (const auto& [n, v] : options)
    if (v == e) return n;
  return "?";
}

template <class E, std::size_t N>
std::string name_of(E e, const std::pair<std::string_view, E> (&names)[N]) {
  return quote(enum_name(e, Names<E>(names)));
}

std::string rate_text(const Rate& r) { return quote(std::to_string(r.count) + "/" + dur(milliseconds(r.period))); }

std::string cidr_list(const std::vector<Cidr>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + quote(v[i].str());
  return out + "]";
}

void render_reputation(std::ostringstream& o, const Config& c) {
  o << "\n[dnsbl]\ncache_ttl = " << dur(c.dnsbl.cache_ttl) << "\ncache_size = " << c.dnsbl.cache_size << "\n";
  for (const auto& z : c.dnsbl.zones) {
    o << "\n[[dnsbl.zone]]\nzone = " << quote(z.zone) << "\ntype = " << quote(z.domain ? "domain" : "ip")
      << "\nweight = " << num(z.weight) << "\nsymbol = " << quote(z.symbol) << "\n";
    if (!z.answers.empty()) {
      o << "answers = [";
      for (std::size_t i = 0; i < z.answers.size(); ++i) {
        const auto& [lo, hi] = z.answers[i];
        o << (i ? ", " : "") << quote(lo == hi ? lo.str() : lo.str() + "-" + hi.str());
      }
      o << "]\n";
    }
  }
  const auto& g = c.greylist;
  o << "\n[greylist]\ndelay = " << dur(g.delay) << "\nretry_window = " << dur(g.retry_window)
    << "\nexpiry = " << dur(g.expiry) << "\nauto_allow_after = " << g.auto_allow_after
    << "\nipv4_prefix = " << g.ipv4_prefix << "\nipv6_prefix = " << g.ipv6_prefix
    << "\nwhitelist = " << cidr_list(g.whitelist) << "\n";
  const auto& r = c.ratelimit;
  o << "\n[ratelimit]\n";
  const std::pair<const char*, const Rate*> rates[] = {{"connections", &r.connections},
                                                       {"messages", &r.messages},
                                                       {"recipients", &r.recipients},
                                                       {"user_messages", &r.user_messages},
                                                       {"user_recipients", &r.user_recipients}};
  for (const auto& [key, rt] : rates)
    if (rt->enabled()) o << key << " = " << rate_text(*rt) << "\n";
  o << "max_entries = " << r.max_entries << "\nwhitelist = " << cidr_list(r.whitelist) << "\n";
}

std::string word_list(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + quote(v[i]);
  return out + "]";
}

void render_policy(std::ostringstream& o, const AttachmentPolicy& p) {
  o << "blocked_extensions = " << word_list(p.blocked_extensions) << "\nblocked_types = " << word_list(p.blocked_types)
    << "\nblock_encrypted = " << (p.block_encrypted ? "true" : "false")
    << "\nblock_double_extension = " << (p.block_double_extension ? "true" : "false") << "\n";
}

void render_content(std::ostringstream& o, const Config& c) {
  const auto& av = c.antivirus;
  o << "\n[antivirus]\nsocket = " << quote(av.socket.string()) << "\n";
  if (!av.scand.empty()) o << "scand = " << quote(av.scand.string()) << "\n";
  o << "supervise = " << (av.supervise ? "true" : "false") << "\nsignatures = [";
  for (std::size_t i = 0; i < av.signatures.size(); ++i) o << (i ? ", " : "") << quote(av.signatures[i].string());
  o << "]\nsystem_signatures = " << quote(av.system_signatures.string()) << "\ntimeout = " << dur(av.timeout)
    << "\nthreads = " << av.threads << "\nmemory = " << av.memory << "\n";
  if (!av.user.empty()) o << "user = " << quote(av.user) << "\n";
  o << "reload_check = " << dur(av.reload_check) << "\nmax_scan_size = " << av.max_scan_size
    << "\nmax_file_size = " << av.max_file_size << "\nmax_recursion = " << av.max_recursion
    << "\nmax_files = " << av.max_files << "\nmax_scan_time = " << dur_ms(av.max_scan_time) << "\n";
  const auto& at = c.attachments;
  o << "\n[attachments]\n";
  render_policy(o, at.policy);
  o << "archive_depth = " << at.archive_depth << "\nmax_archive_entries = " << at.max_archive_entries << "\n";
  for (const auto& d : at.domains) {
    o << "\n[[attachments.domain]]\nname = " << quote(d.name) << "\n";
    render_policy(o, d.policy);
  }
}

}  // namespace

// ---- public helpers ----

std::optional<milliseconds> parse_duration(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0 || i > 12) return std::nullopt;
  std::uint64_t n = 0;
  std::from_chars(s.data(), s.data() + i, n);
  auto unit = s.substr(i);
  std::uint64_t ms_per;
  if (unit.empty() || unit == "s") ms_per = 1000;
  else if (unit == "ms") ms_per = 1;
  else if (unit == "m") ms_per = 60 * 1000;
  else if (unit == "h") ms_per = 3600 * 1000;
  else if (unit == "d") ms_per = 86400 * 1000;
  else if (unit == "w") ms_per = 7 * 86400 * 1000;
  else return std::nullopt;
  return milliseconds(static_cast<milliseconds::rep>(n * ms_per));  // n < 10^12: no overflow
}

std::optional<Rate> parse_rate(std::string_view s) {
  auto slash = s.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash > 9) return std::nullopt;
  unsigned count = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + slash, count);
  if (ec != std::errc() || p != s.data() + slash) return std::nullopt;
  std::string per(s.substr(slash + 1));
  if (!per.empty() && !std::isdigit(static_cast<unsigned char>(per[0]))) per = "1" + per;  // "5/m"
  auto d = parse_duration(per);
  if (!d || d->count() % 1000 != 0) return std::nullopt;
  return Rate{count, std::chrono::duration_cast<Seconds>(*d)};
}

std::string dnsbl_symbol(std::string_view zone, bool domain) {
  std::string out = domain ? "RHSBL_" : "DNSBL_";
  for (char c : zone) out += std::isalnum(static_cast<unsigned char>(c)) ? char(std::toupper(static_cast<unsigned char>(c))) : '_';
  return out;
}

bool is_domain_name(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty() || s.size() > 253) return false;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto end = s.find('.', start);
    if (end == std::string_view::npos) end = s.size();
    auto label = s.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    start = end + 1;
  }
  return true;
}

bool Config::local_domain(std::string_view domain) const {
  auto key = canonical_domain(domain);
  return std::find(local.domains.begin(), local.domains.end(), key) != local.domains.end();
}

const RelayDomain* Config::relay_domain(std::string_view domain) const {
  auto key = canonical_domain(domain);
  for (const auto& d : relay.domains)
    if (d.name == key) return &d;
  return nullptr;
}

const AttachmentPolicy& Attachments::for_domain(std::string_view domain) const {
  auto key = canonical_domain(domain);
  for (const auto& d : domains)
    if (d.name == key) return d.policy;
  return policy;
}

// Windows executables and scripts, installers, shortcuts and disk images:
// what mail-borne malware arrives as (Microsoft's Outlook Level1 list, trimmed).
std::vector<std::string> default_blocked_extensions() {
  return {"ade", "adp", "app", "bat", "chm", "cmd", "com", "cpl", "exe", "hta", "img", "inf", "ins",
          "iso", "isp", "jar", "js", "jse", "lnk", "msc", "msi", "msp", "mst", "pif", "ps1", "reg",
          "scr", "sct", "shb", "shs", "vb", "vbe", "vbs", "vhd", "vhdx", "ws", "wsc", "wsf", "wsh"};
}

// True types (libmagic) that are executables whatever their name says.
std::vector<std::string> default_blocked_types() {
  return {"application/vnd.microsoft.portable-executable", "application/x-dosexec", "application/x-msdownload",
          "application/x-ms-shortcut", "application/x-msi"};
}

const Filter* Config::filter(std::string_view name) const {
  for (const auto& f : filters)
    if (f.name == name) return &f;
  return nullptr;
}

Result<Snapshot> parse(std::string_view text, const fs::path& name) {
  Errors errs(name.string());
  auto cfg = std::make_shared<Config>();
  cfg->attachments.policy.blocked_extensions = default_blocked_extensions();
  cfg->attachments.policy.blocked_types = default_blocked_types();
  try {
    toml::table root = toml::parse(text, name.string());
    read_root(root, *cfg, errs);
  } catch (const toml::parse_error& e) {
    errs.add(e.source().begin.line, std::string(e.description()));
  } catch (const std::exception& e) {
    errs.add(1, e.what());
  }
  if (!errs.empty()) return Error{Errc::Invalid, errs.render()};
  resolve_paths(*cfg, name);
  if (cfg->server.authserv_id.empty()) cfg->server.authserv_id = cfg->server.hostname;
  return Snapshot(std::move(cfg));
}

Result<Snapshot> load(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return Error{Errc::IoError, file.string() + ": cannot open: " + std::strerror(errno)};
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Error{Errc::IoError, file.string() + ": read error"};
  return parse(buf.str(), file);
}

static void render_actions(std::ostream& o, const Actions& a) {
  o << "tag = " << num(a.tag) << "\nquarantine = " << num(a.quarantine) << "\ntempfail = " << num(a.tempfail)
    << "\nreject = " << num(a.reject) << "\ndiscard = " << num(a.discard) << "\n";
  // Always written: an empty prefix in [[actions.domain]] overrides [actions].
  o << "subject_prefix = " << quote(a.subject_prefix) << "\n";
  o << "spam_headers = " << name_of(a.spam_headers, kSpamHeaders) << "\nvirus = " << name_of(a.virus, kVirusActions)
    << "\n";
}

std::string to_toml(const Config& c) {
  std::ostringstream o;
  o << "# effective configuration of " << c.source.string() << "\n";
  // A bare key must come before the first table header or it lands inside it.
  if (c.filters.empty()) o << "filter = []  # no filters run\n";
  o << "\n[server]\n"
    << "hostname = " << quote(c.server.hostname) << "\ndata_dir = " << quote(c.server.data_dir.string())
    << "\nthreads = " << c.server.threads << "\n";
  if (!c.server.user.empty()) o << "user = " << quote(c.server.user) << "\n";
  o << "control_socket = " << quote(c.server.control_socket.string()) << "\n";
  if (!c.server.authserv_id.empty()) o << "authserv_id = " << quote(c.server.authserv_id) << "\n";
  for (const auto& l : c.listeners)
    o << "\n[[listener]]\nname = " << quote(l.name) << "\naddress = " << quote(l.address.str()) << "\nmode = "
      << name_of(l.mode, kModes)
      << "\n";
  o << "\n[tls]\ncert = " << quote(c.tls.cert.string()) << "\nkey = " << quote(c.tls.key.string()) << "\n";
  const auto& l = c.limits;
  o << "\n[limits]\nline_length = " << l.line_length << "\nmessage_size = " << l.message_size
    << "\nheader_size = " << l.header_size << "\nrecipients = " << l.recipients << "\nhard_errors = " << l.hard_errors
    << "\ncommand_timeout = " << dur(l.command_timeout) << "\ndata_timeout = " << dur(l.data_timeout)
    << "\nmax_connections = " << l.max_connections << "\nconnections_per_client = " << l.connections_per_client
    << "\nmax_hops = " << l.max_hops << "\nauth_failures = " << l.auth_failures
    << "\ngreet_pause = " << dur_ms(l.greet_pause)
    << "\nbare_line = " << name_of(l.bare_line, kBareLine) << "\n";
  o << "\n[relay]\nnetworks = [";
  for (std::size_t i = 0; i < c.relay.networks.size(); ++i) o << (i ? ", " : "") << quote(c.relay.networks[i].str());
  o << "]\n";
  if (c.relay.smarthost) o << "smarthost = " << quote(c.relay.smarthost->str()) << "\n";
  o << "outbound_tls = " << name_of(c.relay.outbound_tls, kTlsPolicies) << "\n";
  for (const auto& d : c.relay.domains) {
    o << "\n[[relay.domain]]\nname = " << quote(d.name) << "\n";
    if (d.next_hop) o << "next_hop = " << quote(d.next_hop->str()) << "\n";
    o << "tls = " << name_of(d.tls, kTlsPolicies) << "\nverify = "
      << name_of(d.verify, kVerifyModes)
      << "\n";
    if (!d.recipients.empty()) {
      o << "recipients = [";
      for (std::size_t i = 0; i < d.recipients.size(); ++i) o << (i ? ", " : "") << quote(d.recipients[i]);
      o << "]\n";
    }
    o << "callout_cache_ttl = " << dur(d.callout_cache_ttl) << "\n";
  }
  const auto& q = c.queue;
  o << "\n[queue]\nmin_backoff = " << dur(q.min_backoff) << "\nmax_backoff = " << dur(q.max_backoff)
    << "\nlifetime = " << dur(q.lifetime) << "\nbounce_lifetime = " << dur(q.bounce_lifetime)
    << "\nscan_interval = " << dur(q.scan_interval) << "\ndestination_concurrency = " << q.destination_concurrency
    << "\ntotal_concurrency = " << q.total_concurrency << "\nconnect_timeout = " << dur(q.connect_timeout)
    << "\ncommand_timeout = " << dur(q.command_timeout) << "\ndata_timeout = " << dur(q.data_timeout)
    << "\nmax_messages_per_connection = " << q.max_messages_per_connection << "\n";
  o << "\n[dns]\n";
  if (c.dns.upstream) o << "upstream = " << quote(c.dns.upstream->str()) << "\n";
  o << "timeout = " << dur(c.dns.timeout) << "\n";
  render_reputation(o, c);
  for (const auto& f : c.filters)
    o << "\n[[filter]]\nname = " << quote(f.name) << "\nenabled = " << (f.enabled ? "true" : "false")
      << "\nbudget = " << dur_ms(f.budget) << "\nfail = " << name_of(f.fail, kFailModes)
      << "\n";
  o << "\n[scores]\n";
  for (const auto& [sym, score] : c.scores) o << sym << " = " << num(score) << "\n";
  o << "\n[actions]\n";
  render_actions(o, c.actions);
  for (const auto& d : c.domain_actions) {
    o << "\n[[actions.domain]]\ndomain = " << quote(d.domain) << "\n";
    render_actions(o, d.actions);
  }
  const auto& qr = c.quarantine;
  o << "\n[quarantine]\nretention = " << dur(qr.retention) << "\nrejected_retention = " << dur(qr.rejected_retention)
    << "\nexpire_interval = " << dur(qr.expire_interval) << "\n";
  o << "\n[dmarc]\nreports = " << (c.dmarc.reports ? "true" : "false") << "\n";
  for (const auto& d : c.dmarc.overrides)
    o << "\n[[dmarc.override]]\ndomain = " << quote(d.domain) << "\npolicy = " << name_of(d.policy, kDmarcPolicies)
      << "\n";
  if (c.arc.sealing())
    o << "\n[arc]\ndomain = " << quote(c.arc.domain) << "\nselector = " << quote(c.arc.selector)
      << "\nkey = " << quote(c.arc.key.string()) << "\n";
  o << "\n[spf]\ncheck_helo = " << (c.spf.check_helo ? "true" : "false") << "\n";
  o << "\n[local]\ndomains = [";
  for (std::size_t i = 0; i < c.local.domains.size(); ++i) o << (i ? ", " : "") << quote(c.local.domains[i]);
  o << "]\ncompress = " << name_of(c.local.compress, kCompression)
    << "\ncompress_min = " << c.local.compress_min
    << "\nspam_to_junk = " << (c.local.spam_to_junk ? "true" : "false")
    << "\ncompact_interval = " << dur(c.local.compact_interval) << "\n";
  const auto& by = c.bayes;
  o << "\n[bayes]\ndb = " << quote(by.db.string()) << "\nmin_spam = " << by.min_spam << "\nmin_ham = " << by.min_ham
    << "\nper_user = " << (by.per_user ? "true" : "false") << "\nautolearn = " << (by.autolearn ? "true" : "false")
    << "\nautolearn_spam = " << num(by.autolearn_spam) << "\nautolearn_ham = " << num(by.autolearn_ham) << "\n";
  const auto& dk = c.dkim;
  o << "\n[dkim]\nmax_signatures = " << dk.max_signatures << "\nmin_key_bits = " << dk.min_key_bits
    << "\nallow_sha1 = " << (dk.allow_sha1 ? "true" : "false") << "\n";
  if (!dk.sign_headers.empty()) {
    o << "sign_headers = [";
    for (std::size_t i = 0; i < dk.sign_headers.size(); ++i) o << (i ? ", " : "") << quote(dk.sign_headers[i]);
    o << "]\n";
  }
  for (const auto& k : dk.sign)
    o << "\n[[dkim.sign]]\ndomain = " << quote(k.domain) << "\nselector = " << quote(k.selector)
      << "\nkey = " << quote(k.key.string()) << "\n";
  render_content(o, c);
  o << "\n[rules]\n";
  if (!c.rules.dirs.empty()) {
    o << "dirs = [";
    for (std::size_t i = 0; i < c.rules.dirs.size(); ++i) o << (i ? ", " : "") << quote(c.rules.dirs[i].string());
    o << "]\n";
  }
  o << "cache = " << (c.rules.cache ? "true" : "false") << "\n";
  return o.str();
}

}  // namespace moat::config

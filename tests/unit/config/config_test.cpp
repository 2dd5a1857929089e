// Config loader: the shipped etc/moat.toml loads, defaults and path
// resolution, and each validation error names FILE:LINE.
#include <catch2/catch.hpp>

#include <string>

#include "common/config.hpp"

using namespace moat;
using namespace moat::config;
using namespace std::chrono_literals;

namespace {

constexpr const char* kMinimal =
    "[[listener]]\n"
    "name = \"smtp\"\n"
    "address = \"127.0.0.1:2525\"\n";

// Parses text named /srv/moat/etc/t.toml and returns the error detail ("" if it loaded).
std::string errors_of(const std::string& text) {
  auto r = parse(text, "/srv/moat/etc/t.toml");
  return r ? std::string() : r.error().detail;
}

Snapshot ok(const std::string& text) {
  auto r = parse(text, "/srv/moat/etc/t.toml");
  INFO((r ? std::string() : r.error().detail));
  REQUIRE(r);
  return *r;
}

}  // namespace

TEST_CASE("the shipped etc/moat.toml loads", "[config]") {
  const std::filesystem::path src = MOAT_SOURCE_DIR;
  auto r = load(src / "etc" / "moat.toml");
  INFO((r ? std::string() : r.error().detail));
  REQUIRE(r);
  const Config& c = **r;
  CHECK(c.server.hostname == "moat.localdomain");
  CHECK(c.server.data_dir == (src / "var").lexically_normal());
  CHECK(c.server.control_socket == (src / "var" / "run" / "moatd.sock").lexically_normal());
  CHECK(c.tls.cert == (src / "var" / "tls" / "cert.pem").lexically_normal());
  REQUIRE(c.listeners.size() == 7);
  CHECK(c.listeners[0].address == HostPort{"127.0.0.1", 2525});
  CHECK(c.listeners[1].mode == ListenerMode::Submission);
  CHECK(c.listeners[2].mode == ListenerMode::Submissions);
  CHECK(c.listeners[3].address == HostPort{"127.0.0.1", 2143});
  CHECK(c.listeners[4].mode == ListenerMode::Imaps);
  CHECK(c.listeners[5].address == HostPort{"127.0.0.1", 2110});
  CHECK(c.listeners[6].mode == ListenerMode::Pop3s);
  CHECK(c.limits.line_length == 2048);
  CHECK(c.limits.command_timeout == 300s);
  CHECK(c.limits.bare_line == BareLinePolicy::Reject);
  CHECK(c.queue.lifetime == Seconds{5 * 86400});
  CHECK(c.queue.max_backoff == 4000s);
  CHECK(c.dns.timeout == 10s);
  CHECK_FALSE(c.dns.upstream);
  const auto* d = c.relay_domain("Example.TEST.");
  REQUIRE(d);
  CHECK(d->next_hop == HostPort{"127.0.0.1", 2526});
  CHECK(d->verify == VerifyMode::None);
  REQUIRE(c.filters.size() == 5);
  CHECK(c.filter("helo")->budget == 1000ms);
  CHECK(c.filter("helo")->fail == FailMode::Closed);
  CHECK(c.filter("hops")->budget == 5000ms);
  CHECK(c.filter("nope") == nullptr);
  CHECK(c.actions.reject == 15.0);
  CHECK(c.actions.tempfail == 1e9);
}

TEST_CASE("a minimal config gets the documented defaults", "[config]") {
  auto c = ok(kMinimal);
  CHECK(c->source == "/srv/moat/etc/t.toml");
  CHECK(c->server.data_dir == "/srv/moat/etc/var");
  CHECK(c->tls.cert == "/srv/moat/etc/var/tls/cert.pem");
  CHECK(c->tls.key == "/srv/moat/etc/var/tls/key.pem");
  CHECK(c->server.control_socket == "/srv/moat/etc/var/run/moatd.sock");
  CHECK(c->listeners[0].mode == ListenerMode::Smtp);
  CHECK(c->limits.max_hops == 50);
  // No [[filter]]: every filter that needs no outside service runs with defaults.
  REQUIRE(c->filters.size() == 5);
  CHECK(c->filters[0].name == "helo");
  CHECK(c->filters[3].name == "rules");
  CHECK(c->filters[4].name == "attachments");
  CHECK(c->filters[0].fail == FailMode::Closed);
  CHECK(ok("filter = []\n" + std::string(kMinimal))->filters.empty());
}

TEST_CASE("paths resolve against the config file's folder", "[config]") {
  auto c = ok(std::string("[server]\ndata_dir = \"../data\"\ncontrol_socket = \"/run/moat.sock\"\n"
                          "[tls]\ncert = \"certs/c.pem\"\n") + kMinimal);
  CHECK(c->server.data_dir == "/srv/moat/data");
  CHECK(c->server.control_socket == "/run/moat.sock");
  CHECK(c->tls.cert == "/srv/moat/etc/certs/c.pem");
  CHECK(c->tls.key == "/srv/moat/data/tls/key.pem");  // default follows data_dir
}

TEST_CASE("durations", "[config]") {
  CHECK(parse_duration("300s") == 300000ms);
  CHECK(parse_duration("250ms") == 250ms);
  CHECK(parse_duration("5d") == std::chrono::milliseconds(5 * 86400 * 1000LL));
  CHECK(parse_duration("2h") == 7200000ms);
  CHECK(parse_duration("10m") == 600000ms);
  CHECK(parse_duration("1w") == std::chrono::milliseconds(7 * 86400 * 1000LL));
  CHECK(parse_duration("42") == 42000ms);
  for (const char* bad : {"", "s", "-1s", "1.5s", "1 s", "1sec", "1S", "9999999999999s", "1s2"})
    CHECK_FALSE(parse_duration(bad));
  auto c = ok(std::string("[limits]\ncommand_timeout = 30\ngreet_pause = \"250ms\"\n") + kMinimal);
  CHECK(c->limits.command_timeout == 30s);
  CHECK(c->limits.greet_pause == 250ms);
}

TEST_CASE("relay domains are lower-cased and looked up case-insensitively", "[config]") {
  auto c = ok(std::string(kMinimal) +
              "[relay]\nnetworks = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n"
              "[[relay.domain]]\nname = \"Example.ORG.\"\nverify = \"static\"\n"
              "recipients = [\"Alice@Example.org\", \"@example.org.\"]\n");
  REQUIRE(c->relay.domains.size() == 1);
  CHECK(c->relay.domains[0].name == "example.org");
  CHECK(c->relay.domains[0].recipients == std::vector<std::string>{"alice@example.org", "@example.org"});
  CHECK(c->relay_domain("EXAMPLE.org") != nullptr);
  CHECK(c->relay_domain("example.org.") != nullptr);
  CHECK(c->relay_domain("sub.example.org") == nullptr);
  CHECK(c->relay.networks.size() == 2);
}

TEST_CASE("each error names FILE:LINE", "[config]") {
  struct Case { std::string text; std::string expect; };
  const std::string L = kMinimal;  // 3 lines
  auto c = GENERATE_COPY(values<Case>({
      {L + "[limits]\nline_lenght = 4096\n", "t.toml:5: unknown key 'limits.line_lenght'"},
      {L + "[limts]\n", "t.toml:4: unknown key 'limts'"},
      {L + "[limits]\nline_length = \"big\"\n", "t.toml:5: limits.line_length: expected an integer, got a string"},
      {L + "[limits]\nline_length = 10\n", "t.toml:5: limits.line_length: must be between 1000 and 1048576"},
      {L + "[limits]\nrecipients = -1\n", "t.toml:5: limits.recipients: must be between 1 and 100000"},
      {L + "[limits]\ncommand_timeout = \"5 minutes\"\n", "t.toml:5: limits.command_timeout: expected a duration"},
      {L + "[limits]\ndata_timeout = \"1500ms\"\n", "t.toml:5: limits.data_timeout: must be a whole number of seconds"},
      {L + "[limits]\nbare_line = \"fix\"\n", "t.toml:5: limits.bare_line: unknown value \"fix\" (expected reject | normalize)"},
      {"[server]\nhostname = \"moat\"\n" + L, "t.toml:2: server.hostname: expected a fully-qualified host name"},
      {"[server]\n", "t.toml:1: at least one [[listener]] is required"},
      {L + "[[listener]]\nname = \"x\"\naddress = \"127.0.0.1:2525\"\n", "t.toml:4: listener[2]: duplicate listener address 127.0.0.1:2525"},
      {L + "[[listener]]\nname = \"x\"\naddress = \"localhost:25\"\n", "t.toml:6: listener[2].address: expected an IP address and port"},
      {L + "[[listener]]\nname = \"x\"\n", "t.toml:4: listener[2]: missing key 'address'"},
      {L + "[[listener]]\nname = \"x\"\naddress = \"[::1]:25\"\nmode = \"lmtp\"\n", "t.toml:7: listener[2].mode: unknown value \"lmtp\""},
      {L + "[listener]\n", "t.toml:4:"},  // TOML itself: listener redefined as a table
      {L + "[relay]\nnetworks = [\"10.0.0.0/33\"]\n", "t.toml:5: relay.networks: expected a CIDR"},
      {L + "[[relay.domain]]\nname = \"bad_domain..org\"\n", "t.toml:5: relay.domain[1].name: expected a domain name"},
      {L + "[[relay.domain]]\nname = \"a.org\"\n[[relay.domain]]\nname = \"A.org.\"\n", "t.toml:6: relay.domain[2]: duplicate domain 'a.org'"},
      {L + "[[relay.domain]]\nname = \"a.org\"\nverify = \"static\"\n", "t.toml:4: relay.domain[1]: verify = \"static\" needs a non-empty recipients list"},
      {L + "[[relay.domain]]\nname = \"a.org\"\nrecipients = [\"x@a.org\"]\n", "t.toml:6: relay.domain[1].recipients: is only used with verify = \"static\""},
      {L + "[[relay.domain]]\nname = \"a.org\"\nverify = \"static\"\nrecipients = [\"x@b.org\"]\n", "t.toml:7: relay.domain[1].recipients: expected \"user@a.org\""},
      {L + "[[relay.domain]]\nname = \"a.org\"\nnext_hop = \"a.org:99999\"\n", "t.toml:6: relay.domain[1].next_hop: expected host:port"},
      {L + "[queue]\nmin_backoff = \"2h\"\nmax_backoff = \"1h\"\n", "t.toml:4: queue: min_backoff must not exceed max_backoff"},
      {L + "[[filter]]\nname = \"nope\"\n", "t.toml:5: filter[1].name: unknown filter \"nope\" (known: helo, hops, size, "},
      {L + "[[filter]]\nname = \"helo\"\nbudget = \"0ms\"\n", "t.toml:6: filter[1].budget: must be between 1ms and 600s"},
      {L + "[[filter]]\nname = \"helo\"\nfail = \"maybe\"\n", "t.toml:6: filter[1].fail: unknown value"},
      {L + "[[filter]]\nname = \"helo\"\n[[filter]]\nname = \"helo\"\n", "t.toml:6: filter[2]: filter 'helo' is configured twice"},
      {L + "[scores]\nhelo_not_fqdn = 2\n", "t.toml:5: scores.helo_not_fqdn: expected a symbol name in UPPER_SNAKE case"},
      {L + "[scores]\nHELO_NOT_FQDN = \"2\"\n", "t.toml:5: scores.HELO_NOT_FQDN: expected a finite number"},
      {L + "[actions]\nreject = nan\n", "t.toml:5: actions.reject: expected a finite number"},
      {L + "[actions]\nsubject_prefix = \"x\\r\\nBcc: y\"\n", "t.toml:5: actions.subject_prefix: must be at most 64"},
      {"server = 1\n" + L, "t.toml:1: server: expected a table, got an integer"},
      {L + "key = \n", "t.toml:4:"},  // TOML syntax error
  }));
  CAPTURE(c.text);
  auto err = errors_of(c.text);
  CHECK_THAT(err, Catch::Matches(".*/srv/moat/etc/" + std::string() + ".*") || Catch::Contains("t.toml"));
  CHECK_THAT(err, Catch::Contains(c.expect));
  auto r = parse(c.text, "/srv/moat/etc/t.toml");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::Invalid);
}

TEST_CASE("all errors are reported, one per line, in file order", "[config]") {
  auto err = errors_of(
      "[limits]\n"
      "max_hops = 0\n"          // 2
      "typo = 1\n"              // 3
      "[[listener]]\n"          // 4
      "name = \"a\"\n"
      "address = \"nowhere\"\n" // 6
      "[dns]\n"
      "timeout = \"forever\"\n"); // 8
  CHECK(err ==
        "/srv/moat/etc/t.toml:2: limits.max_hops: must be between 1 and 1000\n"
        "/srv/moat/etc/t.toml:3: unknown key 'limits.typo'\n"
        "/srv/moat/etc/t.toml:6: listener[1].address: expected an IP address and port like \"127.0.0.1:25\" or "
        "\"[::]:25\", got \"nowhere\"\n"
        "/srv/moat/etc/t.toml:8: dns.timeout: expected a duration like \"300s\", \"250ms\", \"5m\", \"2h\", \"5d\" "
        "or seconds");
}

TEST_CASE("to_toml reads back to the same configuration", "[config]") {
  const std::filesystem::path src = MOAT_SOURCE_DIR;
  auto a = load(src / "etc" / "moat.toml");
  REQUIRE(a);
  auto text = to_toml(**a);
  auto b = parse(text, "/elsewhere/x.toml");  // paths are absolute, so the folder does not matter
  INFO(text);
  REQUIRE(b);
  auto body = [](const std::string& t) { return t.substr(t.find('\n')); };  // line 1 names the source
  CHECK(body(to_toml(**b)) == body(text));
  CHECK((*b)->server.data_dir == (*a)->server.data_dir);
}

TEST_CASE("load reports a missing file", "[config]") {
  auto r = load("/nonexistent/moat.toml");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::IoError);
  CHECK_THAT(r.error().detail, Catch::StartsWith("/nonexistent/moat.toml: cannot open"));
}

TEST_CASE("is_domain_name", "[config]") {
  for (const char* good : {"example.org", "a", "mx-1.example.org.", "xn--bcher-kva.example", "1.2.3.4"})
    CHECK(is_domain_name(good));
  for (const char* bad : {"", ".", "a..b", "-a.org", "a-.org", "a_b.org", "a b", "a.org..",
                          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org"})
    CHECK_FALSE(is_domain_name(bad));
}

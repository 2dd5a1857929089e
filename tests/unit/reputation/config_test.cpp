// [dnsbl], [greylist] and [ratelimit]: defaults, every validation error with
// FILE:LINE, and the to_toml round trip.
#include <catch2/catch.hpp>

#include <string>

#include "common/config.hpp"

using namespace moat;
using namespace moat::config;

namespace {

const std::string kBase =
    "[[listener]]\n"
    "name = \"smtp\"\n"
    "address = \"127.0.0.1:2525\"\n";  // 3 lines: sections below start on line 4

std::string errors_of(const std::string& text) {
  auto r = parse(kBase + text, "/srv/moat/etc/t.toml");
  return r ? std::string() : r.error().detail;
}

Snapshot ok(const std::string& text) {
  auto r = parse(kBase + text, "/srv/moat/etc/t.toml");
  INFO((r ? std::string() : r.error().detail));
  REQUIRE(r);
  return *r;
}

}  // namespace

TEST_CASE("reputation config: defaults and opt-in filters", "[config][reputation]") {
  auto c = ok("");
  CHECK(c->dnsbl.zones.empty());
  CHECK(c->dnsbl.cache_ttl == Seconds(300));
  CHECK(c->greylist.delay == Seconds(300));
  CHECK(c->greylist.expiry == Seconds(36 * 86400));
  CHECK(c->greylist.ipv4_prefix == 24);
  CHECK_FALSE(c->ratelimit.connections.enabled());
  // No [[filter]] tables: the built-ins run, the reputation checks do not.
  for (const auto& f : c->filters) {
    CHECK(f.name != "dnsbl");
    CHECK(f.name != "greylist");
    CHECK(f.name != "ratelimit");
  }
}

TEST_CASE("reputation config: a full example", "[config][reputation]") {
  auto c = ok(
      "[dnsbl]\ncache_ttl = \"10m\"\ncache_size = 500\n"
      "[[dnsbl.zone]]\nzone = \"ZEN.Spamhaus.org.\"\nweight = 20\nanswers = [\"127.0.0.2-127.0.0.11\", \"127.0.1.5\"]\n"
      "[[dnsbl.zone]]\nzone = \"dbl.spamhaus.org\"\ntype = \"domain\"\nweight = 7.5\nsymbol = \"MY_DBL\"\n"
      "[greylist]\ndelay = \"2s\"\nretry_window = \"1d\"\nauto_allow_after = 0\nwhitelist = [\"192.0.2.0/24\"]\n"
      "[ratelimit]\nconnections = \"20/60s\"\nuser_recipients = \"500/1h\"\nwhitelist = [\"::1/128\"]\n");
  REQUIRE(c->dnsbl.zones.size() == 2);
  CHECK(c->dnsbl.zones[0].zone == "zen.spamhaus.org");
  CHECK(c->dnsbl.zones[0].symbol == "DNSBL_ZEN_SPAMHAUS_ORG");
  CHECK(c->dnsbl.zones[0].answers.size() == 2);
  CHECK(c->dnsbl.zones[1].domain);
  CHECK(c->dnsbl.zones[1].symbol == "MY_DBL");
  CHECK(c->dnsbl.zones[1].weight == 7.5);
  CHECK(c->greylist.delay == Seconds(2));
  CHECK(c->greylist.auto_allow_after == 0);
  CHECK(c->ratelimit.connections == Rate{20, Seconds(60)});
  CHECK(c->ratelimit.user_recipients == Rate{500, Seconds(3600)});
  CHECK_FALSE(c->ratelimit.messages.enabled());

  // to_toml reads back to the same text.
  auto text = to_toml(*c);
  auto b = parse(text, "/elsewhere/x.toml");
  INFO(text);
  REQUIRE(b);
  auto body = [](const std::string& t) { return t.substr(t.find('\n')); };
  CHECK(body(to_toml(**b)) == body(text));
  CHECK((*b)->dnsbl.zones[0].answers == c->dnsbl.zones[0].answers);
}

TEST_CASE("reputation config: each error names FILE:LINE", "[config][reputation]") {
  struct Case {
    std::string text, error;
  };
  const std::string f = "/srv/moat/etc/t.toml:";
  auto c = GENERATE_COPY(values<Case>({
      {"[[dnsbl.zone]]\nzone = \"nodot\"\nweight = 1\n", f + "5: dnsbl.zone[1].zone: expected a DNS zone like \"zen.spamhaus.org\""},
      {"[[dnsbl.zone]]\nzone = \"bl.example.com\"\n", f + "4: dnsbl.zone[1]: missing key 'weight' (the score of a listing)"},
      {"[[dnsbl.zone]]\nzone = \"bl.example.com\"\nweight = 1\ntype = \"asn\"\n",
       f + "7: dnsbl.zone[1].type: unknown value \"asn\" (expected ip | domain)"},
      {"[[dnsbl.zone]]\nzone = \"bl.example.com\"\nweight = 1\nanswers = [\"127.0.0.9-127.0.0.2\"]\n",
       f + "7: dnsbl.zone[1].answers: expected an IPv4 address or range like \"127.0.0.2\" or \"127.0.0.2-127.0.0.11\""},
      {"[[dnsbl.zone]]\nzone = \"bl.example.com\"\nweight = 1\nsymbol = \"lower\"\n",
       f + "7: dnsbl.zone[1].symbol: expected a symbol name in UPPER_SNAKE case"},
      {"[[dnsbl.zone]]\nzone = \"bl.example.com\"\nweight = 1\n[[dnsbl.zone]]\nzone = \"bl.example.com\"\nweight = 2\n",
       f + "7: dnsbl.zone[2]: zone 'bl.example.com' is listed twice with the same type"},
      {"[[dnsbl.zone]]\nzone = \"bl.example.com\"\nweight = 1\nttl = 5\n", f + "7: unknown key 'dnsbl.zone[1].ttl'"},
      {"[dnsbl]\ncache_ttl = \"2d\"\n", f + "5: dnsbl.cache_ttl: must be between 0s and 86400s"},
      {"[greylist]\ndelay = \"10m\"\nretry_window = \"5m\"\n", f + "4: greylist: retry_window must be longer than delay"},
      {"[greylist]\nipv4_prefix = 33\n", f + "5: greylist.ipv4_prefix: must be between 8 and 32"},
      {"[greylist]\nwhitelist = [\"192.0.2.0/33\"]\n",
       f + "5: greylist.whitelist: expected a CIDR like \"192.0.2.0/24\" or \"2001:db8::/32\""},
      {"[ratelimit]\nmessages = \"20 per minute\"\n",
       f + "5: ratelimit.messages: expected a rate like \"20/60s\" or \"100/1h\" (1 to 1000000 per 1s to 7d, whole seconds)"},
      {"[ratelimit]\nconnections = \"0/60s\"\n",
       f + "5: ratelimit.connections: expected a rate like \"20/60s\" or \"100/1h\" (1 to 1000000 per 1s to 7d, whole seconds)"},
      {"[ratelimit]\nmax_entries = 5\n", f + "5: ratelimit.max_entries: must be between 100 and 10000000"},
      {"[ratelimit]\nburst = 5\n", f + "5: unknown key 'ratelimit.burst'"},
  }));
  INFO(c.text);
  CHECK(errors_of(c.text) == c.error);
}

// [dmarc] and [arc] in moat.toml: values, FILE:LINE errors, to_toml round trip.
#include <catch2/catch.hpp>

#include "common/config.hpp"

using namespace moat;

namespace {

const std::string kBase = "[[listener]]\nname = \"mx\"\naddress = \"127.0.0.1:2525\"\n";

}  // namespace

TEST_CASE("config: [dmarc] and [arc]", "[dmarc][config]") {
  auto c = config::parse(kBase +
                             "[dmarc]\nreports = false\n"
                             "[[dmarc.override]]\ndomain = \"Example.COM.\"\npolicy = \"quarantine\"\n"
                             "[[dmarc.override]]\ndomain = \"example.org\"\npolicy = \"none\"\n"
                             "[arc]\ndomain = \"example.net\"\nselector = \"arc_2024\"\nkey = \"keys/arc.pem\"\n",
                         "/etc/moat/moat.toml");
  REQUIRE(c);
  const auto& cfg = **c;
  CHECK_FALSE(cfg.dmarc.reports);
  REQUIRE(cfg.dmarc.overrides.size() == 2);
  CHECK(cfg.dmarc.overrides[0].domain == "example.com");
  CHECK(cfg.dmarc.overrides[0].policy == config::DmarcPolicy::Quarantine);
  CHECK(cfg.arc.sealing());
  CHECK(cfg.arc.key == "/etc/moat/keys/arc.pem");

  auto again = config::parse(config::to_toml(cfg), "/etc/moat/moat.toml");
  REQUIRE(again);
  CHECK(config::to_toml(**again) == config::to_toml(cfg));
  CHECK((*again)->dmarc.overrides.size() == 2);
  CHECK((*again)->arc.selector == "arc_2024");

  auto d = config::parse(kBase, "m.toml");
  REQUIRE(d);
  CHECK((*d)->dmarc.reports);
  CHECK_FALSE((*d)->arc.sealing());
}

TEST_CASE("config: [dmarc] and [arc] errors name file and line", "[dmarc][config]") {
  auto bad = config::parse(kBase +
                               "[dmarc]\nreport = true\n"
                               "[[dmarc.override]]\ndomain = \"not a domain\"\npolicy = \"drop\"\n"
                               "[[dmarc.override]]\npolicy = \"none\"\n"
                               "[arc]\ndomain = \"example.net\"\n",
                           "m.toml");
  REQUIRE_FALSE(bad);
  const auto& e = bad.error().detail;
  INFO(e);
  CHECK(e.find("m.toml:5: unknown key 'dmarc.report'") != std::string::npos);
  CHECK(e.find("m.toml:7: dmarc.override[1].domain: expected a domain name") != std::string::npos);
  CHECK(e.find("dmarc.override[1].policy: unknown value \"drop\"") != std::string::npos);
  CHECK(e.find("dmarc.override[2]: missing key 'domain'") != std::string::npos);
  CHECK(e.find("arc: sealing needs all of domain, selector and key") != std::string::npos);
  auto dup = config::parse(kBase + "[[dmarc.override]]\ndomain = \"a.example\"\npolicy = \"none\"\n"
                                   "[[dmarc.override]]\ndomain = \"A.example\"\npolicy = \"reject\"\n",
                           "m.toml");
  REQUIRE_FALSE(dup);
  CHECK(dup.error().detail.find("overridden twice") != std::string::npos);
}

// [actions] additions (discard, spam_headers, virus, [[actions.domain]]) and
// [quarantine]: defaults, validation with FILE:LINE, and the to_toml round trip.
#include <catch2/catch.hpp>

#include "common/config.hpp"

using namespace moat;
using namespace moat::config;

namespace {

constexpr const char* kListener = "[[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:2525\"\n";

Result<Snapshot> load_text(const std::string& text) { return parse(kListener + text, "/srv/moat/etc/t.toml"); }

}  // namespace

TEST_CASE("[actions] per domain and [quarantine] load", "[quarantine][config]") {
  auto r = load_text(
      "[actions]\nreject = 20\nsubject_prefix = \"[SPAM] \"\nspam_headers = \"all\"\nvirus = \"discard\"\n"
      "discard = 40\n"
      "[[actions.domain]]\ndomain = \"Strict.Test.\"\nreject = 6\n"
      "[[actions.domain]]\ndomain = \"lax.test\"\nquarantine = 1000\nsubject_prefix = \"\"\n"
      "[quarantine]\nretention = \"14d\"\nrejected_retention = 0\nexpire_interval = \"10m\"\n");
  INFO((r ? std::string() : r.error().detail));
  REQUIRE(r);
  const Config& c = **r;
  CHECK(c.actions.reject == 20);
  CHECK(c.actions.discard == 40);
  CHECK(c.actions.spam_headers == SpamHeaders::All);
  CHECK(c.actions.virus == VirusAction::Discard);
  REQUIRE(c.domain_actions.size() == 2);
  CHECK(c.domain_actions[0].domain == "strict.test");
  CHECK(c.domain_actions[0].actions.reject == 6);
  CHECK(c.domain_actions[0].actions.tag == 5);                 // from the defaults
  CHECK(c.domain_actions[0].actions.subject_prefix == "[SPAM] ");  // from [actions]
  CHECK(c.domain_actions[1].actions.subject_prefix.empty());
  CHECK(c.domain_actions[1].actions.reject == 20);
  CHECK(c.quarantine.retention == std::chrono::seconds(14 * 86400));
  CHECK(c.quarantine.rejected_retention.count() == 0);
  CHECK(c.quarantine.expire_interval == std::chrono::seconds(600));
  CHECK(c.quarantine_dir() == c.server.data_dir / "quarantine");

  auto again = parse(to_toml(c), "/srv/moat/etc/t.toml");
  INFO((again ? std::string() : again.error().detail));
  REQUIRE(again);
  // Our sections read back the same ([actions] through [quarantine]).
  auto ours = [](const std::string& t) {
    auto b = t.find("\n[actions]\n");
    auto e = t.find("\n[", t.find("\n[quarantine]\n") + 1);
    return b == std::string::npos ? std::string() : t.substr(b, e - b);
  };
  CHECK(!ours(to_toml(c)).empty());
  CHECK(ours(to_toml(**again)) == ours(to_toml(c)));
  CHECK((*again)->domain_actions.size() == 2);
  CHECK((*again)->actions.virus == VirusAction::Discard);
}

TEST_CASE("defaults: 30 days, 7 for rejected copies, hourly expiry", "[quarantine][config]") {
  auto r = load_text("");
  REQUIRE(r);
  CHECK((*r)->quarantine.retention == std::chrono::seconds(30 * 86400));
  CHECK((*r)->quarantine.rejected_retention == std::chrono::seconds(7 * 86400));
  CHECK((*r)->quarantine.expire_interval == std::chrono::seconds(3600));
  CHECK((*r)->actions.virus == VirusAction::Quarantine);
  CHECK((*r)->actions.spam_headers == SpamHeaders::Spam);
  CHECK((*r)->domain_actions.empty());
}

TEST_CASE("[actions] and [quarantine] errors name the line", "[quarantine][config]") {
  struct Case {
    const char* text;
    const char* error;
  };
  auto c = GENERATE(values<Case>({
      {"[actions]\nvirus = \"reject\"\n", "t.toml:5: actions.virus: unknown value \"reject\""},
      {"[actions]\nspam_headers = \"yes\"\n", "t.toml:5: actions.spam_headers: unknown value"},
      {"[[actions.domain]]\nreject = 3\n", "t.toml:4: actions.domain[1]: missing key 'domain'"},
      {"[[actions.domain]]\ndomain = \"a.test\"\n[[actions.domain]]\ndomain = \"A.test\"\n",
       "actions.domain[2]: domain 'a.test' is configured twice"},
      {"[[actions.domain]]\ndomain = \"bad domain\"\n", "t.toml:5: actions.domain[1].domain: expected a domain name"},
      {"[[actions.domain]]\ndomain = \"a.test\"\ncolour = 1\n", "t.toml:6: unknown key 'actions.domain[1].colour'"},
      {"[[actions.domain]]\ndomain = \"a.test\"\nsubject_prefix = \"x\\r\\nBcc: y\"\n",
       "actions.domain[1].subject_prefix: must be at most 64 characters without control characters"},
      {"[quarantine]\nretention = 0\n", "t.toml:5: quarantine.retention: must be between"},
      {"[quarantine]\nkeep = true\n", "t.toml:5: unknown key 'quarantine.keep'"},
  }));
  auto r = load_text(c.text);
  REQUIRE(!r);
  CAPTURE(c.text);
  CHECK_THAT(r.error().detail, Catch::Contains(c.error));
}

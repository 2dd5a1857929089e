// DKIM key records (RFC 6376 §3.6.1, RFC 8463 §4.2) and keys: parse and
// write round trips, TXT splitting for publication, key generation and the
// RFC 8301 size floor.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "filters/dkim/key.hpp"
#include "tests/support/temp_dir.hpp"

using namespace moat;
using namespace moat::filters::dkim;

TEST_CASE("dkim: key records parse and print back", "[dkim]") {
  std::string err;
  auto r = parse_key_record("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", &err);
  REQUIRE(r);
  CHECK(r->k == "ed25519");
  CHECK(format_key_record(*r) == "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
  auto again = parse_key_record(format_key_record(*r));
  REQUIRE(again);
  CHECK(again->p == r->p);

  auto revoked = parse_key_record("v=DKIM1; p=");
  REQUIRE(revoked);
  CHECK(revoked->revoked());
  CHECK(revoked->k == "rsa");

  CHECK_FALSE(parse_key_record("k=rsa; v=DKIM1; p=YQ==", &err));  // v= must come first
  CHECK(err == "bad key record version");
  CHECK_FALSE(parse_key_record("v=DKIM1; k=xxx; p=YQ==", &err));
  CHECK_FALSE(parse_key_record("v=DKIM1; k=rsa", &err));
  CHECK(err == "key record without p=");
  CHECK_FALSE(parse_key_record("v=DKIM1; p=not*base64", &err));
  CHECK_FALSE(parse_key_record(std::string(kMaxKeyRecord + 1, 'a'), &err));
  CHECK(parse_key_record("p=YWJj ZA==")->p == "YWJjZA==");  // FWS inside p= is not data
}

TEST_CASE("dkim: TXT data is split into 255-byte strings", "[dkim]") {
  CHECK(split_txt("abc") == std::vector<std::string>{"abc"});
  auto parts = split_txt(std::string(600, 'x'));
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].size() == 255);
  CHECK(parts[2].size() == 90);
  CHECK(zone_line("sel", "example.org", "v=DKIM1; p=") == "sel._domainkey.example.org. IN TXT \"v=DKIM1; p=\"");
}

TEST_CASE("dkim: generated keys load back with their public half", "[dkim]") {
  test::TempDir dir;
  for (auto type : {KeyType::Rsa, KeyType::Ed25519}) {
    auto k = generate_key(type);
    REQUIRE(k);
    CHECK(k->type == type);
    CHECK(k->bits == (type == KeyType::Rsa ? 2048u : 256u));
    auto path = dir.path / "k.pem";
    std::ofstream(path) << k->pem;
    auto loaded = load_private_key(path);
    REQUIRE(loaded);
    CHECK(loaded->public_b64 == k->public_b64);
    CHECK(loaded->type == type);
    // RFC 8463 §4.2: an Ed25519 p= is the bare 32-byte key (44 base64 chars).
    if (type == KeyType::Ed25519) CHECK(k->public_b64.size() == 44);
    auto rec = parse_key_record(format_key_record(KeyRecord{"DKIM1", std::string(key_type_name(type)), "", "", "", k->public_b64}));
    REQUIRE(rec);
  }
}

TEST_CASE("dkim: unusable private keys are refused with the reason", "[dkim]") {
  test::TempDir dir;
  auto missing = load_private_key(dir.path / "nope.pem");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().detail.find("cannot open") != std::string::npos);
  std::ofstream(dir.path / "junk.pem") << "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  CHECK_FALSE(load_private_key(dir.path / "junk.pem"));
  auto small = generate_key(KeyType::Rsa, 768);
  REQUIRE(small);
  auto refused = parse_private_key(small->pem, 1024);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().detail.find("RFC 8301") != std::string::npos);
  CHECK(parse_private_key(small->pem, 512));
}

TEST_CASE("dkim: every prefix of a key record parses without harm", "[dkim]") {
  const std::string rec = "v=DKIM1; k=ed25519; h=sha256; t=s; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
  for (std::size_t n = 0; n <= rec.size(); ++n) {
    std::string err;
    auto r = parse_key_record(std::string_view(rec).substr(0, n), &err);
    if (!r) {
      CHECK_FALSE(err.empty());
      continue;
    }
    // Only prefixes that reach into p= can parse, and p= is then base64 or empty.
    CHECK(n >= rec.find("p="));
    CHECK(r->k == "ed25519");
  }
}

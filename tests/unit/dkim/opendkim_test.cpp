// libopendkim through moat's adapter, in memory (keys handed over as looked-up
// records): sign and verify round trips for RSA-2048 and Ed25519, each way a
// signature can fail, the key lookup outcomes, rsa-sha1 and the temperror
// rule of the filter.
#include <catch2/catch.hpp>

#include "filters/dkim/dkim.hpp"
#include "filters/dkim/opendkim.hpp"

using namespace moat;
using namespace moat::filters::dkim;

namespace {

constexpr std::string_view kHeader =
    "From: Joe SixPack <joe@example.org>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@example.org>\r\n";
constexpr std::string_view kBody = "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";

struct Signed {
  std::string header;  // with the DKIM-Signature on top
  PrivateKey key;
};

std::unique_ptr<OpenDkim> lib(LibOptions o = {}) {
  if (o.sign_headers.empty()) o.sign_headers = kDefaultSignHeaders;
  auto l = OpenDkim::create(o);
  REQUIRE(l);
  return std::move(*l);
}

Signed sign(KeyType type, std::string_view selector = "sel") {
  auto key = generate_key(type);
  REQUIRE(key);
  auto field = lib()->sign(kHeader, kBody, *key, "example.org", selector);
  REQUIRE(field);
  CHECK(field->rfind("DKIM-Signature: v=1; a=", 0) == 0);
  CHECK(field->ends_with("\r\n"));
  return {*field + std::string(kHeader), *key};
}

KeyAnswers answer(const PrivateKey& key, std::string_view selector = "sel") {
  KeyAnswers k;
  k[key_name(selector, "example.org")] = {KeyStatus::Found, "v=DKIM1; k=" + std::string(key_type_name(key.type)) +
                                                                 "; p=" + key.public_b64};
  return k;
}

Outcome verify_one(const std::string& header, std::string_view body, const KeyAnswers& keys, LibOptions o = {}) {
  auto sigs = find_signatures(header, 10);
  REQUIRE(sigs.size() >= 1);
  auto out = lib(o)->verify(header, body, sigs, keys);
  REQUIRE(out.size() == sigs.size());
  return out[0];
}

}  // namespace

TEST_CASE("dkim: our signatures verify, RSA-2048 and Ed25519", "[dkim][opendkim]") {
  for (auto type : {KeyType::Rsa, KeyType::Ed25519}) {
    auto s = sign(type);
    auto sig = find_signatures(s.header, 10).at(0);
    CHECK(sig.a == signing_algorithm(type));
    CHECK(sig.d == "example.org");
    auto o = verify_one(s.header, kBody, answer(s.key));
    CHECK(o.result == "pass");
    CHECK(o.reason.empty());
  }
}

TEST_CASE("dkim: altered body, header, wrong key, missing and revoked keys", "[dkim][opendkim]") {
  auto s = sign(KeyType::Rsa);
  CHECK(verify_one(s.header, "Hi.\r\n\r\nWe won the game.\r\n", answer(s.key)).reason == "body hash did not verify");
  CHECK(verify_one(s.header, "Hi.\r\n\r\nWe won the game.\r\n", answer(s.key)).result == "fail");

  std::string forged = s.header;
  forged.replace(forged.find("Is dinner ready?"), 16, "Is lunch ready?");
  auto o = verify_one(forged, kBody, answer(s.key));
  CHECK(o.result == "fail");
  CHECK(o.reason == "signature did not verify");

  // Over-signing (h= lists From once more than present): a second From breaks it.
  std::string added = s.header + "From: mallory@evil.example\r\n";
  CHECK(verify_one(added, kBody, answer(s.key)).result == "fail");

  auto other = generate_key(KeyType::Rsa);
  REQUIRE(other);
  CHECK(verify_one(s.header, kBody, answer(*other)).result == "fail");

  KeyAnswers none;
  none[key_name("sel", "example.org")] = {KeyStatus::NotFound, {}};
  o = verify_one(s.header, kBody, none);
  CHECK(o.result == "permerror");
  CHECK(o.reason == "no key for signature");

  KeyAnswers revoked;
  revoked[key_name("sel", "example.org")] = {KeyStatus::Found, "v=DKIM1; k=rsa; p="};
  CHECK(verify_one(s.header, kBody, revoked).result == "permerror");

  KeyAnswers temp;
  temp[key_name("sel", "example.org")] = {KeyStatus::TempFail, {}};
  o = verify_one(s.header, kBody, temp);
  CHECK(o.result == "temperror");

  KeyAnswers garbage;
  garbage[key_name("sel", "example.org")] = {KeyStatus::Found, "v=DKIM1; k=rsa; p=AAAA"};
  CHECK(verify_one(s.header, kBody, garbage).result == "permerror");

  // A key never fetched is never guessed at.
  CHECK(verify_one(s.header, kBody, KeyAnswers{}).result == "permerror");
}

TEST_CASE("dkim: two signatures, one good and one broken, are judged apart", "[dkim][opendkim]") {
  auto rsa = sign(KeyType::Rsa, "r");
  auto ed = generate_key(KeyType::Ed25519);
  REQUIRE(ed);
  auto field = lib()->sign(kHeader, kBody, *ed, "example.org", "e");
  REQUIRE(field);
  std::string header = *field + rsa.header;
  KeyAnswers keys = answer(rsa.key, "r");
  keys[key_name("e", "example.org")] = {KeyStatus::TempFail, {}};
  auto sigs = find_signatures(header, 10);
  auto out = lib()->verify(header, kBody, sigs, keys);
  REQUIRE(out.size() == 2);
  CHECK(out[0].result == "temperror");
  CHECK(out[1].result == "pass");
  // Both are example.org, the From domain: the pass speaks for it, no retry.
  CHECK_FALSE(must_retry(sigs, out, "example.org"));
  // With only the temperror left there is nothing to go on: retry.
  std::vector<Outcome> only_temp{out[0], {"permerror", "x"}};
  CHECK(must_retry(sigs, only_temp, "example.org"));
}

TEST_CASE("dkim: rsa-sha1 is a permerror unless allowed (RFC 8301)", "[dkim][opendkim]") {
  auto key = generate_key(KeyType::Rsa);
  REQUIRE(key);
  // libopendkim signs sha1 too; build one by hand through its C API is not
  // needed: a sha1 a= tag is refused before any crypto.
  std::string header =
      "DKIM-Signature: v=1; a=rsa-sha1; d=example.org; s=sel; h=from; bh=YQ==; b=YWJj\r\n" + std::string(kHeader);
  auto o = verify_one(header, kBody, answer(*key));
  CHECK(o.result == "permerror");
  CHECK(o.reason.find("RFC 8301") != std::string::npos);
  LibOptions allow;
  allow.allow_sha1 = true;
  CHECK(verify_one(header, kBody, answer(*key), allow).result == "fail");  // checked now, and wrong
}

TEST_CASE("dkim: must_retry table", "[dkim]") {
  auto sig = [](std::string d) {
    Signature s;
    s.valid = true;
    s.d = std::move(d);
    return s;
  };
  std::vector<Signature> sigs{sig("example.org"), sig("esp.example.net")};
  using O = std::vector<Outcome>;
  CHECK_FALSE(must_retry(sigs, O{{"pass", ""}, {"fail", ""}}, "example.org"));
  CHECK(must_retry(sigs, O{{"temperror", ""}, {"fail", ""}}, "example.org"));
  CHECK(must_retry(sigs, O{{"temperror", ""}, {"pass", ""}}, "example.org"));        // the From domain's own is unknown
  CHECK_FALSE(must_retry(sigs, O{{"pass", ""}, {"temperror", ""}}, "example.org"));  // the ESP's is not needed
  CHECK_FALSE(must_retry(sigs, O{{"pass", ""}, {"temperror", ""}}, "mail.example.org"));
  CHECK(must_retry(sigs, O{{"permerror", ""}, {"temperror", ""}}, ""));
}

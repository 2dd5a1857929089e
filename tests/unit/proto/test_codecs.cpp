// base64 (RFC 4648), xtext (RFC 3461 §4) and SASL PLAIN/LOGIN (RFC 4616,
// RFC 4954) decoding.
#include <catch2/catch.hpp>

#include <random>

#include "common/base64.hpp"
#include "common/proto/sasl.hpp"
#include "common/proto/xtext.hpp"

using namespace moat;
using namespace moat::proto;

TEST_CASE("base64 RFC 4648 test vectors") {
  using Row = std::pair<std::string, std::string>;
  auto [plain, enc] = GENERATE(Row{"", ""}, Row{"f", "Zg=="}, Row{"fo", "Zm8="}, Row{"foo", "Zm9v"},
                               Row{"foob", "Zm9vYg=="}, Row{"fooba", "Zm9vYmE="}, Row{"foobar", "Zm9vYmFy"},
                               Row{std::string("\0\xff\xfe", 3), "AP/+"});
  CHECK(base64_encode(plain) == enc);
  auto d = base64_decode(enc);
  REQUIRE(d.ok());
  CHECK(*d == plain);
}

TEST_CASE("base64 decoding is strict") {
  auto bad = GENERATE(as<std::string>{}, "Zg", "Zg=", "Zg===", "Z===", "====", "Zg==Zg==", "Zm9v\r\n", "Zm 9v", "Zm9-",
                      "Zh==", "Zm9=", "Zm=v", "=Zm9", "Zm9v!");
  INFO(bad);
  auto r = base64_decode(bad);
  REQUIRE(!r.ok());
  CHECK(r.error().code == Errc::ParamSyntax);
}

TEST_CASE("base64 round trip over random bytes") {
  std::mt19937 rng(42);
  for (int i = 0; i < 500; ++i) {
    std::string s(rng() % 40, '\0');
    for (auto& c : s) c = char(rng());
    auto d = base64_decode(base64_encode(s));
    REQUIRE(d.ok());
    CHECK(*d == s);
  }
}

TEST_CASE("xtext") {
  CHECK(*smtp::xtext_decode("a+2Bb+3Dc") == "a+b=c");
  CHECK(*smtp::xtext_decode("") == "");
  CHECK(smtp::xtext_encode("a+b=c d\xff") == "a+2Bb+3Dc+20d+FF");
  for (const char* bad : {"a+", "a+2", "a+2b", "a+G0", "a=b", "a b", "\x01", "\xc3\xa9"}) {
    INFO(bad);
    CHECK(!smtp::xtext_valid(bad));
    CHECK(smtp::xtext_decode(bad).error().code == Errc::ParamSyntax);
  }
  std::string all;
  for (int c = 0; c < 256; ++c) all += char(c);
  CHECK(smtp::xtext_valid(smtp::xtext_encode(all)));
  CHECK(*smtp::xtext_decode(smtp::xtext_encode(all)) == all);
}

TEST_CASE("SASL PLAIN") {
  auto c = sasl::decode_plain(base64_encode(std::string("admin\0user\0pass word", 20)));
  REQUIRE(c.ok());
  CHECK(c->authzid == "admin");
  CHECK(c->authcid == "user");
  CHECK(c->password == "pass word");
  c = sasl::decode_plain("AHVzZXIAcGFzcw==");  // "\0user\0pass"
  REQUIRE(c.ok());
  CHECK(c->authzid.empty());
  CHECK(c->authcid == "user");
  using Row = std::pair<std::string, Errc>;
  auto [in, code] = GENERATE(
      Row{"=", Errc::AuthFailed}, Row{"", Errc::ParamSyntax}, Row{"not base64!", Errc::ParamSyntax},
      Row{base64_encode("userpass"), Errc::AuthFailed}, Row{base64_encode(std::string("user\0pass", 9)), Errc::AuthFailed},
      Row{base64_encode(std::string("a\0b\0c\0d", 7)), Errc::AuthFailed},
      Row{base64_encode(std::string("\0\0pass", 6)), Errc::AuthFailed},
      Row{base64_encode(std::string("\0user\0", 6)), Errc::AuthFailed},
      Row{base64_encode(std::string("\0", 1) + std::string(256, 'u') + std::string("\0p", 2)), Errc::AuthFailed},
      Row{base64_encode(std::string("\0u\0", 3) + std::string(256, 'p')), Errc::AuthFailed},
      Row{base64_encode(std::string(256, 'z') + std::string("\0u\0p", 4)), Errc::AuthFailed},
      Row{base64_encode(std::string("\0u\0\xff", 4)), Errc::AuthFailed});
  auto r = sasl::decode_plain(in);
  REQUIRE(!r.ok());
  CHECK(r.error().code == code);
  CHECK(sasl::decode_plain(base64_encode(std::string("\0", 1) + std::string(255, 'u') + std::string("\0", 1) +
                                         std::string(255, 'p')))
            .ok());
}

TEST_CASE("SASL LOGIN, responses and the AUTH argument") {
  CHECK(*base64_decode(sasl::kLoginUserPrompt) == "Username:");
  CHECK(*base64_decode(sasl::kLoginPasswordPrompt) == "Password:");
  CHECK(*sasl::decode_login("dXNlcg==") == "user");
  CHECK(!sasl::decode_login("=").ok());
  CHECK(!sasl::decode_login(base64_encode(std::string("u\0", 2))).ok());
  CHECK(!sasl::decode_login(base64_encode(std::string(256, 'u'))).ok());
  CHECK(*sasl::decode_response("=") == "");
  CHECK(sasl::is_cancel("*"));
  CHECK(!sasl::is_cancel("**"));

  auto a = sasl::parse_auth("plain AHVAAHA=");
  REQUIRE(a.ok());
  CHECK(a->mechanism == "PLAIN");
  CHECK(a->has_initial);
  CHECK(a->initial == "AHVAAHA=");
  a = sasl::parse_auth("PLAIN =");
  REQUIRE(a.ok());
  CHECK(a->has_initial);
  CHECK(a->initial.empty());
  a = sasl::parse_auth("LOGIN");
  REQUIRE(a.ok());
  CHECK(!a->has_initial);
  for (const char* bad : {"", "PL@IN", "PLAIN ", "PLAIN a b", "ABCDEFGHIJKLMNOPQRSTU"}) {
    INFO(bad);
    CHECK(!sasl::parse_auth(bad).ok());
  }
}

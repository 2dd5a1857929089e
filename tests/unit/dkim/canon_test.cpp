// moat's own DKIM signer (filters/dkim/canon.*, used for Ed25519): the RFC
// 6376 §3.4.5 canonicalization example, and signatures that libopendkim
// verifies, with RSA as well to cross-check the same code path, folded
// headers, duplicate and over-signed fields.
#include <catch2/catch.hpp>

#include "filters/dkim/canon.hpp"
#include "filters/dkim/dkim.hpp"
#include "filters/dkim/opendkim.hpp"

using namespace moat::filters::dkim;

TEST_CASE("dkim canon: RFC 6376 §3.4.5 example", "[dkim][canon]") {
  CHECK(relaxed_header("A: X") == "a:X");
  CHECK(relaxed_header("B : Y\t\r\n\tZ  ") == "b:Y Z");
  CHECK(relaxed_body(" C \r\nD \t E\r\n\r\n\r\n") == " C\r\nD E\r\n");
  CHECK(relaxed_body("") == "");
  CHECK(relaxed_body("\r\n\r\n") == "");
  CHECK(relaxed_body("a") == "a\r\n");               // a CRLF is added
  CHECK(relaxed_body("a\r\n \r\nb \r\n") == "a\r\n\r\nb\r\n");  // WSP-only line inside stays, empty
}

TEST_CASE("dkim canon: our signatures verify with libopendkim", "[dkim][canon]") {
  const std::string header =
      "Received: from x by y;\r\n\tThu, 1 Jan 2026 00:00:00 +0000\r\n"
      "From: Joe  SixPack\r\n <joe@example.org>\r\n"
      "To: a@example.net\r\n"
      "Subject:   tabs\tand  spaces  \r\n"
      "To: b@example.net\r\n"
      "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n";
  const std::string body = "line one  \r\n\r\n\tindented\r\n\r\n\r\n";
  auto lib = OpenDkim::create(LibOptions{});
  REQUIRE(lib);
  for (auto type : {KeyType::Ed25519, KeyType::Rsa}) {
    auto key = generate_key(type);
    REQUIRE(key);
    auto field = sign_relaxed(header, body, *key, "example.org", "sel", kDefaultSignHeaders, 1767225600);
    REQUIRE(field);
    INFO(*field);
    CHECK(field->find("t=1767225600;") != std::string::npos);
    for (std::size_t p = 0; (p = field->find("\r\n", p)) != std::string::npos; p += 2) {
      if (p + 2 < field->size()) CHECK((*field)[p + 2] == '\t');  // folding only
    }
    const std::string signed_header = *field + header;
    auto sigs = find_signatures(signed_header, 10);
    REQUIRE(sigs.size() == 1);
    CHECK(sigs[0].a == signing_algorithm(type));
    KeyAnswers keys;
    keys[key_name("sel", "example.org")] = {KeyStatus::Found, "v=DKIM1; k=" + std::string(key_type_name(type)) +
                                                                  "; p=" + key->public_b64};
    auto ok = (*lib)->verify(signed_header, body, sigs, keys);
    CHECK(ok[0].result == "pass");
    // Trailing empty lines do not count (relaxed), changed words do.
    CHECK((*lib)->verify(signed_header, body + "\r\n\r\n", sigs, keys)[0].result == "pass");
    CHECK((*lib)->verify(signed_header, "line one\r\n", sigs, keys)[0].result == "fail");
    // Over-signed: another To: (or a first Reply-To:) added later breaks it.
    CHECK((*lib)->verify(signed_header + "To: c@example.net\r\n", body, sigs, keys)[0].result == "fail");
    CHECK((*lib)->verify(signed_header + "Reply-To: c@example.net\r\n", body, sigs, keys)[0].result == "fail");
    // Whitespace changes relaxed forgives.
    std::string respaced = signed_header;
    respaced.replace(respaced.find("Subject:   tabs"), 15, "Subject: tabs");
    CHECK((*lib)->verify(respaced, body, sigs, keys)[0].result == "pass");
  }
}

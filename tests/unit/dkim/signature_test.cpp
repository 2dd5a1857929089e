// DKIM-Signature field handling (RFC 6376 §3.5): header splitting, tag
// extraction for Authentication-Results (RFC 8601, RFC 6008), the limit on
// signatures, and every prefix of a signature fed to the parser.
#include <catch2/catch.hpp>

#include "filters/dkim/signature.hpp"

using namespace moat::filters;
using namespace moat::filters::dkim;

namespace {

constexpr std::string_view kSig =
    " v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    " d=Football.Example.COM; i=@football.example.com;\r\n"
    " q=dns/txt; s=Test; t=1528637909; h=from : to : subject;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz";

}  // namespace

TEST_CASE("dkim: header fields keep their folding and drop junk lines", "[dkim]") {
  std::string h = "Received: from a\r\n\tby b\r\nnot a field\r\n continuation of junk\r\nFrom : x@y\r\nSubject: s\r\n";
  auto f = split_fields(h);
  REQUIRE(f.size() == 3);
  CHECK(f[0].name == "Received");
  CHECK(f[0].text == "Received: from a\r\n\tby b");
  CHECK(f[1].name == "From");
  CHECK(f[1].text == "From : x@y");
  CHECK(f[2].text == "Subject: s");
  CHECK(split_fields("").empty());
  CHECK(split_fields("A: b\r\n\r\nBody: no\r\n").size() == 1);
  CHECK(split_fields("A: no final CRLF").size() == 1);
}

TEST_CASE("dkim: signature tags for Authentication-Results", "[dkim]") {
  auto s = parse_signature(kSig);
  REQUIRE(s.valid);
  CHECK(s.d == "football.example.com");
  CHECK(s.s == "test");
  CHECK(s.i == "@football.example.com");
  CHECK(s.a == "rsa-sha256");
  CHECK(s.b.find(' ') == std::string::npos);
  CHECK(s.header_b() == "F45dVWDf");
  CHECK_FALSE(s.sha1());
  auto ar = auth_result(s, "pass", "");
  CHECK(ar.method == "dkim");
  CHECK(ar.prop("header.d") == "football.example.com");
  CHECK(ar.prop("header.i") == "@football.example.com");
  CHECK(ar.prop("header.s") == "test");
  CHECK(ar.prop("header.a") == "rsa-sha256");
  CHECK(ar.prop("header.b") == "F45dVWDf");
  CHECK(authentication_results("mx.example.net", {ar}).find("header.b=F45dVWDf") != std::string::npos);
}

TEST_CASE("dkim: malformed signatures are reported, not guessed", "[dkim]") {
  struct Case {
    std::string_view value, error;
  } cases[] = {
      {"v=1; a=rsa-sha256; d=x.example; s=s; h=from; bh=YQ==", "missing b= tag"},
      {"v=2; a=rsa-sha256; d=x.example; s=s; h=from; bh=YQ==; b=YQ==", "unsupported version"},
      {"v=1; a=rsa-sha256; d=; s=s; h=from; bh=YQ==; b=YQ==", "empty d=, s= or b= tag"},
      {"v=1; v=1; a=rsa-sha256", "malformed tag list"},
      {"not a tag list", "malformed tag list"},
  };
  for (const auto& c : cases) {
    auto s = parse_signature(c.value);
    CHECK_FALSE(s.valid);
    CHECK(s.error == c.error);
  }
  std::string huge = "v=1; a=rsa-sha256; d=x.example; s=s; h=" + std::string(2000, 'x') + "; bh=YQ==; b=YQ==";
  CHECK(parse_signature(huge).error == "tag h= too long");
}

TEST_CASE("dkim: at most max_signatures signatures are taken", "[dkim]") {
  std::string h;
  for (int i = 0; i < 5; ++i) h += "DKIM-Signature:" + std::string(kSig) + "\r\n";
  h += "dkim-signature: v=1\r\nFrom: a@b.example\r\n";
  bool more = false;
  auto sigs = find_signatures(h, 3, &more);
  CHECK(sigs.size() == 3);
  CHECK(more);
  sigs = find_signatures(h, 10, &more);
  CHECK(sigs.size() == 6);  // names are case-insensitive
  CHECK_FALSE(more);
  CHECK_FALSE(sigs.back().valid);
}

TEST_CASE("dkim: every prefix of a signature field parses without harm", "[dkim]") {
  const std::string field = "DKIM-Signature:" + std::string(kSig) + "\r\nFrom: a@b.example\r\n";
  for (std::size_t n = 0; n <= field.size(); ++n) {
    auto prefix = std::string_view(field).substr(0, n);
    auto sigs = find_signatures(prefix, 10);
    REQUIRE(sigs.size() <= 1);
    if (!sigs.empty() && sigs[0].valid) {
      // Only a prefix that ends inside b= (after every other tag) is complete.
      CHECK(sigs[0].d == "football.example.com");
      CHECK(std::string(kSig).find("b=F45") < n);
    }
    auto one = parse_signature(std::string_view(kSig).substr(0, std::min(n, kSig.size())));
    if (one.valid) CHECK(one.s == "test");
  }
}

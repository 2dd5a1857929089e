// RFC 6376 §3.2 tag lists: DKIM signatures, key records, DMARC records.
#include <catch2/catch.hpp>

#include "common/proto/taglist.hpp"

using namespace moat::proto;

TEST_CASE("taglist: DKIM-style lists with FWS", "[taglist]") {
  auto t = parse_tag_list("v=1; a=rsa-sha256;\r\n\td=example.net; s=brisbane;\r\n b=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSb\r\n  av+yuU4zGeeruD00lszZVoG4ZHRNiYzR;");
  REQUIRE(t);
  CHECK(t->tags.size() == 5);
  CHECK(t->get("d") == "example.net");
  CHECK(strip_fws(*t->get("b")) == "dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR");
  CHECK_FALSE(t->get("D"));  // tag names are case-sensitive
  auto dmarc = parse_tag_list("v=DMARC1;p=reject;pct=50");
  REQUIRE(dmarc);
  CHECK(dmarc->get("pct") == "50");
  CHECK(parse_tag_list("")->tags.empty());
  CHECK(parse_tag_list("k=")->get("k") == "");
}

TEST_CASE("taglist: malformed lists are refused whole", "[taglist]") {
  for (const char* bad : {"v=1;;a=b", "novalue", "=x", "1a=b", "a=b; a=c", "a=b\x01", "a b=c", "a=b;c"})
    CHECK_FALSE(parse_tag_list(bad));
  std::string many;
  for (int i = 0; i < 65; ++i) many += "t" + std::to_string(i) + "=x;";
  CHECK_FALSE(parse_tag_list(many));
}

TEST_CASE("taglist: every prefix of a list parses or fails cleanly", "[taglist]") {
  std::string s = "v=1; a=ed25519-sha256; d=example.com; s=sel; bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;";
  for (std::size_t n = 0; n <= s.size(); ++n) (void)parse_tag_list(s.substr(0, n));
  CHECK(parse_tag_list(s)->tags.size() == 5);
}

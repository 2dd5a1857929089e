// Sequence sets as ranges (RFC 9051 §9): parsing, "*" resolution, merging,
// membership without expansion, and the compact writer.
#include <catch2/catch.hpp>

#include "common/proto/imap/seqset.hpp"

using namespace moat::proto::imap;

TEST_CASE("sequence sets parse and print back", "[imap]") {
  for (std::string_view s : {"1", "*", "1:*", "5:2", "1,3:5,7:*", "4294967295", "1:4294967295", "*:3"}) {
    auto r = SeqSet::parse(s);
    REQUIRE(r.ok());
    CHECK(r->to_string() == s);
  }
}

TEST_CASE("bad sequence sets", "[imap]") {
  for (std::string_view s : {"", "0", "1:0", "01", "4294967296", "1,", ",1", "1::2", "a", "1:2:3", "-1", "1 2", "**"}) {
    INFO(s);
    CHECK_FALSE(SeqSet::parse(s).ok());
  }
  std::string many;
  for (int i = 0; i < 11; ++i) many += (i ? ",": "") + std::to_string(i + 1);
  CHECK(SeqSet::parse(many, 11).ok());
  CHECK_FALSE(SeqSet::parse(many, 10).ok());
}

TEST_CASE("resolve replaces *, orders bounds and merges", "[imap]") {
  auto s = SeqSet::parse("7:*,2,3,1,20:15").value();
  CHECK(SeqSet::parse("3:5,1,2,6:*").value().resolve(9) == std::vector<SeqRange>{{1, 9}});
  CHECK(s.resolve(10) == std::vector<SeqRange>{{1, 3}, {7, 10}, {15, 20}});
  // n:* includes the largest number even when n is larger (RFC 3501 §6.4.8)
  CHECK(SeqSet::parse("50:*").value().resolve(10) == std::vector<SeqRange>{{10, 50}});
  // "*" in an empty mailbox selects nothing
  CHECK(SeqSet::parse("1:*,*").value().resolve(0).empty());
  CHECK(SeqSet::parse("1:*,3").value().resolve(0) == std::vector<SeqRange>{{3, 3}});
}

TEST_CASE("the whole UID space is one range, counted not expanded", "[imap]") {
  auto r = SeqSet::parse("1:4294967295,1:4294967295").value().resolve(5);
  REQUIRE(r.size() == 1);
  CHECK(count(r) == 4294967295ull);
  CHECK(contains(r, 4294967295u));
  CHECK(contains(r, 1));
  CHECK_FALSE(contains(r, 0));
  auto g = SeqSet::parse("2:4,10,12:13").value().resolve(100);
  CHECK_FALSE(contains(g, 1));
  CHECK(contains(g, 3));
  CHECK_FALSE(contains(g, 5));
  CHECK(contains(g, 10));
  CHECK_FALSE(contains(g, 11));
  CHECK(contains(g, 13));
  CHECK_FALSE(contains(g, 14));
  CHECK(count(g) == 6);
}

TEST_CASE("format_compact", "[imap]") {
  CHECK(format_compact({}) == "");
  CHECK(format_compact({5}) == "5");
  CHECK(format_compact({1, 2, 3, 5, 7, 8, 4294967295u}) == "1:3,5,7:8,4294967295");
}

// DMARC records (RFC 7489 §6.3/§6.4, RFC 9091 np=), the Organizational
// Domain against the PSL test vectors, alignment and evaluation (§6.6).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "filters/dmarc/dmarc.hpp"
#include "filters/dmarc/record.hpp"

using namespace moat::filters;
using namespace moat::filters::dmarc;

namespace {

std::filesystem::path testdata() {
  if (const char* e = std::getenv("MOAT_TESTDATA")) return e;
  return std::filesystem::path(MOAT_SOURCE_DIR) / ".." / "shared" / "testdata";
}

Discovery found(const std::string& txt, bool org = false, bool nonexistent = false) {
  Discovery d;
  auto pr = parse_record(txt);
  REQUIRE(pr.status == RecordStatus::Ok);
  d.kind = Discovery::Kind::Found;
  d.record = pr.record;
  d.org = org;
  d.nonexistent = nonexistent;
  return d;
}

}  // namespace

TEST_CASE("dmarc record: tags", "[dmarc][record]") {
  auto r = parse_record("v=DMARC1; p=reject; sp=quarantine; np=none; pct=50; adkim=s; aspf=s; "
                        "rua=mailto:a@example.com,mailto:b@example.com!10m; ruf=mailto:f@example.com; fo=1:d; ri=3600");
  REQUIRE(r.status == RecordStatus::Ok);
  CHECK(r.record.p == Policy::Reject);
  CHECK(r.record.sp == Policy::Quarantine);
  CHECK(r.record.np == Policy::None);
  CHECK(r.record.pct == 50);
  CHECK(r.record.adkim_strict);
  CHECK(r.record.aspf_strict);
  CHECK(r.record.rua.size() == 2);
  CHECK(r.record.ruf.size() == 1);
  CHECK(r.record.fo == "1:d");
  CHECK(r.record.ri == 3600);

  auto d = parse_record("v = DMARC1 ;p=None");
  REQUIRE(d.status == RecordStatus::Ok);
  CHECK(d.record.p == Policy::None);
  CHECK_FALSE(d.record.sp);
  CHECK(d.record.pct == 100);
  CHECK_FALSE(d.record.adkim_strict);
}

TEST_CASE("dmarc record: not DMARC, invalid, fallbacks (§6.6.3)", "[dmarc][record]") {
  CHECK(parse_record("v=spf1 -all").status == RecordStatus::NotDmarc);
  CHECK(parse_record("p=reject; v=DMARC1").status == RecordStatus::NotDmarc);
  CHECK(parse_record("v=dmarc1; p=reject").status == RecordStatus::NotDmarc);
  CHECK(parse_record("v=DMARC10; p=reject").status == RecordStatus::NotDmarc);
  CHECK(parse_record("").status == RecordStatus::NotDmarc);
  CHECK(parse_record("v=DMARC1").status == RecordStatus::Invalid);
  CHECK(parse_record("v=DMARC1; p=bogus").status == RecordStatus::Invalid);
  CHECK(parse_record("v=DMARC1; p=reject; p=none").status == RecordStatus::Invalid);  // duplicate tag
  CHECK(parse_record("v=DMARC1; sp=quarantine; np=reject").status == RecordStatus::Invalid);
  // No valid p= but a valid rua=: treated as p=none.
  auto r = parse_record("v=DMARC1; p=bogus; rua=mailto:r@example.com");
  REQUIRE(r.status == RecordStatus::Ok);
  CHECK(r.record.p == Policy::None);
  CHECK(r.record.p_missing);
  // Bad optional values fall back to defaults.
  auto b = parse_record("v=DMARC1; p=quarantine; pct=200; adkim=x; ri=-1; unknown=1");
  REQUIRE(b.status == RecordStatus::Ok);
  CHECK(b.record.pct == 100);
  CHECK_FALSE(b.record.adkim_strict);
  CHECK(b.record.ri == 86400);
  CHECK(parse_record("v=DMARC1; p=reject; " + std::string(5000, 'x')).status == RecordStatus::NotDmarc);
}

TEST_CASE("dmarc record: every prefix", "[dmarc][record]") {
  const std::string rec = "v=DMARC1; p=reject; sp=none; pct=10; rua=mailto:a@example.com";
  for (std::size_t n = 0; n <= rec.size(); ++n) {
    auto r = parse_record(rec.substr(0, n));
    if (r.status == RecordStatus::Ok) CHECK(r.record.pct <= 100);
  }
  CHECK(parse_record(rec).status == RecordStatus::Ok);
}

TEST_CASE("dmarc org domain: PSL test vectors (publicsuffix test_psl.txt)", "[dmarc][psl]") {
  auto file = testdata() / "dmarc" / "publicsuffix" / "test_psl.txt";
  std::ifstream in(file);
  if (!in) {
    WARN("test material absent, skipped: " << file);
    return;
  }
  std::regex line(R"(^checkPublicSuffix\((null|'([^']*)'), (null|'([^']*)')\);)");
  std::string l;
  int total = 0, passed = 0;
  while (std::getline(in, l)) {
    std::smatch m;
    if (!std::regex_search(l, m, line)) continue;
    ++total;
    std::string input = m[1] == "null" ? "" : m[2].str();
    std::optional<std::string> want;
    if (m[3] != "null") want = m[4].str();
    auto got = registrable_domain(input);
    INFO(l);
    CHECK(got == want);
    if (got == want) ++passed;
  }
  CHECK(total >= 78);
  WARN("PSL vectors: " << passed << "/" << total << " pass");
  CHECK(org_domain("mail.Example.CO.UK.") == "example.co.uk");
  CHECK(org_domain("co.uk") == "co.uk");
}

TEST_CASE("dmarc alignment (§3.1)", "[dmarc]") {
  CHECK(aligned("example.com", "EXAMPLE.com", true));
  CHECK_FALSE(aligned("mail.example.com", "example.com", true));
  CHECK(aligned("mail.example.com", "news.example.com", false));
  CHECK_FALSE(aligned("example.co.uk", "other.co.uk", false));
  CHECK_FALSE(aligned("", "example.com", false));
}

TEST_CASE("dmarc evaluate", "[dmarc]") {
  std::vector<AuthResult> dkim_pass{{"dkim", "pass", "", {{"header.d", "mail.example.com"}}}};
  std::vector<AuthResult> spf_pass{{"spf", "pass", "", {{"smtp.mailfrom", "bounce@example.com"}}}};
  std::vector<AuthResult> fails{{"dkim", "fail", "", {{"header.d", "example.com"}}},
                                {"spf", "pass", "", {{"smtp.mailfrom", "evil.example"}}}};

  auto o = evaluate("example.com", found("v=DMARC1; p=reject"), dkim_pass, 0);
  CHECK(o.result == "pass");
  CHECK(o.dkim_aligned);
  CHECK(evaluate("example.com", found("v=DMARC1; p=reject; adkim=s"), dkim_pass, 0).result == "fail");
  CHECK(evaluate("Example.com", found("v=DMARC1; p=reject; aspf=s"), spf_pass, 0).result == "pass");

  o = evaluate("example.com", found("v=DMARC1; p=reject"), fails, 0);
  CHECK(o.result == "fail");
  CHECK(o.disposition == Policy::Reject);
  CHECK(o.policy == Policy::Reject);

  // pct: the rolled share outside pct gets the next weaker policy.
  o = evaluate("example.com", found("v=DMARC1; p=reject; pct=10"), fails, 50);
  CHECK(o.disposition == Policy::Quarantine);
  CHECK(o.sampled_out);
  CHECK(evaluate("example.com", found("v=DMARC1; p=quarantine; pct=10"), fails, 5).disposition == Policy::Quarantine);
  CHECK(evaluate("example.com", found("v=DMARC1; p=quarantine; pct=0"), fails, 0).disposition == Policy::None);

  // sp and np at the Organizational Domain.
  CHECK(evaluate("a.example.com", found("v=DMARC1; p=none; sp=reject", true), fails, 0).policy == Policy::Reject);
  CHECK(evaluate("a.example.com", found("v=DMARC1; p=none; sp=quarantine; np=reject", true, true), fails, 0).policy ==
        Policy::Reject);
  CHECK(evaluate("a.example.com", found("v=DMARC1; p=none; sp=quarantine; np=reject", true, false), fails, 0).policy ==
        Policy::Quarantine);
  CHECK(evaluate("a.example.com", found("v=DMARC1; p=reject", true), fails, 0).policy == Policy::Reject);

  // Several authors: never a pass.
  CHECK(evaluate("example.com", found("v=DMARC1; p=reject"), dkim_pass, 0, true).result == "fail");

  Discovery none;
  CHECK(evaluate("example.com", none, dkim_pass, 0).result == "none");
}

// The dmarc filter against a real unbound: the authheaders DMARC cases
// (/work/shared/testdata/dmarc/authheaders/cases.json, exact
// Authentication-Results), temperror, symbols and the report store.
#include <catch2/catch.hpp>

#include <boost/asio/thread_pool.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/dns/resolver.hpp"
#include "filters/dmarc/dmarc.hpp"
#include "filters/policy.hpp"
#include "filters/scores.hpp"
#include "tests/support/peers.hpp"
#include "tests/support/run.hpp"
#include "tests/support/temp_dir.hpp"

using namespace moat;
using namespace moat::filters;
namespace asio = boost::asio;

namespace {

std::filesystem::path testdata() {
  if (const char* e = std::getenv("MOAT_TESTDATA")) return e;
  return std::filesystem::path(MOAT_SOURCE_DIR) / ".." / "shared" / "testdata";
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream o;
  o << in.rdbuf();
  return o.str();
}

// The DNS of cases.json as unbound local-data. Names with "" (exist, no
// TXT) are left out: NXDOMAIN is "no record" too, and defining them would
// turn sub.example.biz into an empty non-terminal that exists (RFC 9091).
test::UnboundServer& zone() {
  static test::UnboundServer srv(
      {"example.com.", "example.org.", "example.net.", "example.biz.", "example.info."},
      {"_dmarc.example.com. TXT \"v=DMARC1; p=reject; rua=mailto:dmarc.reports@valimail.com,mailto:dmarc_agg@vali.email; "
       "ruf=mailto:dmarc.reports@valimail.com,mailto:dmarc_c0cb7153_afrf@vali.email\"",
       "_dmarc.example.org. TXT \"v=DMARC1; p=none\"", "_dmarc.example.net. TXT \"v=DMARC1; p=none; sp=reject\"",
       "_dmarc.example.biz. TXT \"v=DMARC1; p=none; sp=quarantine; np=reject\"",
       "_dmarc.nop.example.org. TXT \"v=DMARC1; sp=quarantine; np=reject\"", "sub2.example.biz. A 192.0.2.1",
       // more for the tests below
       "_dmarc.example.info. TXT \"v=DMARC1; p=quarantine\"", "_dmarc.two.example.info. TXT \"v=DMARC1; p=none\"",
       "_dmarc.two.example.info. TXT \"v=DMARC1; p=reject\"", "_dmarc.spf.example.info. TXT \"v=spf1 -all\""},
      {"local-zone: \"broken.example.info.\" always_refuse"});
  return srv;
}

struct Fixture {
  asio::io_context io;
  asio::thread_pool pool{1};
  test::TempDir dir;
  std::unique_ptr<dns::Resolver> resolver;
  std::unique_ptr<Filter> filter;

  explicit Fixture(std::vector<config::DmarcOverride> overrides = {}) {
    REQUIRE(zone().ready());
    config::Dns d;
    d.upstream = HostPort{"127.0.0.1", zone().port()};
    d.timeout = config::Seconds(3);
    resolver = std::make_unique<dns::Resolver>(io, d);
    config::Config cfg;
    cfg.dmarc.overrides = std::move(overrides);
    Services s{resolver.get(), &pool, dir.path};
    auto f = dmarc::DmarcFilter::make(cfg, s);
    REQUIRE(f);
    filter = std::move(*f);
  }
  ~Fixture() { pool.join(); }

  Status run(ScanContext& ctx) {
    return test::run_on(io, [&](auto&) { return filter->run(Phase::EndOfData, ctx); });
  }
};

// "method=result k=v ..." entries of an A-R value, without the authserv-id.
std::vector<AuthResult> parse_ar(std::string_view ar) {
  std::vector<AuthResult> out;
  auto semi = ar.find(';');
  std::string rest(ar.substr(semi + 1));
  std::stringstream ss(rest);
  std::string item;
  while (std::getline(ss, item, ';')) {
    std::stringstream words(item);
    std::string w;
    AuthResult r;
    while (words >> w) {
      auto eq = w.find('=');
      if (eq == std::string::npos) continue;
      if (r.method.empty()) r.method = w.substr(0, eq), r.result = w.substr(eq + 1);
      else r.props.emplace_back(w.substr(0, eq), w.substr(eq + 1));
    }
    if (!r.method.empty()) out.push_back(r);
  }
  return out;
}

// Comments dropped, whitespace collapsed, quotes around values removed: the
// reference writes "(Used From Domain Record)" comments and folds
// differently, and our A-R writer quotes "@example.com" (header.i).
std::string normalize(std::string s) {
  s = std::regex_replace(s, std::regex(R"(\([^)]*\))"), "");
  s = std::regex_replace(s, std::regex(R"re(="([^"]*)")re"), "=$1");
  s = std::regex_replace(s, std::regex(R"([\r\n\t ]+)"), " ");
  s = std::regex_replace(s, std::regex(R"( ;)"), ";");
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

std::string header_of(std::string msg) {
  std::string crlf;
  for (char c : msg) {
    if (c == '\n') crlf += '\r';
    crlf += c;
  }
  auto end = crlf.find("\r\n\r\n");
  return crlf.substr(0, end == std::string::npos ? crlf.size() : end + 2);
}

std::string field(const std::string& obj, const std::string& name) {
  std::smatch m;
  if (std::regex_search(obj, m, std::regex("\"" + name + R"re(": (null|"((?:[^"\\]|\\.)*)"))re")) && m[1] != "null")
    return std::regex_replace(m[2].str(), std::regex(R"(\\(.))"), "$1");
  return {};
}

}  // namespace

TEST_CASE("dmarc: authheaders cases with exact Authentication-Results", "[dmarc][unbound]") {
  auto dir = testdata() / "dmarc" / "authheaders";
  std::string json = slurp(dir / "cases.json");
  if (json.empty()) {
    WARN("test material absent, skipped: " << dir);
    return;
  }
  INFO(zone().log());
  Fixture fx;
  int total = 0, passed = 0;
  auto cases = json.substr(json.find("\"cases\""));
  std::regex obj(R"(\{[^{}]*\})");
  for (auto it = std::sregex_iterator(cases.begin(), cases.end(), obj); it != std::sregex_iterator(); ++it) {
    std::string o = it->str();
    std::string expect = field(o, "expect");
    if (expect.find("dmarc=") == std::string::npos) continue;  // dkim_only: not ours
    ++total;
    ScanContext ctx;
    std::string header = header_of(slurp(dir / field(o, "message")));
    ctx.header = header;
    // The DKIM results (from the case's previous A-R, or the DKIM part of the
    // expected one: the dkim filter is tested on its own).
    std::string prev = field(o, "prev");
    for (auto& r : parse_ar(prev.empty() ? expect.substr(expect.find(':') + 1) : prev.substr(prev.find(':') + 1)))
      if (r.method == "dkim") ctx.auth.push_back(r);
    Status st = fx.run(ctx);
    REQUIRE(st);
    std::string got = authentication_results(field(o, "authserv_id"), ctx.auth);
    INFO(field(o, "name") << "\n got: " << got << "\nwant: " << expect);
    CHECK(normalize(got) == normalize(expect));
    if (normalize(got) == normalize(expect)) ++passed;
  }
  CHECK(total == 8);
  WARN("authheaders DMARC cases: " << passed << "/" << total << " pass");
}

TEST_CASE("dmarc filter: symbols, temperror, overrides, reports", "[dmarc][unbound]") {
  INFO(zone().log());
  auto run = [](Fixture& fx, const std::string& header, std::vector<AuthResult> auth = {}) {
    ScanContext ctx;
    ctx.header = header;
    ctx.auth = std::move(auth);
    ctx.envelope.client.ip = *parse_ip("192.0.2.25");
    Status st = fx.run(ctx);
    return std::make_pair(std::move(st), std::move(ctx));
  };
  std::vector<AuthResult> dkim_pass{{"dkim", "pass", "", {{"header.d", "example.com"}}}};

  SECTION("p=reject fail forces Reject with 550 5.7.1") {
    Fixture fx;
    auto [st, ctx] = run(fx, "From: a@example.com\r\n");
    REQUIRE(st);
    REQUIRE(ctx.has("DMARC_POLICY_REJECT"));
    Scores sc;
    for (auto& s : ctx.symbols) s.score = sc.score(s.name);
    config::Actions a;
    a.reject = 1000;  // the forced action does not depend on thresholds
    auto v = decide(ctx.symbols, a, Phase::EndOfData);
    CHECK(v.action == Action::Reject);
    CHECK(format_reply(v.reply).starts_with("550 5.7.1"));
  }
  SECTION("p=quarantine fail forces Quarantine; [scores] 0 turns it off") {
    Fixture fx;
    auto [st, ctx] = run(fx, "From: a@example.info\r\n");
    REQUIRE(ctx.has("DMARC_POLICY_QUARANTINE"));
    Scores sc;
    for (auto& s : ctx.symbols) s.score = sc.score(s.name);
    config::Actions a;
    a.quarantine = a.tag = 1000;
    CHECK(decide(ctx.symbols, a, Phase::EndOfData).action == Action::Quarantine);
    for (auto& s : ctx.symbols) s.score = 0;
    CHECK(decide(ctx.symbols, a, Phase::EndOfData).action == Action::Accept);
  }
  SECTION("aligned DKIM passes") {
    Fixture fx;
    auto [st, ctx] = run(fx, "From: Someone <a@example.com>\r\n", dkim_pass);
    CHECK(ctx.has("DMARC_PASS"));
    CHECK(ctx.auth_result("dmarc")->result == "pass");
  }
  SECTION("a p=none author added next to a p=reject one does not dodge it") {
    Fixture fx;
    auto [st, ctx] = run(fx, "From: a@example.org\r\nFrom: b@example.com\r\n",
                         {{"dkim", "pass", "", {{"header.d", "example.org"}}}});
    CHECK(ctx.has("DMARC_MULTI_FROM"));
    CHECK(ctx.has("DMARC_POLICY_REJECT"));
    CHECK(ctx.auth_result("dmarc")->prop("header.from") == "example.com");
  }
  SECTION("ambiguous From never passes, even aligned") {
    Fixture fx;
    auto [st, ctx] = run(fx, "From: a@example.com(@example.org)\r\n", dkim_pass);
    CHECK(ctx.has("DMARC_BAD_FROM"));
    CHECK(ctx.auth_result("dmarc")->result == "fail");
    CHECK(ctx.has("DMARC_POLICY_REJECT"));
  }
  SECTION("no From, unparsable From: permerror") {
    Fixture fx;
    auto [st, ctx] = run(fx, "Subject: x\r\n");
    CHECK(ctx.has("DMARC_NO_FROM"));
    CHECK(ctx.auth_result("dmarc")->result == "permerror");
    auto [st2, ctx2] = run(fx, "From: <a@example.com\r\n");
    CHECK(ctx2.has("DMARC_BAD_FROM"));
  }
  SECTION("two DMARC records, a non-DMARC TXT, no record: none") {
    Fixture fx;
    CHECK(run(fx, "From: a@two.example.info\r\n").second.has("DMARC_NA"));
    // spf.example.info has only a non-DMARC TXT: the org record (quarantine) applies.
    CHECK(run(fx, "From: a@spf.example.info\r\n").second.has("DMARC_POLICY_QUARANTINE"));
    CHECK(run(fx, "From: a@nowhere.example.net\r\n").second.auth_result("dmarc")->prop("policy.dmarc") == "reject");
  }
  SECTION("SERVFAIL: temperror, DnsTempFail") {
    Fixture fx;
    auto [st, ctx] = run(fx, "From: a@broken.example.info\r\n");
    REQUIRE_FALSE(st);
    CHECK(st.error().code == Errc::DnsTempFail);
    CHECK(ctx.auth_result("dmarc")->result == "temperror");
  }
  SECTION("a [dmarc] override replaces the published policy") {
    Fixture fx({config::DmarcOverride{"example.com", config::DmarcPolicy::Quarantine}});
    auto [st, ctx] = run(fx, "From: a@example.com\r\n");
    CHECK(ctx.has("DMARC_POLICY_QUARANTINE"));
    CHECK_FALSE(ctx.has("DMARC_POLICY_REJECT"));
    CHECK(ctx.auth_result("dmarc")->prop("policy.dmarc") == "reject");
  }
  SECTION("report rows count per day, IP and From domain") {
    Fixture fx;
    run(fx, "From: a@example.com\r\n");
    run(fx, "From: b@example.com\r\n");
    run(fx, "From: a@example.com\r\n", dkim_pass);
    fx.filter.reset();
    auto store = dmarc::ReportStore::open(fx.dir.path / "db" / "dmarc.sqlite");
    REQUIRE(store);
    auto rows = (*store)->rows();
    REQUIRE(rows);
    REQUIRE(rows->size() == 2);
    unsigned fails = 0, passes = 0;
    for (auto& [r, n] : *rows) {
      CHECK(r.source_ip == "192.0.2.25");
      CHECK(r.header_from == "example.com");
      if (r.dkim == "pass") {
        passes += n;
        CHECK(r.disposition == "none");
      } else {
        fails += n;
        CHECK(r.disposition == "reject");
      }
    }
    CHECK(fails == 2);
    CHECK(passes == 1);
  }
}

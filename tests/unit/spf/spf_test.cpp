// SPF pieces without a network: macro expansion (RFC 7208 §7.4 examples),
// record checks and the record written for libspf2, the limits of §4.6.4
// through evaluate() with an in-memory DNS, the Received-SPF field (§9.1)
// and what the filter leaves in the ScanContext. Then the filter through the
// real resolver and unbound: pass, and temperror with fail closed and open.
#include <catch2/catch.hpp>
#include <map>

#include "common/dns/resolver.hpp"
#include "filters/spf/record.hpp"
#include "filters/spf/spf.hpp"
#include "tests/support/peers.hpp"
#include "tests/support/run.hpp"

using namespace moat;
namespace spf = moat::filters::spf;
namespace asio = boost::asio;

namespace {

spf::MacroValues rfc_values() {
  spf::MacroValues v;
  v.sender = "strong-bad@email.example.com";
  v.domain = "email.example.com";
  v.ip = *parse_ip("192.0.2.3");
  v.helo = "mx.example.org";
  return v;
}

// Zone data for evaluate(): name -> TXT strings / A addresses / MX names.
struct FakeDns {
  std::map<std::string, std::vector<std::string>> txt, mx, ptr;
  std::map<std::string, std::vector<std::string>> a;
  std::vector<std::string> asked;
  spf::DnsReply operator()(const std::string& name, int type) {
    asked.push_back(name);
    spf::DnsReply r;
    r.status = spf::DnsReply::Status::Ok;
    bool known = txt.count(name) || mx.count(name) || a.count(name) || ptr.count(name);
    if (!known) r.status = spf::DnsReply::Status::NxDomain;
    if (type == 16 && txt.count(name)) r.names = txt[name];
    if (type == 15 && mx.count(name)) r.names = mx[name];
    if (type == 12 && ptr.count(name)) r.names = ptr[name];
    if (type == 1 && a.count(name))
      for (const auto& s : a[name]) r.addrs.push_back(*parse_ip(s));
    return r;
  }
};

spf::Outcome check(FakeDns& dns, const std::string& sender, const std::string& ip = "192.0.2.1") {
  spf::Query q{*parse_ip(ip), sender, "mail.example.org", false, "mx.example.net"};
  spf::Lookup l = [&dns](const std::string& n, int t) { return dns(n, t); };
  return spf::evaluate(q, l);
}

}  // namespace

TEST_CASE("spf: macro expansion, RFC 7208 §7.4 examples", "[spf]") {
  auto v = rfc_values();
  auto x = [&](std::string_view s) { return spf::expand_macros(s, v, false).value_or("<error>"); };
  CHECK(x("%{s}") == "strong-bad@email.example.com");
  CHECK(x("%{o}") == "email.example.com");
  CHECK(x("%{d}") == "email.example.com");
  CHECK(x("%{d4}") == "email.example.com");
  CHECK(x("%{d3}") == "email.example.com");
  CHECK(x("%{d2}") == "example.com");
  CHECK(x("%{d1}") == "com");
  CHECK(x("%{dr}") == "com.example.email");
  CHECK(x("%{d2r}") == "example.email");
  CHECK(x("%{l}") == "strong-bad");
  CHECK(x("%{l-}") == "strong.bad");
  CHECK(x("%{lr}") == "strong-bad");
  CHECK(x("%{lr-}") == "bad.strong");
  CHECK(x("%{l1r-}") == "strong");
  CHECK(x("%{ir}.%{v}._spf.%{d2}") == "3.2.0.192.in-addr._spf.example.com");
  CHECK(x("%{lr-}.lp._spf.%{d2}") == "bad.strong.lp._spf.example.com");
  CHECK(x("%{d2}.trusted-domains.example.net") == "example.com.trusted-domains.example.net");
  CHECK(x("%%%_%-") == "% %20");
  v.sender = "~jack&jill=up-a_b3.c@example.com";
  CHECK(x("%{L}") == "~jack%26jill%3Dup-a_b3.c");  // upper case: URL-escaped
  v.ip = *parse_ip("2001:db8::cb01");
  CHECK(x("%{ir}.%{v}._spf.%{d2}") ==
        "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com");
  // Syntax errors, and the letters only exp text may use (§7.2).
  for (auto bad : {"%", "%a", "%{", "%{d", "%{q}", "%{d0}", "%{c}", "%{r}", "%{t}", "a%(ir)"})
    CHECK_FALSE(spf::expand_macros(bad, v, false));
  CHECK(spf::expand_macros("%{c} %{r}", v, true) == "2001:db8::cb01 unknown");
  CHECK(spf::as_macro_literal("50% off now") == "50%%%_off%_now");
  std::string many;
  for (int i = 0; i < 3000; ++i) many += "%{s}";
  CHECK_FALSE(spf::expand_macros(many, v, false));  // 3000 x 30 octets: over kMaxExpansion
}

TEST_CASE("spf: record checks and the record libspf2 gets", "[spf]") {
  auto v = rfc_values();
  auto n = [&](std::string_view r, bool v4 = true) {
    auto out = spf::normalize(r, v, v4);
    return out.error.empty() ? out.record : "ERROR";
  };
  CHECK(n("v=spf1") == "v=spf1");
  CHECK(n("v=spf1 a mx -all") == "v=spf1 a:email.example.com mx:email.example.com -all");
  CHECK(n("v=spf1  a:%{d2}/24//64  ~all ") == "v=spf1 a:example.com/24 ~all");
  CHECK(n("v=spf1 a:%{d2}/24//64", false) == "v=spf1 a:example.com//64");
  CHECK(n("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ?exists:%{i}.x.example") ==
        "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ?exists:192.0.2.3.x.example");
  // Redirect after the mechanisms, or not at all when there is "all" (§6.1).
  CHECK(n("v=spf1 redirect=%{d2} ip4:1.2.3.4") == "v=spf1 ip4:1.2.3.4 redirect=example.com");
  CHECK(n("v=spf1 redirect=x.example ~all") == "v=spf1 ~all");
  // Unknown modifiers are checked, then dropped; exp= stays.
  CHECK(n("v=spf1 moo.cow-far_out=man:dog/cat exp=e.%{d} -all") == "v=spf1 -all exp=e.email.example.com");
  // CIDR /0: an address range pair, or the any-address label for a and mx.
  CHECK(n("v=spf1 -ip4:1.1.1.1/0") == "v=spf1 -ip4:0.0.0.0/1 -ip4:128.0.0.0/1");
  CHECK(n("v=spf1 ip4:1.1.1.1/0", false) == "v=spf1");
  CHECK(n("v=spf1 a/0") == "v=spf1 a:email.example.com.-moat-any-address-");
  // Expanded text goes back as a literal for libspf2's expander.
  v.sender = "a b%c@email.example.com";
  CHECK(n("v=spf1 exists:%{l}.x.example") == "v=spf1 exists:a%_b%%c.x.example");
  for (auto bad : {"v=spf1 -all.", "v=spf1 all:x", "v=spf1 a:foo-bar", "v=spf1 a:abc.123", "v=spf1 a:museum",
                   "v=spf1 a:", "v=spf1 mx: -all", "v=spf1 include:", "v=spf1 exists:a.example/24",
                   "v=spf1 ptr/0", "v=spf1 a/33", "v=spf1 a//129", "v=spf1 a/24/64", "v=spf1 ip4:1.2.3",
                   "v=spf1 ip4:1.2.3.4/032", "v=spf1 ip4:1.2.3.4:8080", "v=spf1 ip6::CAFE::BABE",
                   "v=spf1 redirect:x.example", "v=spf1 =all", "v=spf1 1up=foo", "v=spf1 foo=%abc",
                   "v=spf1 exp=a.example exp=b.example", "v=spf1 redirect=a.example redirect=a.example",
                   "v=spf1 exp=", "v=spf1 exp=-all", "v=spf1 exists:%{r}.example.com", "v=spf1 a:%(ir).x.com",
                   "v=spf1 frob"})
    CHECK(n(bad) == "ERROR");
}

TEST_CASE("spf: every prefix of a record is checked without harm", "[spf]") {
  auto v = rfc_values();
  const std::string record =
      "v=spf1 a:%{d2}/24//64 mx ptr:%{ir}.x.example ip4:192.0.2.0/24 ip6:2001:db8::/32 "
      "exists:%{l1r-}.%{o} include:_spf.%{d} redirect=%{d2} exp=explain.%{d} -all";
  for (std::size_t i = 6; i <= record.size(); ++i) {
    auto out = spf::normalize(std::string_view(record).substr(0, i), v, true);
    CHECK((out.error.empty() != out.record.empty()));
  }
}

TEST_CASE("spf: limits of RFC 7208 §4.6.4 across includes", "[spf]") {
  FakeDns dns;
  dns.a["host.example.com"] = {"192.0.2.9"};
  SECTION("10 DNS terms pass, the 11th is a permerror even when it would match") {
    dns.txt["ten.example.com"] = {"v=spf1 include:inc.example.com a:host.example.com a:host.example.com "
                                  "a:host.example.com a:host.example.com ip4:192.0.2.1 -all"};
    dns.txt["inc.example.com"] = {"v=spf1 a:host.example.com a:host.example.com a:host.example.com "
                                  "a:host.example.com a:host.example.com"};
    auto o = check(dns, "x@ten.example.com");
    CHECK(o.result == spf::Result::Pass);
    CHECK(o.dns_terms == 10);
    dns.txt["ten.example.com"] = {"v=spf1 include:inc.example.com a:host.example.com a:host.example.com "
                                  "a:host.example.com a:host.example.com a:match.example.com ip4:192.0.2.1 -all"};
    dns.a["match.example.com"] = {"192.0.2.1"};  // the 11th term would match
    o = check(dns, "x@ten.example.com");
    CHECK(o.result == spf::Result::PermError);
    CHECK_THAT(o.problem, Catch::Contains("10 DNS lookups"));
  }
  SECTION("two void lookups are fine, the third is a permerror") {
    dns.txt["void.example.com"] = {"v=spf1 a:no1.example.com a:no2.example.com ip4:192.0.2.1"};
    CHECK(check(dns, "x@void.example.com").result == spf::Result::Pass);
    dns.txt["void.example.com"] = {"v=spf1 a:no1.example.com a:no2.example.com mx:no3.example.com ip4:192.0.2.1"};
    auto o = check(dns, "x@void.example.com");
    CHECK(o.result == spf::Result::PermError);
    CHECK(o.void_lookups == 3);
  }
  SECTION("an include loop ends in permerror") {
    dns.txt["loop.example.com"] = {"v=spf1 include:loop2.example.com -all"};
    dns.txt["loop2.example.com"] = {"v=spf1 include:loop.example.com -all"};
    CHECK(check(dns, "x@loop.example.com").result == spf::Result::PermError);
  }
  SECTION("record selection (§4.5)") {
    dns.txt["two.example.com"] = {"v=spf1 -all", "V=SPF1 +all"};
    CHECK(check(dns, "x@two.example.com").result == spf::Result::PermError);
    dns.txt["none.example.com"] = {"v=spf10 +all", "hello"};
    CHECK(check(dns, "x@none.example.com").result == spf::Result::None);
    CHECK(check(dns, "x@nx.example.com").result == spf::Result::None);
    dns.txt["ok.example.com"] = {"v=spf1 -all", "other text"};
    auto o = check(dns, "x@ok.example.com");
    CHECK(o.result == spf::Result::Fail);
    CHECK(o.explanation == "192.0.2.1 is not a permitted sender for ok.example.com");
  }
  SECTION("loopback clients are checked like any other (no libspf2 free pass)") {
    dns.txt["lo.example.com"] = {"v=spf1 -all"};
    CHECK(check(dns, "x@lo.example.com", "127.0.0.1").result == spf::Result::Fail);
  }
  SECTION("malformed identities are none without asking DNS (§4.3)") {
    CHECK(check(dns, "x@localhost").result == spf::Result::None);
    CHECK(check(dns, "x@[192.0.2.1]").result == spf::Result::None);
    CHECK(check(dns, "x@a..example.com").result == spf::Result::None);
    CHECK(dns.asked.empty());
  }
}

TEST_CASE("spf: Received-SPF field and the ScanContext entries", "[spf]") {
  spf::Outcome o;
  o.result = spf::Result::Fail;
  o.domain = "example.org";
  o.sender = "bob@example.org";
  spf::Query q{*parse_ip("192.0.2.1"), "bob@example.org", "mail.example.org", false, "mx.example.net"};
  auto h = spf::received_spf(o, q);
  CHECK(h ==
        "Received-SPF: fail (mx.example.net: domain of bob@example.org does not designate 192.0.2.1 as permitted "
        "sender)\r\n\treceiver=mx.example.net; client-ip=192.0.2.1; envelope-from=\"bob@example.org\";\r\n"
        "\thelo=mail.example.org; identity=mailfrom;\r\n");
  // Client-chosen text cannot break out of the field or the comment.
  q.sender = "\"a;b\\\r\nX-Evil: 1\"@example.org";
  o.sender = q.sender;
  q.helo = "evil)(\r\n";
  h = spf::received_spf(o, q);
  CHECK(h.find("\r\nX-Evil") == std::string::npos);
  CHECK(h.find("envelope-from=\"\\\"a;b\\\\X-Evil: 1\\\"@example.org\";") != std::string::npos);
  CHECK(h.find("helo=\"evil)(\";") != std::string::npos);

  filters::ScanContext ctx;
  o.result = spf::Result::Pass;
  q = spf::Query{*parse_ip("192.0.2.1"), "", "mail.example.org", false, "mx.example.net"};
  o.domain = "mail.example.org";
  spf::record(o, q, ctx);
  REQUIRE(ctx.symbols.size() == 1);
  CHECK(ctx.symbols[0].name == "SPF_PASS");
  REQUIRE(ctx.auth.size() == 1);
  CHECK(ctx.auth[0].method == "spf");
  CHECK(ctx.auth[0].result == "pass");
  CHECK(ctx.auth[0].prop("smtp.helo") == "mail.example.org");  // <>: the HELO identity (§2.4)
  REQUIRE(ctx.headers.size() == 1);
  CHECK(ctx.headers[0].find("identity=helo;") != std::string::npos);
  CHECK(spf::symbol_for(spf::Result::SoftFail, true) == "SPF_HELO_SOFTFAIL");
}

TEST_CASE("spf: the filter at MAIL FROM through the resolver and unbound", "[spf][unbound]") {
  test::UnboundServer zone({"spf.example.net."},
                           {"pass.spf.example.net. TXT \"v=spf1 ip4:127.0.0.1 -all\"",
                            "fail.spf.example.net. TXT \"v=spf1 -all\""},
                           {"local-zone: \"down.example.net.\" always_refuse"});
  INFO(zone.log());
  REQUIRE(zone.ready());
  asio::io_context io;
  asio::thread_pool pool(2);
  config::Dns dcfg;
  dcfg.upstream = HostPort{"127.0.0.1", zone.port()};
  dcfg.timeout = config::Seconds(2);
  dns::Resolver resolver(io, dcfg);
  config::Config cfg;
  cfg.server.hostname = "mx.example.net";
  config::Filter settings{"spf"};
  auto run = [&](filters::spf::SpfFilter& f, const std::string& sender, filters::ScanContext& ctx) {
    ctx.envelope.sender = sender;
    ctx.envelope.client.ip = *parse_ip("127.0.0.1");
    ctx.envelope.client.helo = "client.example.net";
    return test::run_on(io, [&](auto&) { return f.run(filters::Phase::MailFrom, ctx); });
  };
  filters::spf::SpfFilter closed(cfg, settings, &resolver, &pool);
  filters::ScanContext ctx;
  CHECK(run(closed, "a@pass.spf.example.net", ctx));
  CHECK(ctx.has("SPF_PASS"));
  CHECK(ctx.auth.at(0).prop("smtp.mailfrom") == "pass.spf.example.net");
  filters::ScanContext ctx2;
  CHECK(run(closed, "a@fail.spf.example.net", ctx2));
  CHECK(ctx2.has("SPF_FAIL"));
  // DNS failure: fail closed is DnsTempFail (451 4.4.3), fail open records temperror.
  filters::ScanContext ctx3;
  auto st = run(closed, "a@down.example.net", ctx3);
  REQUIRE_FALSE(st);
  CHECK(st.error().code == Errc::DnsTempFail);
  settings.fail = config::FailMode::Open;
  filters::spf::SpfFilter open(cfg, settings, &resolver, &pool);
  filters::ScanContext ctx4;
  CHECK(run(open, "a@down.example.net", ctx4));
  CHECK(ctx4.has("SPF_TEMPERROR"));
  CHECK(ctx4.auth.at(0).result == "temperror");
  // Authenticated submissions are not SPF's business.
  filters::ScanContext ctx5;
  ctx5.envelope.client.auth_user = "alice";
  CHECK(run(open, "a@fail.spf.example.net", ctx5));
  CHECK(ctx5.symbols.empty());
  // Built without daemon services: every run is a failure the fail mode handles.
  filters::spf::SpfFilter bare(cfg, settings, nullptr, nullptr);
  filters::ScanContext ctx6;
  auto st6 = run(bare, "a@pass.spf.example.net", ctx6);
  REQUIRE_FALSE(st6);
  CHECK(st6.error().code == Errc::ScanUnavailable);
  pool.join();
}

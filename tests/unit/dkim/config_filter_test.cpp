// The [dkim] configuration section (FILE:LINE errors, to_toml round trip)
// and the filter's signing side: who gets signed, with which keys, and key
// errors at build time rather than at the first message.
#include <boost/asio/thread_pool.hpp>
#include <catch2/catch.hpp>
#include <fstream>

#include "common/dns/resolver.hpp"
#include "filters/dkim/dkim.hpp"
#include "filters/registry.hpp"
#include "tests/support/run.hpp"
#include "tests/support/temp_dir.hpp"

using namespace moat;
using namespace moat::filters;

namespace {

std::string base(const std::string& extra) {
  return "[server]\nhostname = \"mx.example.net\"\n[[listener]]\nname = \"smtp\"\naddress = \"127.0.0.1:2525\"\n"
         "[relay]\nnetworks = [\"192.0.2.0/24\"]\n" + extra;
}

}  // namespace

TEST_CASE("dkim config: keys, limits and header list", "[dkim][config]") {
  auto cfg = config::parse(base("[dkim]\nmax_signatures = 3\nallow_sha1 = true\nsign_headers = [\"From\", \"subject\"]\n"
                                "[[dkim.sign]]\ndomain = \"Example.ORG.\"\nselector = \"s1\"\nkey = \"keys/a.pem\"\n"
                                "[[dkim.sign]]\ndomain = \"example.org\"\nselector = \"s2\"\nkey = \"/k/b.pem\"\n"),
                           "/etc/moat/moat.toml");
  REQUIRE(cfg);
  const auto& d = (*cfg)->dkim;
  CHECK(d.max_signatures == 3);
  CHECK(d.allow_sha1);
  CHECK(d.sign_headers == std::vector<std::string>{"from", "subject"});
  REQUIRE(d.sign.size() == 2);
  CHECK(d.sign[0].domain == "example.org");
  CHECK(d.sign[0].key == "/etc/moat/keys/a.pem");
  CHECK(d.sign[0].line == 12);  // the [[dkim.sign]] line
  auto again = config::parse(config::to_toml(**cfg), "/etc/moat/moat.toml");
  REQUIRE(again);
  CHECK(config::to_toml(**again) == config::to_toml(**cfg));
}

TEST_CASE("dkim config: every mistake is reported with its line", "[dkim][config]") {
  auto bad = config::parse(base("[dkim]\nmax_signatures = 0\nsign_headers = [\"subject\", \"bad name\"]\n"
                                "[[dkim.sign]]\ndomain = \"not a domain\"\nselector = \"s 1\"\n"
                                "[[dkim.sign]]\ndomain = \"example.org\"\nselector = \"s\"\nkey = \"a\"\n"
                                "[[dkim.sign]]\ndomain = \"example.org\"\nselector = \"s\"\nkey = \"b\"\ntypo = 1\n"),
                           "m.toml");
  REQUIRE_FALSE(bad);
  const auto& e = bad.error().detail;
  INFO(e);
  CHECK(e.find("m.toml:9: dkim.max_signatures: must be between 1 and 50") != std::string::npos);
  CHECK(e.find("m.toml:10: dkim.sign_headers: expected a header field name") != std::string::npos);
  CHECK(e.find("dkim.sign_headers: must include \"from\"") != std::string::npos);
  CHECK(e.find("m.toml:12: dkim.sign[1].domain: expected a domain name") != std::string::npos);
  CHECK(e.find("dkim.sign[1].selector: expected a DKIM selector") != std::string::npos);
  CHECK(e.find("dkim.sign[1]: missing key 'key'") != std::string::npos);
  CHECK(e.find("configured twice") != std::string::npos);
  CHECK(e.find("unknown key 'dkim.sign[3].typo'") != std::string::npos);
}

TEST_CASE("dkim filter: keys are checked when the filter is built", "[dkim]") {
  test::TempDir dir;
  asio::io_context io;
  asio::thread_pool pool(1);
  dns::Resolver resolver(io, config::Dns{});
  auto cfg = config::parse(base("[dkim]\n[[dkim.sign]]\ndomain = \"example.org\"\nselector = \"s\"\nkey = \"" +
                                (dir.path / "missing.pem").string() + "\"\n"),
                           "/etc/moat.toml");
  REQUIRE(cfg);
  auto f = make_filter(config::Filter{"dkim"}, **cfg, Services{&resolver, &pool, {}});
  REQUIRE_FALSE(f);
  CHECK(f.error().detail.find("/etc/moat.toml:9: dkim.sign (example.org, s):") == 0);
  CHECK(f.error().detail.find("cannot open") != std::string::npos);
  // Without the resolver it refuses too (services.hpp contract).
  CHECK_FALSE(make_filter(config::Filter{"dkim"}, **cfg, Services{}));
  pool.join();
}

TEST_CASE("dkim filter: our senders are signed, strangers are not", "[dkim]") {
  test::TempDir dir;
  std::string sign;
  for (auto [sel, type] : {std::pair{"r", dkim::KeyType::Rsa}, std::pair{"e", dkim::KeyType::Ed25519}}) {
    auto k = dkim::generate_key(type);
    REQUIRE(k);
    std::ofstream(dir.path / (std::string(sel) + ".pem")) << k->pem;
    sign += "[[dkim.sign]]\ndomain = \"example.org\"\nselector = \"" + std::string(sel) + "\"\nkey = \"" +
            (dir.path / (std::string(sel) + ".pem")).string() + "\"\n";
  }
  auto cfg = config::parse(base("[dkim]\n" + sign), "/etc/moat.toml");
  REQUIRE(cfg);
  asio::io_context io;
  asio::thread_pool pool(1);
  dns::Resolver resolver(io, config::Dns{});
  auto f = dkim::DkimFilter::create(**cfg, Services{&resolver, &pool, {}});
  REQUIRE(f);

  auto run = [&](std::string from, std::string auth_user, std::string ip) {
    static std::string message;
    message = "From: " + from + "\r\nTo: <bob@example.net>\r\nSubject: hi\r\n\r\nbody\r\n";
    ScanContext ctx;
    ctx.message = message;
    ctx.header = std::string_view(message).substr(0, message.find("\r\n\r\n") + 2);
    ctx.envelope.client.auth_user = auth_user;
    ctx.envelope.client.ip = *parse_ip(ip);
    auto st = test::run_on(io, [&](auto&) { return (*f)->run(Phase::EndOfData, ctx); });
    CHECK(st);
    return ctx;
  };
  auto ctx = run("Alice <alice@Example.org>", "alice", "203.0.113.9");
  REQUIRE(ctx.headers.size() == 2);  // RSA and Ed25519
  CHECK(ctx.headers[0].find("a=rsa-sha256") != std::string::npos);
  CHECK(ctx.headers[1].find("a=ed25519-sha256") != std::string::npos);
  CHECK(ctx.has("DKIM_SIGNED"));
  CHECK(ctx.auth.empty());  // our own mail is signed, not verified

  CHECK(run("<alice@example.org>", "", "192.0.2.7").headers.size() == 2);        // relay network
  CHECK(run("<alice@sub.example.org>", "alice", "192.0.2.7").headers.empty());   // no key for it
  CHECK(run("<a@example.org>, <b@example.org>", "alice", "192.0.2.7").headers.empty());  // not one mailbox
  auto stranger = run("<alice@example.org>", "", "203.0.113.9");                  // inbound: verified instead
  CHECK(stranger.headers.empty());
  CHECK(stranger.has("DKIM_NONE"));
  REQUIRE(stranger.auth.size() == 1);
  CHECK(stranger.auth[0].result == "none");
  pool.join();
}

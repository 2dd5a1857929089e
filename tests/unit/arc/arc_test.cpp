// ARC (RFC 8617): canonicalization (RFC 6376 §3.4), b= removal, our seals
// verifying (RSA and Ed25519), the 50-instance limit, tampering, every
// prefix of an ARC header set, and the arc filter against a real unbound.
#include <catch2/catch.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <boost/asio/thread_pool.hpp>
#include <map>

#include "common/base64.hpp"
#include "common/dns/resolver.hpp"
#include "filters/arc/arc.hpp"
#include "tests/support/peers.hpp"
#include "tests/support/run.hpp"
#include "tests/support/temp_dir.hpp"

using namespace moat;
using namespace moat::filters;
using namespace moat::filters::arc;
namespace asio = boost::asio;

namespace {

const std::string kMessage =
    "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: ARC test\r\n"
    "Date: Fri, 27 Nov 2026 03:00:00 +0000\r\nMessage-ID: <arc1@example.org>\r\n\r\n"
    "Hello  there,\r\nthis is the body.\r\n\r\n";

Pkey make_key(const char* type, unsigned bits = 0) {
  if (bits) return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, type, std::size_t(bits)));
  return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, type));
}

std::string key_record(EVP_PKEY* k) {
  if (EVP_PKEY_get_id(k) == EVP_PKEY_ED25519) {
    unsigned char raw[32];
    std::size_t n = sizeof raw;
    EVP_PKEY_get_raw_public_key(k, raw, &n);
    return "v=DKIM1; k=ed25519; p=" + base64_encode(std::string_view(reinterpret_cast<char*>(raw), n));
  }
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(k, &der);
  std::string out = "v=DKIM1; k=rsa; p=" + base64_encode(std::string_view(reinterpret_cast<char*>(der), n));
  OPENSSL_free(der);
  return out;
}

struct Signer {
  Pkey key;
  std::string domain, selector;
  std::map<std::string, std::string>* dns;
  Signer(Pkey k, std::string d, std::string s, std::map<std::string, std::string>& records)
      : key(std::move(k)), domain(std::move(d)), selector(std::move(s)), dns(&records) {
    records[selector + "._domainkey." + domain] = key_record(key.get());
  }
  // Seals `msg` as the next hop would: verify, then add a set on top.
  std::string hop(const std::string& msg, const Keys& keys, const std::string& results = "mx.example.org; spf=pass") {
    Verification v = verify(msg, keys);
    SealRequest r{domain, selector, key.get(), 1700000000, default_sign_headers(), results, v.cv, v.instances + 1};
    auto s = seal(msg, r);
    return s ? s->fields() + msg : std::string();
  }
};

Keys keys_of(const std::map<std::string, std::string>& m) {
  return [&m](const std::string& n) -> std::optional<std::string> {
    auto it = m.find(n);
    return it == m.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
}

}  // namespace

TEST_CASE("arc: canonicalization (RFC 6376 §3.4.5)", "[arc]") {
  CHECK(canon_header_relaxed("A: X\r\n") == "a:X\r\n");
  CHECK(canon_header_relaxed("B : Y\t\r\n\tZ  \r\n") == "b:Y Z\r\n");
  std::string body = " C \r\nD \t E\r\n\r\n\r\n";
  CHECK(canon_body(body, true) == " C\r\nD E\r\n");
  CHECK(canon_body(body, false) == " C \r\nD \t E\r\n");
  CHECK(canon_body("", false) == "\r\n");
  CHECK(canon_body("", true) == "");
  CHECK(canon_body("\r\n\r\n", true) == "");
  CHECK(canon_body("x", true) == "x\r\n");
}

TEST_CASE("arc: b= removal keeps bh= and the rest", "[arc]") {
  CHECK(without_b("ARC-Seal: a=rsa-sha256; b=abc\r\n def; cv=none\r\n") == "ARC-Seal: a=rsa-sha256; b=; cv=none\r\n");
  CHECK(without_b("X: bh=xyz; b = q+/=\r\n") == "X: bh=xyz; b =\r\n");
  CHECK(without_b("X: bh=xyz; a=1") == "X: bh=xyz; a=1");
}

TEST_CASE("arc: our seals verify, tampering fails", "[arc]") {
  std::map<std::string, std::string> dns;
  auto keys = keys_of(dns);
  Signer rsa(make_key("RSA", 2048), "forwarder.example.com", "arc1", dns);
  Signer ed(make_key("ED25519"), "list.example.net", "ed", dns);

  CHECK(verify(kMessage, keys).cv == Cv::None);
  std::string one = rsa.hop(kMessage, keys);
  REQUIRE(!one.empty());
  Verification v1 = verify(one, keys);
  CHECK(v1.cv == Cv::Pass);
  CHECK(v1.instances == 1);
  CHECK(v1.ams_domain == "forwarder.example.com");
  std::string two = ed.hop(one, keys);
  Verification v2 = verify(two, keys);
  CHECK(v2.cv == Cv::Pass);
  CHECK(v2.instances == 2);
  CHECK(key_names(two) == std::vector<std::string>{"ed._domainkey.list.example.net", "arc1._domainkey.forwarder.example.com"});

  // Altered body: the newest AMS fails.
  std::string altered = two;
  altered.replace(altered.find("this is the body"), 4, "THIS");
  CHECK(verify(altered, keys).reason == "AMS body hash");
  // Altered signed header.
  std::string subj = two;
  subj.replace(subj.find("Subject: ARC test"), 17, "Subject: ARC TEST");
  CHECK(verify(subj, keys).cv == Cv::Fail);
  // An older seal altered: the AS chain fails.
  std::string old_as = two;
  auto pos = old_as.find("cv=none");
  old_as.replace(pos, 7, "cv=pass");
  CHECK(verify(old_as, keys).cv == Cv::Fail);
  // Key gone or revoked.
  auto saved = dns["arc1._domainkey.forwarder.example.com"];
  dns["arc1._domainkey.forwarder.example.com"] = "v=DKIM1; k=rsa; p=";
  CHECK(verify(two, keys).cv == Cv::Fail);
  dns["arc1._domainkey.forwarder.example.com"] = saved;
  // A hop that saw a failing chain seals cv=fail; the chain stays failed.
  std::string three = rsa.hop(altered, keys);
  REQUIRE(!three.empty());
  CHECK(three.find("cv=fail") != std::string::npos);
  CHECK(verify(three, keys).cv == Cv::Fail);
}

TEST_CASE("arc: structure and the 50-instance limit", "[arc]") {
  std::map<std::string, std::string> dns;
  auto keys = keys_of(dns);
  Signer s(make_key("ED25519"), "hop.example.com", "s", dns);
  std::string msg = kMessage;
  for (int i = 0; i < 50; ++i) msg = s.hop(msg, keys);
  REQUIRE(!msg.empty());
  Verification v = verify(msg, keys);
  CHECK(v.cv == Cv::Pass);
  CHECK(v.instances == 50);
  CHECK(s.hop(msg, keys).empty());  // no 51st set

  // i=51 and i=0 are invalid; a gap or a duplicate fails.
  std::string one = s.hop(kMessage, keys);
  CHECK(verify("ARC-Seal: i=51; a=rsa-sha256; cv=none; d=x; s=y; b=\r\n" + kMessage, keys).cv == Cv::Fail);
  std::string gap = one;
  for (auto p = gap.find("i=1;"); p != std::string::npos; p = gap.find("i=1;")) gap[p + 2] = '2';
  CHECK(verify(gap, keys).reason == "instance gap at i=2");
  CHECK(verify("ARC-Authentication-Results: i=1; x; none\r\n" + one, keys).cv == Cv::Fail);
  std::string missing = one.substr(one.find("ARC-Message-Signature"));
  CHECK(verify(missing, keys).reason == "incomplete set i=1");
}

TEST_CASE("arc: every prefix of a sealed header never passes early", "[arc]") {
  std::map<std::string, std::string> dns;
  auto keys = keys_of(dns);
  Signer s(make_key("ED25519"), "hop.example.com", "s", dns);
  std::string sealed = s.hop(kMessage, keys);
  std::size_t arc_end = sealed.find("From: Alice");
  // Up to the last field's line end (cut there, the CRLF added back makes the whole).
  for (std::size_t n = 0; n + 2 < arc_end; ++n) {
    // The ARC fields cut at n, the original message after them.
    std::string cut = sealed.substr(0, n);
    std::string msg = cut + "\r\n" + kMessage;
    Verification v = verify(msg, keys);
    INFO(n);
    CHECK(v.cv != Cv::Pass);
  }
  CHECK(verify(sealed, keys).cv == Cv::Pass);
}

TEST_CASE("arc filter: verify and seal against unbound", "[arc][unbound]") {
  std::map<std::string, std::string> dns;
  auto keys = keys_of(dns);
  Signer upstream(make_key("ED25519"), "list.example.net", "up", dns);
  std::string inbound = upstream.hop(kMessage, keys, "list.example.net; dkim=pass header.d=example.org");
  REQUIRE(!inbound.empty());

  test::TempDir dir;
  Pkey ours = make_key("ED25519");
  std::string ours_record = key_record(ours.get());
  {
    FILE* f = std::fopen((dir.path / "arc.pem").c_str(), "w");
    REQUIRE(f);
    PEM_write_PrivateKey(f, ours.get(), nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
  }
  test::UnboundServer srv({"example.net.", "example.com."},
                          {"up._domainkey.list.example.net. TXT \"" + dns["up._domainkey.list.example.net"] + "\"",
                           "gw._domainkey.gateway.example.com. TXT \"" + ours_record + "\""},
                          {"local-zone: \"broken.example.net.\" always_refuse"});
  REQUIRE(srv.ready());
  asio::io_context io;
  asio::thread_pool pool(1);
  config::Dns d;
  d.upstream = HostPort{"127.0.0.1", srv.port()};
  d.timeout = config::Seconds(3);
  dns::Resolver resolver(io, d);
  config::Config cfg;
  cfg.server.authserv_id = "mx.gateway.example.com";
  cfg.arc.domain = "gateway.example.com";
  cfg.arc.selector = "gw";
  cfg.arc.key = dir.path / "arc.pem";
  auto made = ArcFilter::make(cfg, Services{&resolver, &pool, dir.path});
  REQUIRE(made);
  auto& filter = **made;

  auto run = [&](const std::string& message) {
    ScanContext ctx;
    ctx.message = message;
    ctx.header = std::string_view(message).substr(0, message.find("\r\n\r\n") + 2);
    ctx.envelope.client.ip = *parse_ip("192.0.2.9");
    ctx.auth.push_back(AuthResult{"spf", "pass", "", {{"smtp.mailfrom", "list.example.net"}}});
    Status st = test::run_on(io, [&](auto&) { return filter.run(Phase::EndOfData, ctx); });
    return std::make_pair(std::move(st), std::move(ctx));
  };

  auto [st, ctx] = run(inbound);
  REQUIRE(st);
  REQUIRE(ctx.auth_result("arc"));
  CHECK(ctx.auth_result("arc")->result == "pass");
  CHECK(ctx.has("ARC_PASS"));
  REQUIRE(ctx.headers.size() == 1);
  const std::string& set = ctx.headers[0];
  CHECK(set.find("ARC-Seal: a=ed25519-sha256; b=") == 0);
  CHECK(set.find("i=2;") != std::string::npos);
  CHECK(set.find("ARC-Authentication-Results: i=2; mx.gateway.example.com;") != std::string::npos);
  CHECK(set.find("arc=pass") != std::string::npos);
  // Our set verifies on top of the inbound chain (keys as published).
  dns["gw._domainkey.gateway.example.com"] = ours_record;
  CHECK(verify(set + inbound, keys).cv == Cv::Pass);

  auto [st2, ctx2] = run(kMessage);
  CHECK(ctx2.auth_result("arc")->result == "none");
  CHECK(ctx2.headers.size() == 1);  // a first hop seals i=1, cv=none
  CHECK(ctx2.headers[0].find("cv=none") != std::string::npos);

  // A key under a SERVFAILing zone: temperror.
  std::map<std::string, std::string> other;
  Signer broken(make_key("ED25519"), "broken.example.net", "x", other);
  auto [st3, ctx3] = run(broken.hop(kMessage, keys_of(other)));
  REQUIRE_FALSE(st3);
  CHECK(st3.error().code == Errc::DnsTempFail);
  pool.join();
}

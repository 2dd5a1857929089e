// SmtpTransport and CalloutVerifier against Postfix's real smtp-sink on
// loopback (and unbound for MX routing): captured bytes compared exactly,
// 4xx/5xx at each stage, a dead next hop, pipelining on and off, connection
// reuse.
#include <catch2/catch.hpp>
#include <string>

#include "common/dns/resolver.hpp"
#include "common/tls.hpp"
#include "gateway/callout.hpp"
#include "gateway/smtp_client.hpp"
#include "tests/support/peers.hpp"
#include "tests/support/run.hpp"

using namespace moat;
using namespace moat::gateway;
namespace asio = boost::asio;

namespace {

config::Snapshot test_config() {
  auto c = std::make_shared<config::Config>();
  c->server.hostname = "moat.test";
  c->queue.connect_timeout = config::Seconds(3);
  c->queue.command_timeout = config::Seconds(5);
  c->queue.data_timeout = config::Seconds(10);
  c->queue.max_messages_per_connection = 3;
  return c;
}

// The body as smtp-sink writes it: its own headers, then each line with LF,
// un-dot-stuffed, then an empty line. Strip its headers for comparison.
std::string sink_body(const std::string& dump) {
  auto pos = dump.find("\nReceived: ");
  REQUIRE(pos != std::string::npos);
  for (int i = 0; i < 3; ++i) pos = dump.find('\n', pos + 1);
  return dump.substr(pos + 1);
}

std::string sink_header(const std::string& dump, const std::string& name) {
  auto pos = dump.find(name + ": ");
  if (pos == std::string::npos) return {};
  auto end = dump.find('\n', pos);
  return dump.substr(pos + name.size() + 2, end - pos - name.size() - 2);
}

struct Fixture {
  Fixture(std::uint16_t dns_port = 9) {
    config::Dns d;
    d.upstream = HostPort{"127.0.0.1", dns_port};
    d.timeout = config::Seconds(2);
    resolver = std::make_unique<dns::Resolver>(io, d);
    SmtpTransport::Options o;
    o.mx_port = mx_port;
    transport = std::make_unique<SmtpTransport>(io.get_executor(), *resolver, [this] { return cfg; }, *tls, o);
  }
  std::vector<RcptResult> deliver(const DeliveryRequest& req) {
    return test::run_on(io, [&](auto&) { return transport->deliver(req); });
  }
  DeliveryRequest request(std::uint16_t port, const std::string& body) {
    test::write_file(dir.path / "q", "JUNK-BEFORE" + body + "JUNK-AFTER");
    DeliveryRequest req;
    req.queue_id = "TESTQID";
    req.envelope = &env;
    for (std::size_t i = 0; i < env.recipients.size(); ++i) req.recipients.push_back(i);
    req.source.file = dir.path / "q";
    req.source.offset = 11;
    req.source.length = body.size();
    req.source.prepend = "X-Added: yes\r\n";
    req.destination.domain = "example.net";
    req.destination.next_hop = HostPort{"127.0.0.1", port};
    return req;
  }

  asio::io_context io;
  config::Snapshot cfg = test_config();
  tls::ContextPtr tls = tls::make_client_context(false);
  std::uint16_t mx_port = 25;
  std::unique_ptr<dns::Resolver> resolver;
  std::unique_ptr<SmtpTransport> transport;
  test::TempDir dir;
  Envelope env = make_env();
  static Envelope make_env() {
    Envelope e;
    e.sender = "sender@example.org";
    e.recipients.resize(2);
    e.recipients[0].address = "a@example.net";
    e.recipients[1].address = "b@example.net";
    return e;
  }
};

const std::string kBody =
    "Subject: test\r\n\r\n.leading dot\r\n..two dots\r\nbare LF\nbare CR\rbyte \xe9\xff\x01 end\r\n.\r\nlast line";
const std::string kExpected =
    "X-Added: yes\nSubject: test\n\n.leading dot\n..two dots\nbare LF\nbare CR\nbyte \xe9\xff\x01 end\n.\nlast line\n\n";

}  // namespace

TEST_CASE("smtp client: MAIL/RCPT lines carry the extensions", "[smtp_client]") {
  Envelope env;
  env.sender = "s@x";
  env.body = BodyType::EightBitMime;
  env.ret = DsnRet::Hdrs;
  env.envid = "QQ+2B1";
  Extensions ext;
  CHECK(mail_from_line(env, ext, 10) == "MAIL FROM:<s@x>");
  ext.size_offered = ext.eightbitmime = ext.dsn = true;
  CHECK(mail_from_line(env, ext, 10) == "MAIL FROM:<s@x> SIZE=10 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1");
  Recipient r;
  r.address = "r@y";
  r.notify = DsnNotify::Success | DsnNotify::Delay;
  r.orcpt = "rfc822;r@y";
  CHECK(rcpt_to_line(r, ext) == "RCPT TO:<r@y> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;r@y");
  r.notify = DsnNotify::Never;
  r.orcpt.clear();
  CHECK(rcpt_to_line(r, ext) == "RCPT TO:<r@y> NOTIFY=NEVER");
  ext.dsn = false;
  CHECK(rcpt_to_line(r, ext) == "RCPT TO:<r@y>");
}

TEST_CASE("smtp client: delivers exact bytes to smtp-sink", "[smtp_client][sink]") {
  auto pipelining = GENERATE(true, false);
  test::SmtpSink sink(pipelining ? std::vector<std::string>{} : std::vector<std::string>{"-p"});
  REQUIRE(sink.ready());
  Fixture f;
  f.env.body = BodyType::EightBitMime;
  f.env.ret = DsnRet::Full;
  f.env.envid = "ENV1";
  f.env.recipients[0].notify = DsnNotify::Failure;
  f.env.recipients[0].orcpt = "rfc822;a@example.net";
  auto res = f.deliver(f.request(sink.port(), kBody));
  REQUIRE(res.size() == 2);
  for (const auto& r : res) {
    CAPTURE(r.diagnostic);
    CHECK(r.status == RcptStatus::Sent);
    CHECK(r.dsn.substr(0, 2) == "2.");
    CHECK(r.relay == "127.0.0.1[127.0.0.1]:" + std::to_string(sink.port()));
  }
  REQUIRE(sink.wait_messages(1));
  auto dump = sink.messages().at(0);
  CHECK(sink_body(dump) == kExpected);
  CHECK(sink_header(dump, "X-Helo-Args") == "moat.test");
  CHECK(sink_header(dump, "X-Mail-Args") == "<sender@example.org> BODY=8BITMIME RET=FULL ENVID=ENV1");
  CHECK(dump.find("X-Rcpt-Args: <a@example.net> NOTIFY=FAILURE ORCPT=rfc822;a@example.net\n") != std::string::npos);
  CHECK(dump.find("X-Rcpt-Args: <b@example.net>\n") != std::string::npos);
}

TEST_CASE("smtp client: connections are reused up to the per-connection limit", "[smtp_client][sink]") {
  test::SmtpSink sink({"-n", "2"});   // exits after two sessions: a third would fail
  REQUIRE(sink.ready());
  Fixture f;
  for (int i = 0; i < 5; ++i) {
    auto res = f.deliver(f.request(sink.port(), "Subject: " + std::to_string(i) + "\r\n\r\nbody\r\n"));
    REQUIRE(res.size() == 2);
    CAPTURE(i, res[0].diagnostic);
    CHECK(res[0].status == RcptStatus::Sent);
  }
  // max_messages_per_connection = 3: messages 1-3 on the first session, 4-5 on the second.
  CHECK(sink.wait_messages(5));
  CHECK(f.transport->cached_connections() == 1);
}

TEST_CASE("smtp client: a dead cached connection falls back to a new one", "[smtp_client][sink]") {
  Fixture f;
  std::uint16_t port = 0;
  {
    test::SmtpSink first;
    REQUIRE(first.ready());
    port = first.port();
    CHECK(f.deliver(f.request(port, "a\r\n"))[0].status == RcptStatus::Sent);
    CHECK(f.transport->cached_connections() == 1);
  }
  // The sink is gone; its port is down: the cached connection is dead and a
  // new one is refused.
  auto res = f.deliver(f.request(port, "b\r\n"));
  CHECK(res[0].status == RcptStatus::Deferred);
  CHECK(res[0].dsn == "4.4.1");
  CHECK(res[0].diagnostic.find("connect to 127.0.0.1[127.0.0.1]:" + std::to_string(port)) != std::string::npos);
}

TEST_CASE("smtp client: remote refusals map to per-recipient results", "[smtp_client][sink]") {
  struct Case {
    std::vector<std::string> opts;
    RcptStatus status;
    std::string dsn_class;
    std::string in_reply_to;
  };
  auto c = GENERATE(values<Case>({
      {{"-f", "RCPT"}, RcptStatus::Bounced, "5.", "RCPT TO"},
      {{"-r", "RCPT"}, RcptStatus::Deferred, "4.", "RCPT TO"},
      {{"-f", "MAIL"}, RcptStatus::Bounced, "5.", "MAIL FROM"},
      {{"-f", "DATA"}, RcptStatus::Bounced, "5.", "DATA command"},
      {{"-r", "DATA"}, RcptStatus::Deferred, "4.", "DATA command"},
      {{"-f", "."}, RcptStatus::Bounced, "5.", "end of DATA"},
      {{"-r", "."}, RcptStatus::Deferred, "4.", "end of DATA"},
      {{"-r", "CONNECT"}, RcptStatus::Deferred, "4.", "refused to talk to me"},
      {{"-Q", "RCPT"}, RcptStatus::Deferred, "4.", ""},
  }));
  CAPTURE(c.opts);
  test::SmtpSink sink(c.opts);
  REQUIRE(sink.ready());
  Fixture f;
  auto res = f.deliver(f.request(sink.port(), "Subject: x\r\n\r\nhi\r\n"));
  REQUIRE(res.size() == 2);
  for (const auto& r : res) {
    CAPTURE(r.diagnostic);
    CHECK(r.status == c.status);
    CHECK(r.dsn.substr(0, 2) == c.dsn_class);
    CHECK(r.diagnostic.find(c.in_reply_to) != std::string::npos);
  }
  // smtp-sink writes its dump before answering ".", so only earlier
  // refusals leave no capture.
  if (c.in_reply_to != "end of DATA") CHECK(sink.messages().empty());
}

TEST_CASE("smtp client: a next hop that is down is deferred", "[smtp_client]") {
  Fixture f;
  auto port = test::free_port();
  auto res = f.deliver(f.request(port, "x\r\n"));
  REQUIRE(res.size() == 2);
  CHECK(res[0].status == RcptStatus::Deferred);
  CHECK(res[0].dsn == "4.4.1");
  CHECK(res[1].status == RcptStatus::Deferred);
}

TEST_CASE("smtp client: SMTPUTF8 required but not offered bounces without sending", "[smtp_client][sink]") {
  test::SmtpSink sink;
  REQUIRE(sink.ready());
  Fixture f;
  f.env.smtputf8 = true;
  auto res = f.deliver(f.request(sink.port(), "x\r\n"));
  CHECK(res[0].status == RcptStatus::Bounced);
  CHECK(res[0].dsn == "5.6.7");
  CHECK(sink.messages().empty());
}

TEST_CASE("smtp client: TLS required but not offered is deferred, never sent", "[smtp_client][sink]") {
  test::SmtpSink sink;
  REQUIRE(sink.ready());
  Fixture f;
  auto req = f.request(sink.port(), "secret\r\n");
  req.destination.tls = config::TlsPolicy::Encrypt;
  auto res = f.deliver(req);
  CHECK(res[0].status == RcptStatus::Deferred);
  CHECK(res[0].dsn == "4.7.4");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(sink.messages().empty());
}

TEST_CASE("smtp client: MX routing through unbound", "[smtp_client][sink][unbound]") {
  test::SmtpSink sink;
  REQUIRE(sink.ready());
  test::UnboundServer dns({"example.net."},
                          {"example.net. 300 IN MX 20 backup.example.net.",
                           "example.net. 300 IN MX 10 dead.example.net.",
                           "backup.example.net. 300 IN A 127.0.0.1",
                           "dead.example.net. 300 IN A 127.0.0.2",
                           "nomx.example.net. 300 IN A 127.0.0.1",
                           "nullmx.example.net. 300 IN MX 0 ."});
  REQUIRE(dns.ready());
  Fixture f(dns.port());
  // Every MX host on the sink's port; 127.0.0.2 has no listener there, so
  // the first (preferred) MX fails and the backup takes the message.
  f.mx_port = sink.port();
  SmtpTransport::Options o;
  o.mx_port = sink.port();
  f.transport = std::make_unique<SmtpTransport>(f.io.get_executor(), *f.resolver, [&f] { return f.cfg; }, *f.tls, o);

  SECTION("lowest preference first, next MX on failure") {
    auto req = f.request(0, "Subject: mx\r\n\r\nvia mx\r\n");
    req.destination.next_hop.reset();
    auto res = f.deliver(req);
    CAPTURE(res[0].diagnostic);
    CHECK(res[0].status == RcptStatus::Sent);
    CHECK(res[0].relay == "backup.example.net[127.0.0.1]:" + std::to_string(sink.port()));
    REQUIRE(sink.wait_messages(1));
  }
  SECTION("no MX: the domain's address") {
    auto req = f.request(0, "x\r\n");
    req.destination.next_hop.reset();
    req.destination.domain = "nomx.example.net";
    auto res = f.deliver(req);
    CAPTURE(res[0].diagnostic);
    CHECK(res[0].status == RcptStatus::Sent);
    CHECK(res[0].relay == "nomx.example.net[127.0.0.1]:" + std::to_string(sink.port()));
  }
  SECTION("null MX bounces 5.1.10") {
    auto req = f.request(0, "x\r\n");
    req.destination.next_hop.reset();
    req.destination.domain = "nullmx.example.net";
    auto res = f.deliver(req);
    CHECK(res[0].status == RcptStatus::Bounced);
    CHECK(res[0].dsn == "5.1.10");
  }
  SECTION("NXDOMAIN bounces") {
    auto req = f.request(0, "x\r\n");
    req.destination.next_hop.reset();
    req.destination.domain = "nowhere.example.net";
    auto res = f.deliver(req);
    CHECK(res[0].status == RcptStatus::Bounced);
  }
  SECTION("next hop given by name") {
    auto req = f.request(0, "x\r\n");
    req.destination.next_hop = HostPort{"backup.example.net", sink.port()};
    auto res = f.deliver(req);
    CHECK(res[0].status == RcptStatus::Sent);
  }
}

TEST_CASE("smtp client: DNS failure defers all with 4.4.3", "[smtp_client]") {
  Fixture f(test::free_port(SOCK_DGRAM));  // nothing answers there
  auto req = f.request(0, "x\r\n");
  req.destination.next_hop.reset();
  auto res = f.deliver(req);
  CHECK(res[0].status == RcptStatus::Deferred);
  CHECK(res[0].dsn == "4.4.3");
  CHECK(res[1].dsn == "4.4.3");
}

TEST_CASE("callout: answers from smtp-sink, cached", "[callout][sink]") {
  asio::io_context io;
  config::Dns d;
  d.upstream = HostPort{"127.0.0.1", 9};
  dns::Resolver resolver(io, d);
  auto cfg = test_config();
  auto tls = tls::make_client_context(false);
  CalloutVerifier v(io.get_executor(), resolver, [&] { return cfg; }, *tls);
  config::RelayDomain dom;
  dom.name = "example.net";
  dom.verify = config::VerifyMode::Callout;
  auto ask = [&](const std::string& addr) {
    return test::run_on(io, [&](auto&) { return v.verify(dom, addr); });
  };

  SECTION("accepted, then served from cache even when the host is gone") {
    {
      test::SmtpSink sink;
      REQUIRE(sink.ready());
      dom.next_hop = HostPort{"127.0.0.1", sink.port()};
      auto r = ask("User@Example.net");
      REQUIRE(r);
      CHECK(*r);
    }
    auto again = ask("user@example.NET");
    REQUIRE(again);
    CHECK(*again);
    CHECK(v.cache().size() == 1);
  }
  SECTION("refused with 5xx is false") {
    test::SmtpSink sink({"-f", "RCPT"});
    REQUIRE(sink.ready());
    dom.next_hop = HostPort{"127.0.0.1", sink.port()};
    auto r = ask("nobody@example.net");
    REQUIRE(r);
    CHECK_FALSE(*r);
  }
  SECTION("4xx is NextHopUnavailable and not cached") {
    test::SmtpSink sink({"-r", "RCPT"});
    REQUIRE(sink.ready());
    dom.next_hop = HostPort{"127.0.0.1", sink.port()};
    auto r = ask("later@example.net");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::NextHopUnavailable);
    CHECK(v.cache().size() == 0);
  }
  SECTION("MAIL FROM:<> refused is not an answer") {
    test::SmtpSink sink({"-f", "MAIL"});
    REQUIRE(sink.ready());
    dom.next_hop = HostPort{"127.0.0.1", sink.port()};
    auto r = ask("x@example.net");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::NextHopUnavailable);
  }
  SECTION("host down is NextHopUnavailable") {
    dom.next_hop = HostPort{"127.0.0.1", test::free_port()};
    auto r = ask("x@example.net");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::NextHopUnavailable);
  }
}

TEST_CASE("callout cache: TTL and LRU bound", "[callout]") {
  CalloutCache c(2);
  auto t0 = CalloutCache::Clock::now();
  c.put("a", true, std::chrono::seconds(10), t0);
  c.put("b", false, std::chrono::seconds(1), t0);
  CHECK(c.get("a", t0) == true);   // a is now most recent
  CHECK(c.get("b", t0) == false);
  CHECK_FALSE(c.get("b", t0 + std::chrono::seconds(2)));
  c.put("b", false, std::chrono::seconds(1), t0);
  (void)c.get("a", t0);
  c.put("c", true, std::chrono::seconds(10), t0);  // evicts b, the least recent
  CHECK(c.size() == 2);
  CHECK_FALSE(c.get("b", t0));
  CHECK(c.get("c", t0) == true);
}

// STARTTLS and SIZE: smtp-sink offers neither, so these use the small Python
// server in tests/support/tiny_smtpd.py (the only non-real peer here).
namespace {
struct TinySmtpd {
  explicit TinySmtpd(const std::string& mode, std::uint64_t size = 100000) {
    port = test::free_port();
    std::filesystem::create_directories(dir.path / "out");
    REQUIRE(tls::ensure_self_signed(dir.path / "c.pem", dir.path / "k.pem", "tiny.test"));
    proc = std::make_unique<test::ChildProcess>(
        std::vector<std::string>{"/usr/bin/python3", std::string(MOAT_SOURCE_DIR) + "/tests/support/tiny_smtpd.py",
                                 std::to_string(port), (dir.path / "c.pem").string(),
                                 (dir.path / "k.pem").string(), std::to_string(size),
                                 (dir.path / "out").string(), mode},
        dir.path / "log");
    ready = test::wait_for_port(port);
  }
  std::string message(int n) const { return test::read_file(dir.path / "out" / (std::to_string(n) + ".eml")); }
  test::TempDir dir;
  std::uint16_t port = 0;
  std::unique_ptr<test::ChildProcess> proc;
  bool ready = false;
};
}  // namespace

TEST_CASE("smtp client: STARTTLS and SIZE", "[smtp_client][tls]") {
  SECTION("TLS required and offered: the transaction runs inside TLS") {
    TinySmtpd srv("tls");
    REQUIRE(srv.ready);
    Fixture f;
    auto req = f.request(srv.port, "Subject: tls\r\n\r\nsecret\r\n");
    req.destination.tls = config::TlsPolicy::Encrypt;
    auto res = f.deliver(req);
    CAPTURE(res[0].diagnostic);
    CHECK(res[0].status == RcptStatus::Sent);
    auto m = srv.message(0);
    CHECK(m.rfind("tls=1 mail=<sender@example.org> SIZE=", 0) == 0);
    CHECK(m.find("secret\r\n") != std::string::npos);
  }
  SECTION("opportunistic TLS that breaks falls back to plaintext") {
    TinySmtpd srv("badtls");
    REQUIRE(srv.ready);
    Fixture f;
    auto res = f.deliver(f.request(srv.port, "x\r\n"));
    CAPTURE(res[0].diagnostic);
    CHECK(res[0].status == RcptStatus::Sent);
    CHECK(srv.message(0).rfind("tls=0", 0) == 0);
  }
  SECTION("required TLS that breaks is deferred, nothing sent") {
    TinySmtpd srv("badtls");
    REQUIRE(srv.ready);
    Fixture f;
    auto req = f.request(srv.port, "x\r\n");
    req.destination.tls = config::TlsPolicy::Encrypt;
    auto res = f.deliver(req);
    CHECK(res[0].status == RcptStatus::Deferred);
    CHECK(res[0].dsn == "4.7.5");
    CHECK(srv.message(0).empty());
  }
  SECTION("over the advertised SIZE bounces 5.3.4 without MAIL") {
    TinySmtpd srv("tls", 100);
    REQUIRE(srv.ready);
    Fixture f;
    auto res = f.deliver(f.request(srv.port, std::string(200, 'x') + "\r\n"));
    CHECK(res[0].status == RcptStatus::Bounced);
    CHECK(res[0].dsn == "5.3.4");
    CHECK(res[1].dsn == "5.3.4");
    CHECK(srv.message(0).empty());
  }
}

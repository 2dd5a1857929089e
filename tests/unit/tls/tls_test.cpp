// Unit tests for common/tls: self-signed certificate generation, real TLS
// handshakes over loopback TCP with Asio (version floor, ALPN/ALPACA check,
// peer verification), and the certificate as the openssl CLI sees it.
#include <catch2/catch.hpp>
#include <openssl/ssl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "common/tls.hpp"
#include "tests/support/temp_dir.hpp"

namespace fs = std::filesystem;
namespace asio = boost::asio;
using asio::ip::tcp;
using namespace moat;

namespace {

struct TempDir : test::TempDir {
  fs::path cert() const { return path / "tls" / "cert.pem"; }
  fs::path key() const { return path / "tls" / "key.pem"; }
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string run(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  REQUIRE(::pclose(f) == 0);
  return out;
}

struct Outcome {
  boost::system::error_code server_ec, client_ec;
  bool server_done = false, client_done = false;
  int version = 0;
  std::string alpn, describe;
};

// One handshake over a loopback TCP pair; either side closes its socket on
// failure so the other never waits.
Outcome handshake(asio::ssl::context& server_ctx, asio::ssl::context& client_ctx,
                  const std::function<void(SSL*)>& client_setup = {}) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  asio::ssl::stream<tcp::socket> server(io, server_ctx), client(io, client_ctx);
  if (client_setup) client_setup(client.native_handle());
  Outcome out;
  acceptor.async_accept(server.next_layer(), [&](boost::system::error_code ec) {
    REQUIRE_FALSE(ec);
    server.async_handshake(asio::ssl::stream_base::server, [&](boost::system::error_code hec) {
      out.server_ec = hec;
      out.server_done = true;
      if (!hec) {
        out.version = SSL_version(server.native_handle());
        out.alpn = tls::alpn(server.native_handle());
        out.describe = tls::describe(server.native_handle());
      } else {
        server.next_layer().close();
      }
    });
  });
  client.next_layer().async_connect(acceptor.local_endpoint(), [&](boost::system::error_code ec) {
    REQUIRE_FALSE(ec);
    client.async_handshake(asio::ssl::stream_base::client, [&](boost::system::error_code hec) {
      out.client_ec = hec;
      out.client_done = true;
      if (hec) client.next_layer().close();
    });
  });
  io.run_for(std::chrono::seconds(10));
  REQUIRE(out.server_done);
  REQUIRE(out.client_done);
  return out;
}

tls::ContextPtr server_ctx(const TempDir& t, const std::vector<std::string>& alpn = tls::kAlpnSmtp) {
  REQUIRE(tls::ensure_self_signed(t.cert(), t.key(), "mx.example.test").ok());
  auto ctx = tls::make_server_context(t.cert(), t.key(), alpn);
  INFO((ctx ? std::string() : ctx.error().detail));
  REQUIRE(ctx.ok());
  return *ctx;
}

void offer_alpn(SSL* ssl, std::string_view proto) {
  std::string wire(1, static_cast<char>(proto.size()));
  wire += proto;
  REQUIRE(SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire.data()),
                              static_cast<unsigned>(wire.size())) == 0);
}

}  // namespace

TEST_CASE("self-signed certificate is made once, key mode 0600", "[tls]") {
  TempDir t;
  REQUIRE(tls::ensure_self_signed(t.cert(), t.key(), "mx.example.test").ok());
  REQUIRE(fs::exists(t.cert()));
  REQUIRE(fs::exists(t.key()));
  struct stat st {};
  REQUIRE(::stat(t.key().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(slurp(t.key()).find("-----BEGIN PRIVATE KEY-----") == 0);

  auto before = slurp(t.cert());
  REQUIRE(tls::ensure_self_signed(t.cert(), t.key(), "mx.example.test").ok());
  CHECK(slurp(t.cert()) == before);  // existing pair left alone
  for (auto& e : fs::directory_iterator(t.cert().parent_path()))
    CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
}

TEST_CASE("self-signed refuses half pairs and odd hostnames", "[tls]") {
  TempDir t;
  SECTION("key without cert") {
    REQUIRE(tls::ensure_self_signed(t.cert(), t.key(), "mx.example.test").ok());
    fs::remove(t.cert());
    auto st = tls::ensure_self_signed(t.cert(), t.key(), "mx.example.test");
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::Invalid);
    CHECK_FALSE(fs::exists(t.cert()));
  }
  SECTION("cert without key") {
    REQUIRE(tls::ensure_self_signed(t.cert(), t.key(), "mx.example.test").ok());
    fs::remove(t.key());
    CHECK(tls::ensure_self_signed(t.cert(), t.key(), "mx.example.test").error().code == Errc::Invalid);
  }
  SECTION("hostname that would inject SAN syntax") {
    CHECK_FALSE(tls::ensure_self_signed(t.cert(), t.key(), "a.test,DNS:evil.test").ok());
    CHECK_FALSE(tls::ensure_self_signed(t.cert(), t.key(), "").ok());
    CHECK_FALSE(fs::exists(t.key()));
  }
}

TEST_CASE("openssl x509 shows the SAN, v3, P-256, ten years", "[tls]") {
  TempDir t;
  REQUIRE(tls::ensure_self_signed(t.cert(), t.key(), "mx.example.test").ok());
  auto text = run("openssl x509 -in '" + t.cert().string() + "' -noout -text");
  CHECK(text.find("Version: 3") != std::string::npos);
  CHECK(text.find("Subject: CN = mx.example.test") != std::string::npos);
  CHECK(text.find("DNS:mx.example.test, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1") !=
        std::string::npos);
  CHECK(text.find("NIST CURVE: P-256") != std::string::npos);
  CHECK(text.find("CA:FALSE") != std::string::npos);
  CHECK(text.find("TLS Web Server Authentication") != std::string::npos);
  auto enddate = run("openssl x509 -in '" + t.cert().string() + "' -noout -checkend " +
                     std::to_string(9L * 365 * 86400));
  CHECK(enddate.find("will not expire") != std::string::npos);
  // The key belongs to the certificate.
  CHECK(run("openssl pkey -in '" + t.key().string() + "' -pubout") ==
        run("openssl x509 -in '" + t.cert().string() + "' -noout -pubkey"));
}

TEST_CASE("loopback handshake negotiates TLS 1.2 or later", "[tls]") {
  TempDir t;
  auto srv = server_ctx(t);
  auto cli = tls::make_client_context(false);
  auto o = handshake(*srv, *cli);
  INFO(o.server_ec.message() << " / " << o.client_ec.message());
  REQUIRE_FALSE(o.server_ec);
  REQUIRE_FALSE(o.client_ec);
  CHECK(o.version >= TLS1_2_VERSION);
  CHECK(o.alpn.empty());  // no ALPN offered: accepted, nothing selected
  CHECK(o.describe.find("TLSv1.3 with cipher TLS_") == 0);
}

TEST_CASE("TLS 1.2 only client gets a modern cipher", "[tls]") {
  TempDir t;
  auto srv = server_ctx(t);
  auto cli = tls::make_client_context(false);
  SSL_CTX_set_max_proto_version(cli->native_handle(), TLS1_2_VERSION);
  auto o = handshake(*srv, *cli);
  REQUIRE_FALSE(o.server_ec);
  CHECK(o.version == TLS1_2_VERSION);
  CHECK(o.describe.find("TLSv1.2 with cipher ECDHE-ECDSA-") == 0);
  CHECK((o.describe.find("GCM") != std::string::npos || o.describe.find("CHACHA20") != std::string::npos));
}

TEST_CASE("TLS 1.1 client is refused", "[tls]") {
  TempDir t;
  auto srv = server_ctx(t);
  asio::ssl::context old(asio::ssl::context::tls_client);
  // Let the client really send a 1.1 hello (OpenSSL 3 would refuse locally).
  SSL_CTX_set_security_level(old.native_handle(), 0);
  SSL_CTX_set_cipher_list(old.native_handle(), "DEFAULT@SECLEVEL=0");
  SSL_CTX_set_min_proto_version(old.native_handle(), TLS1_VERSION);
  SSL_CTX_set_max_proto_version(old.native_handle(), TLS1_1_VERSION);
  old.set_verify_mode(asio::ssl::verify_none);
  auto o = handshake(*srv, old);
  CHECK(o.client_ec);
  REQUIRE(o.server_ec);
  INFO(o.server_ec.message());
  CHECK(o.server_ec.message().find("unsupported protocol") != std::string::npos);
}

TEST_CASE("ALPN: wrong protocol refused, ours or none accepted (ALPACA)", "[tls]") {
  TempDir t;
  auto srv = server_ctx(t, tls::kAlpnSmtp);
  auto cli = tls::make_client_context(false);
  SECTION("http/1.1 only to an smtp listener") {
    auto o = handshake(*srv, *cli, [](SSL* s) { offer_alpn(s, "http/1.1"); });
    REQUIRE(o.server_ec);
    REQUIRE(o.client_ec);
    INFO(o.client_ec.message());
    CHECK(o.client_ec.message().find("no application protocol") != std::string::npos);
  }
  SECTION("smtp among others") {
    auto o = handshake(*srv, *cli, [](SSL* s) {
      const unsigned char wire[] = "\x08http/1.1\x04smtp";
      REQUIRE(SSL_set_alpn_protos(s, wire, sizeof wire - 1) == 0);
    });
    REQUIRE_FALSE(o.server_ec);
    CHECK(o.alpn == "smtp");
  }
  SECTION("imap listener refuses smtp") {
    TempDir t2;
    auto imap = server_ctx(t2, tls::kAlpnImap);
    auto o = handshake(*imap, *cli, [](SSL* s) { offer_alpn(s, "smtp"); });
    CHECK(o.server_ec);
  }
}

TEST_CASE("verifying client checks the certificate and the name", "[tls]") {
  TempDir t;
  auto srv = server_ctx(t);
  SECTION("unknown issuer fails") {
    auto cli = tls::make_client_context(true);
    auto o = handshake(*srv, *cli, [](SSL* s) { REQUIRE(tls::set_peer_name(s, "mx.example.test").ok()); });
    CHECK(o.client_ec);
  }
  SECTION("trusted certificate, right name") {
    auto cli = tls::make_client_context(true);
    cli->load_verify_file(t.cert().string());
    auto o = handshake(*srv, *cli, [](SSL* s) { REQUIRE(tls::set_peer_name(s, "mx.example.test").ok()); });
    INFO(o.client_ec.message());
    CHECK_FALSE(o.client_ec);
  }
  SECTION("trusted certificate, wrong name") {
    auto cli = tls::make_client_context(true);
    cli->load_verify_file(t.cert().string());
    auto o = handshake(*srv, *cli, [](SSL* s) { REQUIRE(tls::set_peer_name(s, "other.example.test").ok()); });
    CHECK(o.client_ec);
  }
}

TEST_CASE("server context errors and reload", "[tls]") {
  TempDir a, b;
  REQUIRE(tls::ensure_self_signed(a.cert(), a.key(), "a.example.test").ok());
  REQUIRE(tls::ensure_self_signed(b.cert(), b.key(), "b.example.test").ok());
  CHECK(tls::make_server_context(a.path / "missing.pem", a.key()).error().code == Errc::Invalid);
  auto mismatch = tls::make_server_context(a.cert(), b.key());
  REQUIRE_FALSE(mismatch.ok());
  CHECK(mismatch.error().code == Errc::Invalid);
  CHECK(tls::make_server_context(a.cert(), a.key(), {""}).error().code == Errc::Invalid);

  fs::path cert = a.path / "live-cert.pem", key = a.path / "live-key.pem";
  fs::copy_file(a.cert(), cert);
  fs::copy_file(a.key(), key);
  tls::ServerContext sc(cert, key, tls::kAlpnSmtp);
  CHECK(sc.current() == nullptr);
  REQUIRE(sc.reload().ok());
  auto first = sc.current();
  REQUIRE(first);

  // A broken file on SIGHUP keeps the old context serving.
  std::ofstream(key) << "not a key";
  CHECK_FALSE(sc.reload().ok());
  CHECK(sc.current() == first);

  // A good new pair is picked up; live sessions keep the old one alive.
  fs::copy_file(b.cert(), cert, fs::copy_options::overwrite_existing);
  fs::copy_file(b.key(), key, fs::copy_options::overwrite_existing);
  REQUIRE(sc.reload().ok());
  CHECK(sc.current() != first);
  auto cli = tls::make_client_context(false);
  auto o = handshake(*sc.current(), *cli);
  CHECK_FALSE(o.server_ec);
  o = handshake(*first, *cli);
  CHECK_FALSE(o.server_ec);
}

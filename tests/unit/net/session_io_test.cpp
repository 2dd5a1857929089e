// Unit tests for gateway/session_io: the byte stream under every session against a real
// TLS client (Asio's ssl::stream) over loopback TCP: implicit TLS (RFC 8314)
// and STARTTLS (RFC 2595), a write far larger than the socket buffers (the
// WANT_WRITE path), the deadline's cancel(), a peer that goes away, and a
// peer that does not speak TLS.
#include <catch2/catch.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "common/tls.hpp"
#include "gateway/session_io.hpp"
#include "tests/support/run.hpp"
#include "tests/support/temp_dir.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using namespace moat;

namespace {

using ClientStream = asio::ssl::stream<tcp::socket>;

struct Pair {
  std::unique_ptr<gateway::TcpIo> server;
  std::unique_ptr<ClientStream> client;
};

struct Fixture {
  test::TempDir dir;
  asio::io_context io;
  std::shared_ptr<asio::ssl::context> server_ctx;
  asio::ssl::context client_ctx{asio::ssl::context::tls_client};
  Fixture() {
    const auto cert = dir.path / "cert.pem", key = dir.path / "key.pem";
    REQUIRE(tls::ensure_self_signed(cert, key, "imap.example.test").ok());
    auto ctx = tls::make_server_context(cert, key, tls::kAlpnImap);
    REQUIRE(ctx);
    server_ctx = *ctx;
    client_ctx.set_verify_mode(asio::ssl::verify_none);
  }
};

// A connected loopback pair: the server end in a TcpIo, the client end
// plain TCP under a not yet started TLS client.
asio::awaitable<Pair> connect(Fixture* f) {
  auto ex = co_await asio::this_coro::executor;
  tcp::acceptor acc(ex, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  Pair p;
  p.client = std::make_unique<ClientStream>(tcp::socket(ex), f->client_ctx);
  co_await p.client->next_layer().async_connect(acc.local_endpoint(), asio::use_awaitable);
  tcp::socket s = co_await acc.async_accept(asio::use_awaitable);
  p.server = std::make_unique<gateway::TcpIo>(std::move(s), f->server_ctx);
  co_return p;
}

asio::awaitable<bool> client_handshake(ClientStream* c) {
  boost::system::error_code ec;
  co_await c->async_handshake(asio::ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
  co_return !ec;
}

asio::awaitable<bool> both_handshake(Pair* p) {
  auto [st, client_ok] = co_await (p->server->start_tls() && client_handshake(p->client.get()));
  co_return st.ok() && client_ok;
}

// Reads from the server side until `want` bytes have arrived.
asio::awaitable<std::string> server_read(gateway::TcpIo* io, std::size_t want) {
  std::string got;
  char buf[1000];
  while (got.size() < want) {
    auto r = co_await io->read_some(buf, sizeof buf);
    if (!r) break;
    got.append(buf, *r);
  }
  co_return got;
}

asio::awaitable<std::string> client_read(ClientStream* c, std::size_t want) {
  std::string got(want, '\0');
  boost::system::error_code ec;
  std::size_t n = co_await asio::async_read(*c, asio::buffer(got), asio::redirect_error(asio::use_awaitable, ec));
  got.resize(n);
  co_return got;
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = char('a' + (i * 7 + i / 251) % 26);
  return s;
}

struct TlsExchange {
  std::string version, to_server, to_client;
  bool handshake = false, active = false, write_ok = false;
};

asio::awaitable<TlsExchange> implicit_tls(Fixture* f) {
  TlsExchange out;
  Pair p = co_await connect(f);
  out.handshake = co_await both_handshake(&p);
  out.active = p.server->tls_active();
  out.version = p.server->tls_version();
  co_await asio::async_write(*p.client, asio::buffer(std::string("a001 NOOP\r\n")), asio::use_awaitable);
  out.to_server = co_await server_read(p.server.get(), 11);
  // 3 MiB: far more than the socket buffers hold, so SSL_write must wait
  // for the client to read (WANT_WRITE) and resume with the same arguments.
  const std::string big = pattern(3 << 20);
  auto [st, got] = co_await (p.server->write(big) && client_read(p.client.get(), big.size()));
  out.write_ok = st.ok();
  out.to_client = std::move(got);
  co_return out;
}

asio::awaitable<TlsExchange> starttls(Fixture* f) {
  TlsExchange out;
  Pair p = co_await connect(f);
  co_await asio::async_write(p.client->next_layer(), asio::buffer(std::string("a STARTTLS\r\n")),
                             asio::use_awaitable);
  std::string plain = co_await server_read(p.server.get(), 12);
  auto st = co_await p.server->write("a OK Begin TLS negotiation now\r\n");
  std::string reply(32, '\0');
  co_await asio::async_read(p.client->next_layer(), asio::buffer(reply), asio::use_awaitable);
  out.active = p.server->tls_active();  // not yet
  out.handshake = co_await both_handshake(&p);
  co_await asio::async_write(*p.client, asio::buffer(std::string("b LOGIN u p\r\n")), asio::use_awaitable);
  out.to_server = plain + co_await server_read(p.server.get(), 13);
  out.to_client = reply;
  out.write_ok = st.ok();
  out.version = p.server->tls_version();
  co_return out;
}

asio::awaitable<void> cancel_after(gateway::TcpIo* io, std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
  io->cancel();
}

asio::awaitable<Errc> read_error(gateway::TcpIo* io) {
  char buf[64];
  auto r = co_await io->read_some(buf, sizeof buf);
  co_return r ? Errc::TempFailure : r.error().code;  // TempFailure: "it read something"
}

// A TLS session is up and idle; the deadline fires.
asio::awaitable<Errc> cancelled_read(Fixture* f) {
  Pair p = co_await connect(f);
  bool ok = co_await both_handshake(&p);
  if (!ok) co_return Errc::Invalid;
  Errc e = co_await (read_error(p.server.get()) && cancel_after(p.server.get(), std::chrono::milliseconds(50)));
  co_return e;
}

// The client drops the TCP connection after the handshake.
asio::awaitable<Errc> peer_gone(Fixture* f) {
  Pair p = co_await connect(f);
  bool ok = co_await both_handshake(&p);
  if (!ok) co_return Errc::Invalid;
  p.client->next_layer().close();
  co_return co_await read_error(p.server.get());
}

// Plaintext where a ClientHello should be.
asio::awaitable<Result<bool>> not_tls(Fixture* f) {
  Pair p = co_await connect(f);
  co_await asio::async_write(p.client->next_layer(), asio::buffer(std::string("a001 LOGIN user pass\r\n")),
                             asio::use_awaitable);
  auto st = co_await p.server->start_tls();
  if (!st) co_return st.error();
  co_return p.server->tls_active();
}

}  // namespace

TEST_CASE("session_io: implicit TLS carries both directions byte for byte, a 3 MiB write included",
          "[net][session_io]") {
  Fixture f;
  auto r = test::run_on(f.io, [&f](asio::io_context&) { return implicit_tls(&f); }, 1);
  CHECK(r.handshake);
  CHECK(r.active);
  CHECK(r.version == "TLSv1.3");
  CHECK(r.to_server == "a001 NOOP\r\n");
  CHECK(r.write_ok);
  REQUIRE(r.to_client.size() == std::size_t(3 << 20));
  CHECK(r.to_client == pattern(3 << 20));
}

TEST_CASE("session_io: STARTTLS after a plaintext exchange", "[net][session_io]") {
  Fixture f;
  auto r = test::run_on(f.io, [&f](asio::io_context&) { return starttls(&f); }, 1);
  CHECK_FALSE(r.active);
  CHECK(r.handshake);
  CHECK(r.write_ok);
  CHECK(r.to_client == "a OK Begin TLS negotiation now\r\n");
  CHECK(r.to_server == "a STARTTLS\r\nb LOGIN u p\r\n");
  CHECK(r.version == "TLSv1.3");
}

TEST_CASE("session_io: cancel() ends an idle TLS read as a timeout", "[net][session_io]") {
  Fixture f;
  CHECK(test::run_on(f.io, [&f](asio::io_context&) { return cancelled_read(&f); }, 1) == Errc::Timeout);
}

TEST_CASE("session_io: a peer that drops the connection is an I/O error", "[net][session_io]") {
  Fixture f;
  CHECK(test::run_on(f.io, [&f](asio::io_context&) { return peer_gone(&f); }, 1) == Errc::IoError);
}

TEST_CASE("session_io: plaintext instead of a ClientHello fails the handshake", "[net][session_io]") {
  Fixture f;
  auto r = test::run_on(f.io, [&f](asio::io_context&) { return not_tls(&f); }, 1);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::IoError);
  CHECK(r.error().detail.find("TLS handshake failed") != std::string::npos);
}

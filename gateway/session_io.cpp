// See session_io.hpp. Every OpenSSL call runs on the session's strand; the
// socket is non-blocking, and WANT_READ / WANT_WRITE become an Asio wait on
// the descriptor, so cancel() (the session's deadline) ends any of them.
#include "gateway/session_io.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <openssl/err.h>

namespace moat::gateway {

namespace {

using tcp = asio::ip::tcp;

Errc map_error(const boost::system::error_code& ec) {
  return ec == asio::error::operation_aborted ? Errc::Timeout : Errc::IoError;
}

std::string ssl_error_text(const char* what, int err) {
  std::string s = std::string(what) + ": ";
  if (err == SSL_ERROR_ZERO_RETURN) return s + "peer closed the TLS session";
  if (err == SSL_ERROR_SYSCALL) return s + "connection lost";
  char buf[256];
  ERR_error_string_n(ERR_peek_last_error(), buf, sizeof buf);
  return s + buf;
}

}  // namespace

TcpIo::TcpIo(tcp::socket socket, std::shared_ptr<asio::ssl::context> tls)
    : socket_(std::move(socket)), tls_ctx_(std::move(tls)) {}

TcpIo::~TcpIo() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // the socket BIO does not own the descriptor
  close();
}

asio::awaitable<Status> TcpIo::wait_for(int err, const char* what) {
  boost::system::error_code ec;
  auto token = asio::redirect_error(asio::use_awaitable, ec);
  if (err == SSL_ERROR_WANT_READ)
    co_await socket_.async_wait(tcp::socket::wait_read, token);
  else if (err == SSL_ERROR_WANT_WRITE)
    co_await socket_.async_wait(tcp::socket::wait_write, token);
  else
    co_return Error{Errc::IoError, ssl_error_text(what, err)};
  if (ec) co_return Error{map_error(ec), ec.message()};
  co_return Status{};
}

asio::awaitable<Result<std::size_t>> TcpIo::read_some(char* buf, std::size_t n) {
  if (ssl_ == nullptr) {
    boost::system::error_code ec;
    std::size_t got = co_await socket_.async_read_some(asio::buffer(buf, n),
                                                       asio::redirect_error(asio::use_awaitable, ec));
    if (ec && got == 0) co_return Error{map_error(ec), ec.message()};
    co_return got;
  }
  for (;;) {
    ERR_clear_error();  // SSL_get_error reads this thread's queue
    std::size_t got = 0;
    const int r = SSL_read_ex(ssl_, buf, n, &got);
    if (r == 1) co_return got;
    Status st = co_await wait_for(SSL_get_error(ssl_, r), "TLS read");
    if (!st) co_return st.error();
  }
}

asio::awaitable<Status> TcpIo::write(std::string_view data) {
  if (ssl_ == nullptr) {
    boost::system::error_code ec;
    co_await asio::async_write(socket_, asio::buffer(data), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return Error{map_error(ec), ec.message()};
    co_return Status{};
  }
  // After WANT_WRITE, SSL_write must be called again with the same
  // arguments: off only moves on success.
  std::size_t off = 0;
  while (off < data.size()) {
    ERR_clear_error();
    std::size_t put = 0;
    const int r = SSL_write_ex(ssl_, data.data() + off, data.size() - off, &put);
    if (r == 1) {
      off += put;
      continue;
    }
    Status st = co_await wait_for(SSL_get_error(ssl_, r), "TLS write");
    if (!st) co_return st;
  }
  co_return Status{};
}

std::size_t TcpIo::available() {
  boost::system::error_code ec;
  std::size_t n = socket_.available(ec);
  if (ec) return 0;
  if (ssl_ != nullptr) n += std::size_t(SSL_pending(ssl_));
  return n;
}

asio::awaitable<Status> TcpIo::start_tls() {
  if (!tls_ctx_) co_return Error{Errc::NotImplemented, "TLS not configured"};
  if (ssl_ != nullptr) co_return Error{Errc::Invalid, "TLS already active"};
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);
  if (ec) co_return Error{Errc::IoError, ec.message()};
  SSL* ssl = SSL_new(tls_ctx_->native_handle());
  if (ssl == nullptr || SSL_set_fd(ssl, int(socket_.native_handle())) != 1) {
    if (ssl != nullptr) SSL_free(ssl);
    co_return Error{Errc::TempFailure, "TLS: cannot create a session"};
  }
  // Idle sessions keep no record buffers; ~34 KiB per connection otherwise.
  SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
  SSL_set_accept_state(ssl);
  for (;;) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl);
    if (r == 1) break;
    Status st = co_await wait_for(SSL_get_error(ssl, r), "TLS handshake failed");
    if (!st) {
      SSL_free(ssl);
      co_return Error{st.error().code == Errc::Timeout ? Errc::Timeout : Errc::IoError, st.error().detail};
    }
  }
  ssl_ = ssl;
  co_return Status{};
}

std::string TcpIo::tls_version() const { return ssl_ != nullptr ? SSL_get_version(ssl_) : ""; }

std::string TcpIo::tls_cipher() const { return ssl_ != nullptr ? SSL_get_cipher_name(ssl_) : ""; }

void TcpIo::cancel() {
  boost::system::error_code ec;
  socket_.cancel(ec);
}

void TcpIo::close() {
  boost::system::error_code ec;
  if (socket_.is_open()) {
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }
}

}  // namespace moat::gateway

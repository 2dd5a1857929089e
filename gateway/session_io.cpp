// See session_io.hpp.
#include "gateway/session_io.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace moat::gateway {

namespace {
Errc map_error(const boost::system::error_code& ec) {
  return ec == asio::error::operation_aborted ? Errc::Timeout : Errc::IoError;
}
}  // namespace

TcpIo::TcpIo(asio::ip::tcp::socket socket, std::shared_ptr<asio::ssl::context> tls)
    : socket_(std::move(socket)), tls_ctx_(std::move(tls)) {}

TcpIo::~TcpIo() { close(); }

asio::awaitable<Result<std::size_t>> TcpIo::read_some(char* buf, std::size_t n) {
  boost::system::error_code ec;
  auto token = asio::redirect_error(asio::use_awaitable, ec);
  std::size_t got = 0;
  // if/else, not ?: — g++ 12 mishandles co_await inside a conditional expression.
  if (tls_stream_)
    got = co_await tls_stream_->async_read_some(asio::buffer(buf, n), token);
  else
    got = co_await socket_.async_read_some(asio::buffer(buf, n), token);
  if (ec && got == 0) co_return Error{map_error(ec), ec.message()};
  co_return got;
}

asio::awaitable<Status> TcpIo::write(std::string_view data) {
  boost::system::error_code ec;
  auto token = asio::redirect_error(asio::use_awaitable, ec);
  if (tls_stream_)
    co_await asio::async_write(*tls_stream_, asio::buffer(data), token);
  else
    co_await asio::async_write(socket_, asio::buffer(data), token);
  if (ec) co_return Error{map_error(ec), ec.message()};
  co_return Status{};
}

std::size_t TcpIo::available() {
  boost::system::error_code ec;
  std::size_t n = socket_.available(ec);
  if (tls_stream_) n += std::size_t(SSL_pending(tls_stream_->native_handle()));
  return ec ? 0 : n;
}

asio::awaitable<Status> TcpIo::start_tls() {
  if (!tls_ctx_) co_return Error{Errc::NotImplemented, "TLS not configured"};
  tls_stream_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(socket_, *tls_ctx_);
  boost::system::error_code ec;
  co_await tls_stream_->async_handshake(asio::ssl::stream_base::server,
                                        asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    tls_stream_.reset();
    co_return Error{map_error(ec) == Errc::Timeout ? Errc::Timeout : Errc::IoError,
                    "TLS handshake failed: " + ec.message()};
  }
  co_return Status{};
}

std::string TcpIo::tls_version() const {
  return tls_stream_ ? SSL_get_version(tls_stream_->native_handle()) : "";
}

std::string TcpIo::tls_cipher() const {
  return tls_stream_ ? SSL_get_cipher_name(tls_stream_->native_handle()) : "";
}

void TcpIo::cancel() {
  boost::system::error_code ec;
  socket_.cancel(ec);
}

void TcpIo::close() {
  boost::system::error_code ec;
  if (socket_.is_open()) {
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }
}

}  // namespace moat::gateway

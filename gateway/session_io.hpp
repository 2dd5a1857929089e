// The byte stream under an SMTP session: plain TCP that can turn into TLS
// (STARTTLS) or starts as TLS (RFC 8314). Sessions talk to this interface so
// tests and the session fuzz target can drive a whole session in memory.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstddef>
#include <memory>
#include <openssl/ssl.h>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace moat::gateway {

namespace asio = boost::asio;

class SessionIo {
 public:
  virtual ~SessionIo() = default;
  // Reads at least one byte; Errc::Timeout when cancel() was called by the
  // deadline watchdog, Errc::IoError when the peer went away.
  virtual asio::awaitable<Result<std::size_t>> read_some(char* buf, std::size_t n) = 0;
  virtual asio::awaitable<Status> write(std::string_view data) = 0;
  // Bytes readable right now without waiting (pipelining checks).
  virtual std::size_t available() = 0;
  virtual bool tls_active() const = 0;
  virtual asio::awaitable<Status> start_tls() = 0;   // server-side handshake
  virtual std::string tls_version() const { return {}; }
  virtual std::string tls_cipher() const { return {}; }
  virtual void cancel() = 0;                         // abort pending I/O (deadline)
  virtual void close() = 0;
};

// TCP with optional server-side TLS (STARTTLS, or implicit as RFC 8314), for
// every listener. Mail clients keep hundreds of connections open and idle;
// Asio's ssl::stream holds four ~17 KiB buffers per connection for its whole
// life (its own two plus a BIO pair), which was most of what an idle
// logged-in IMAP connection cost (bench/imap). Here the SSL object talks to
// the file descriptor itself and, with SSL_MODE_RELEASE_BUFFERS, frees its
// record buffers whenever the connection is quiet.
class TcpIo final : public SessionIo {
 public:
  TcpIo(asio::ip::tcp::socket socket, std::shared_ptr<asio::ssl::context> tls);
  ~TcpIo() override;
  TcpIo(const TcpIo&) = delete;
  TcpIo& operator=(const TcpIo&) = delete;

  asio::awaitable<Result<std::size_t>> read_some(char* buf, std::size_t n) override;
  asio::awaitable<Status> write(std::string_view data) override;
  std::size_t available() override;
  bool tls_active() const override { return ssl_ != nullptr; }
  asio::awaitable<Status> start_tls() override;
  std::string tls_version() const override;
  std::string tls_cipher() const override;
  void cancel() override;
  void close() override;

 private:
  // Waits until the socket is ready for what OpenSSL asked for (err is
  // SSL_get_error's answer); an error for anything but WANT_READ/WANT_WRITE.
  asio::awaitable<Status> wait_for(int err, const char* what);

  asio::ip::tcp::socket socket_;
  std::shared_ptr<asio::ssl::context> tls_ctx_;
  SSL* ssl_ = nullptr;
};

}  // namespace moat::gateway

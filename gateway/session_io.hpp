// The byte stream under an SMTP session: plain TCP that can turn into TLS
// (STARTTLS) or starts as TLS (RFC 8314). Sessions talk to this interface so
// tests and the session fuzz target can drive a whole session in memory.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <cstddef>
#include <memory>
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

// TCP socket with optional server-side TLS.
class TcpIo final : public SessionIo {
 public:
  TcpIo(asio::ip::tcp::socket socket, std::shared_ptr<asio::ssl::context> tls);
  ~TcpIo() override;
  asio::awaitable<Result<std::size_t>> read_some(char* buf, std::size_t n) override;
  asio::awaitable<Status> write(std::string_view data) override;
  std::size_t available() override;
  bool tls_active() const override { return tls_stream_ != nullptr; }
  asio::awaitable<Status> start_tls() override;
  std::string tls_version() const override;
  std::string tls_cipher() const override;
  void cancel() override;
  void close() override;
  asio::ip::tcp::socket& socket() { return socket_; }

 private:
  asio::ip::tcp::socket socket_;
  std::shared_ptr<asio::ssl::context> tls_ctx_;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls_stream_;
};

}  // namespace moat::gateway

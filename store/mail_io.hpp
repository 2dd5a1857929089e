// The byte stream under an IMAP or POP3 session: TCP, optionally TLS
// (STARTTLS, RFC 2595, or implicit, RFC 8314), with OpenSSL reading and
// writing the socket itself. Mail clients keep hundreds of connections open
// and idle; Asio's ssl::stream holds four ~17 KiB buffers per connection for
// its whole life (its own two plus a BIO pair), which was most of what an
// idle logged-in IMAP connection cost (bench/imap). Here the SSL object
// talks to the file descriptor and, with SSL_MODE_RELEASE_BUFFERS, frees its
// record buffers whenever the connection is quiet.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <openssl/ssl.h>

#include "gateway/session_io.hpp"

namespace moat::store {

namespace asio = boost::asio;

class MailIo final : public gateway::SessionIo {
 public:
  MailIo(asio::ip::tcp::socket socket, std::shared_ptr<asio::ssl::context> tls);
  ~MailIo() override;
  MailIo(const MailIo&) = delete;
  MailIo& operator=(const MailIo&) = delete;

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

}  // namespace moat::store

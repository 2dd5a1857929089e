// TLS for every listener and the SMTP client: OpenSSL 3 contexts with TLS 1.2
// minimum (RFC 8996), no renegotiation or compression, ALPN checked against
// the listener's protocols (ALPACA, RFC 7301), a self-signed certificate made
// on first start, and short descriptions of live sessions for Received headers.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ssl/context.hpp>

#include "common/error.hpp"

namespace moat::tls {

namespace asio = boost::asio;
using ContextPtr = std::shared_ptr<asio::ssl::context>;

// If both files are missing: make an EC P-256 key and a self-signed X.509 v3
// certificate for hostname (CN and SAN DNS:hostname, DNS:localhost,
// IP:127.0.0.1, IP:::1; ten years; random serial). Key mode 0600; both files
// written atomically. If both exist: nothing to do. If only one exists: error
// (a half-made pair is never overwritten; the operator decides).
Status ensure_self_signed(const std::filesystem::path& cert, const std::filesystem::path& key,
                          std::string_view hostname);

// ALPN protocol ids a listener accepts (IANA registry names).
inline const std::vector<std::string> kAlpnSmtp{"smtp"};
inline const std::vector<std::string> kAlpnImap{"imap"};
inline const std::vector<std::string> kAlpnPop3{"pop3"};
inline const std::vector<std::string> kAlpnHttps{"http/1.1"};

// Server context from a PEM chain and key. A client that offers ALPN but none
// of `alpn` is refused with no_application_protocol (ALPACA: a TLS session
// meant for another protocol must not be served); a client offering no ALPN
// is accepted, as most MTAs send none. Errc::Invalid for unusable files.
Result<ContextPtr> make_server_context(const std::filesystem::path& cert, const std::filesystem::path& key,
                                       const std::vector<std::string>& alpn = kAlpnSmtp);

// TLS 1.2+ client context. verify_peer: system trust store and certificate
// verification on (then call set_peer_name per connection); off for
// opportunistic SMTP TLS, which RFC 7435 says must not fail over certificates.
ContextPtr make_client_context(bool verify_peer);

// Per connection, client side: SNI plus the name the certificate must match.
Status set_peer_name(SSL* ssl, std::string_view host);

// Holds the current server context; the server calls reload() on SIGHUP and
// each new connection takes current(). Connections keep the context they
// started with (shared_ptr), so a swap never disturbs a live session.
class ServerContext {
 public:
  ServerContext(std::filesystem::path cert, std::filesystem::path key, std::vector<std::string> alpn);
  Status reload();              // on failure the old context stays in use
  ContextPtr current() const;   // null until the first successful reload()
 private:
  std::filesystem::path cert_, key_;
  std::vector<std::string> alpn_;
  mutable std::mutex mu_;
  ContextPtr ctx_;
};

// Descriptions of a live session, for logs and Received headers (RFC 8314 §4.3).
std::string version(const SSL* ssl);   // "TLSv1.3"
std::string cipher(const SSL* ssl);    // "TLS_AES_256_GCM_SHA384"
int bits(const SSL* ssl);              // 256
std::string alpn(const SSL* ssl);      // negotiated protocol or ""
// Postfix style: "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
std::string describe(const SSL* ssl);

}  // namespace moat::tls

// See tls.hpp. OpenSSL objects are held in unique_ptr with their free
// functions; every OpenSSL failure becomes a Status carrying the error queue.
// Cipher choices follow Mozilla's "intermediate" profile minus DHE.
#include "common/tls.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <cerrno>
#include <system_error>

namespace moat::tls {
namespace {

namespace fs = std::filesystem;

// TLS 1.2 only; TLS 1.3 suites are OpenSSL's defaults (all AEAD).
constexpr const char* kServerCiphers12 =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
// Outbound we talk to whatever MTAs exist; refusing an old but sound cipher
// would push opportunistic TLS down to plaintext, which is worse.
constexpr const char* kClientCiphers12 = "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES:!DES:!PSK:!SRP:!CAMELLIA";
constexpr const char* kGroups = "X25519:P-256:P-384";
constexpr int kValidityDays = 3650;

template <auto Free>
struct Deleter {
  template <class T>
  void operator()(T* p) const { Free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;

// Drains OpenSSL's thread-local error queue into one line.
std::string ssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

Error fail(Errc code, std::string_view what) {
  return {code, std::string(what) + ": " + ssl_errors()};
}

Error sys_fail(std::string_view what, const fs::path& p) {
  return {Errc::IoError, std::string(what) + " " + p.string() + ": " + std::generic_category().message(errno)};
}

// DNS labels only: the name goes into the certificate and must not smuggle
// anything else in.
bool valid_hostname(std::string_view h) {
  if (h.empty() || h.size() > 253 || h.front() == '.' || h.front() == '-') return false;
  for (char c : h)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_')) return false;
  return true;
}

// Write temp + fsync + rename + fsync(dir): a crash leaves the old file or
// the new one, never a torn one.
Status write_atomic(const fs::path& path, std::string_view data, mode_t mode) {
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return sys_fail("create", tmp);
  bool ok = ::fchmod(fd, mode) == 0;  // the umask must not widen or narrow it
  for (std::size_t off = 0; ok && off < data.size();) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) off += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  auto st = ok ? Status{} : Status{sys_fail("write", tmp)};
  ::close(fd);
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) st = sys_fail("rename", path), ok = false;
  if (!ok) {
    ::unlink(tmp.c_str());
    return st;
  }
  fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return sys_fail("open", dir);
  int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) return sys_fail("fsync", dir);
  return {};
}

bool add_name(GENERAL_NAMES* names, int type, std::string_view value) {
  GENERAL_NAME* g = GENERAL_NAME_new();
  if (g == nullptr) return false;
  if (type == GEN_DNS) {
    ASN1_IA5STRING* s = ASN1_IA5STRING_new();
    if (s == nullptr || ASN1_STRING_set(s, value.data(), static_cast<int>(value.size())) != 1) {
      ASN1_IA5STRING_free(s);
      GENERAL_NAME_free(g);
      return false;
    }
    GENERAL_NAME_set0_value(g, GEN_DNS, s);
  } else {
    ASN1_OCTET_STRING* ip = a2i_IPADDRESS(std::string(value).c_str());
    if (ip == nullptr) {
      GENERAL_NAME_free(g);
      return false;
    }
    GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
  }
  if (sk_GENERAL_NAME_push(names, g) == 0) {
    GENERAL_NAME_free(g);
    return false;
  }
  return true;
}

// Built from GENERAL_NAMEs rather than a "DNS:..." config string so nothing
// in the hostname is ever parsed as extension syntax.
bool add_san(X509* x, std::string_view hostname) {
  NamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return false;
  bool ok = add_name(names.get(), GEN_DNS, hostname);
  if (hostname != "localhost") ok = ok && add_name(names.get(), GEN_DNS, "localhost");
  ok = ok && add_name(names.get(), GEN_IPADD, "127.0.0.1") && add_name(names.get(), GEN_IPADD, "::1");
  return ok && X509_add1_ext_i2d(x, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) == 1;
}

bool add_ext(X509* x, X509V3_CTX* ctx, int nid, const char* value) {
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  return ext && X509_add_ext(x, ext.get(), -1) == 1;
}

bool set_random_serial(X509* x) {
  unsigned char buf[16];
  if (RAND_bytes(buf, sizeof buf) != 1) return false;
  buf[0] = static_cast<unsigned char>((buf[0] & 0x7F) | 0x40);  // positive, full 16 bytes (RFC 5280 §4.1.2.2)
  BnPtr bn(BN_bin2bn(buf, sizeof buf, nullptr));
  return bn && BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x)) != nullptr;
}

Result<X509Ptr> make_cert(EVP_PKEY* key, std::string_view hostname) {
  X509Ptr x(X509_new());
  if (!x || X509_set_version(x.get(), X509_VERSION_3) != 1 || !set_random_serial(x.get()))
    return fail(Errc::TempFailure, "certificate");
  // An hour back so clients with a slightly slow clock accept it at once.
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_time_adj_ex(X509_getm_notAfter(x.get()), kValidityDays, 0, nullptr);
  X509_NAME* name = X509_get_subject_name(x.get());
  // CN is limited to 64 characters (RFC 5280 ub-common-name); the SAN is what
  // clients check anyway.
  std::string cn(hostname.size() <= 64 ? hostname : std::string_view("moat"));
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()),
                                 -1, -1, 0) != 1 ||
      X509_set_issuer_name(x.get(), name) != 1 || X509_set_pubkey(x.get(), key) != 1)
    return fail(Errc::TempFailure, "certificate subject");
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, x.get(), x.get(), nullptr, nullptr, 0);
  if (!add_ext(x.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
      !add_ext(x.get(), &ctx, NID_key_usage, "critical,digitalSignature") ||
      !add_ext(x.get(), &ctx, NID_ext_key_usage, "serverAuth") ||
      !add_ext(x.get(), &ctx, NID_subject_key_identifier, "hash") || !add_san(x.get(), hostname))
    return fail(Errc::TempFailure, "certificate extensions");
  if (X509_sign(x.get(), key, EVP_sha256()) <= 0) return fail(Errc::TempFailure, "certificate signature");
  return x;
}

template <class WriteFn>
Result<std::string> to_pem(WriteFn write) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1) return fail(Errc::TempFailure, "PEM encoding");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

// ALPN selection (RFC 7301 §3.2): our preference order, the first of ours the
// client also offers. No overlap is fatal: no_application_protocol alert.
struct ServerState {
  asio::ssl::context ctx{asio::ssl::context::tls_server};
  std::vector<std::string> alpn;
};

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                void* arg) {
  const auto* state = static_cast<const ServerState*>(arg);
  for (const auto& ours : state->alpn) {
    for (unsigned int i = 0; i < inlen;) {
      unsigned int len = in[i];
      if (len == 0 || i + 1 + len > inlen) break;  // malformed list: treat as no match
      if (len == ours.size() && ours.compare(0, len, reinterpret_cast<const char*>(in + i + 1), len) == 0) {
        *out = in + i + 1;
        *outlen = static_cast<unsigned char>(len);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + len;
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

void common_options(SSL_CTX* c) {
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  // Renegotiation: CVE-2009-3555 and CPU exhaustion; compression: CRIME.
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set1_groups_list(c, kGroups);
}

}  // namespace

Status ensure_self_signed(const fs::path& cert, const fs::path& key, std::string_view hostname) {
  std::error_code ec;
  bool have_cert = fs::exists(cert, ec), have_key = fs::exists(key, ec);
  if (have_cert && have_key) return {};
  if (have_cert != have_key)
    return {Errc::Invalid, "TLS: " + (have_cert ? cert : key).string() + " exists but " +
                               (have_cert ? key : cert).string() + " does not; restore it or remove both"};
  if (!valid_hostname(hostname)) return {Errc::Invalid, "TLS: hostname is not a DNS name: " + std::string(hostname)};
  for (const auto& p : {cert, key})
    if (p.has_parent_path() && (fs::create_directories(p.parent_path(), ec), ec))
      return {Errc::IoError, "create " + p.parent_path().string() + ": " + ec.message()};

  PkeyPtr pkey(EVP_EC_gen("P-256"));
  if (!pkey) return fail(Errc::TempFailure, "EC P-256 key");
  auto x = make_cert(pkey.get(), hostname);
  if (!x) return x.error();
  auto key_pem = to_pem([&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, pkey.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  auto cert_pem = to_pem([&](BIO* b) { return PEM_write_bio_X509(b, x->get()); });
  if (!key_pem) return key_pem.error();
  if (!cert_pem) return cert_pem.error();
  // Key first: a crash between the two leaves "key without cert", which the
  // next start reports instead of silently making a mismatched pair.
  if (auto st = write_atomic(key, *key_pem, 0600); !st) return st;
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  return write_atomic(cert, *cert_pem, 0644);
}

Result<ContextPtr> make_server_context(const fs::path& cert, const fs::path& key,
                                       const std::vector<std::string>& alpn) {
  for (const auto& p : alpn)
    if (p.empty() || p.size() > 255) return {Errc::Invalid, "TLS: bad ALPN protocol id"};
  ERR_clear_error();
  try {
    auto state = std::make_shared<ServerState>();
    state->alpn = alpn;
    SSL_CTX* c = state->ctx.native_handle();
    common_options(c);
    SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    // No resumption at all: mail sessions are long and few per client, and
    // without tickets there is no ticket key to rotate or leak.
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(c, 0);
    if (SSL_CTX_set_cipher_list(c, kServerCiphers12) != 1) return fail(Errc::Invalid, "TLS cipher list");
    boost::system::error_code ec;
    state->ctx.use_certificate_chain_file(cert.string(), ec);
    if (ec) return {Errc::Invalid, "TLS: certificate " + cert.string() + ": " + ec.message()};
    state->ctx.use_private_key_file(key.string(), asio::ssl::context::pem, ec);
    if (ec) return {Errc::Invalid, "TLS: key " + key.string() + ": " + ec.message()};
    if (SSL_CTX_check_private_key(c) != 1)
      return fail(Errc::Invalid, "TLS: key " + key.string() + " does not match " + cert.string());
    if (!state->alpn.empty()) SSL_CTX_set_alpn_select_cb(c, select_alpn, state.get());
    // Aliasing: the caller sees a context; the callback state lives as long.
    return ContextPtr(state, &state->ctx);
  } catch (const boost::system::system_error& e) {
    return {Errc::TempFailure, std::string("TLS context: ") + e.what()};
  }
}

ContextPtr make_client_context(bool verify_peer) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX* c = ctx->native_handle();
  common_options(c);
  SSL_CTX_set_cipher_list(c, kClientCiphers12);
  boost::system::error_code ec;
  if (verify_peer) {
    ctx->set_default_verify_paths(ec);  // a missing store makes every verify fail: closed
    ctx->set_verify_mode(asio::ssl::verify_peer, ec);
  } else {
    ctx->set_verify_mode(asio::ssl::verify_none, ec);
  }
  return ctx;
}

Status set_peer_name(SSL* ssl, std::string_view host) {
  std::string h(host);
  if (SSL_set_tlsext_host_name(ssl, h.c_str()) != 1 || SSL_set1_host(ssl, h.c_str()) != 1)
    return fail(Errc::Invalid, "TLS peer name");
  return {};
}

ServerContext::ServerContext(fs::path cert, fs::path key, std::vector<std::string> alpn)
    : cert_(std::move(cert)), key_(std::move(key)), alpn_(std::move(alpn)) {}

Status ServerContext::reload() {
  auto ctx = make_server_context(cert_, key_, alpn_);
  if (!ctx) return ctx.error();
  std::lock_guard lk(mu_);
  ctx_ = std::move(*ctx);
  return {};
}

ContextPtr ServerContext::current() const {
  std::lock_guard lk(mu_);
  return ctx_;
}

std::string version(const SSL* ssl) { return SSL_get_version(ssl); }

std::string cipher(const SSL* ssl) {
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl);
  return c != nullptr ? SSL_CIPHER_get_name(c) : "";
}

int bits(const SSL* ssl) {
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl);
  return c != nullptr ? SSL_CIPHER_get_bits(c, nullptr) : 0;
}

std::string alpn(const SSL* ssl) {
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl, &p, &n);
  return p != nullptr ? std::string(reinterpret_cast<const char*>(p), n) : std::string();
}

std::string describe(const SSL* ssl) {
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl);
  int alg = 0, used = c != nullptr ? SSL_CIPHER_get_bits(c, &alg) : 0;
  return version(ssl) + " with cipher " + cipher(ssl) + " (" + std::to_string(used) + "/" + std::to_string(alg) +
         " bits)";
}

}  // namespace moat::tls

// See key.hpp (RFC 6376 §3.6.1, RFC 8463 §4, RFC 8301 §3.2).
#include "filters/dkim/key.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "common/base64.hpp"
#include "common/proto/taglist.hpp"

namespace moat::filters::dkim {
namespace {

using Pkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;

std::string bio_text(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return n > 0 ? std::string(data, std::size_t(n)) : std::string();
}

// Fills in everything a PrivateKey needs from a loaded EVP_PKEY.
Result<PrivateKey> describe(EVP_PKEY* key, unsigned min_bits) {
  PrivateKey out;
  const int id = EVP_PKEY_get_base_id(key);
  if (id == EVP_PKEY_RSA) {
    out.type = KeyType::Rsa;
    out.bits = unsigned(EVP_PKEY_get_bits(key));
    if (out.bits < min_bits)
      return Error{Errc::Invalid, "RSA key of " + std::to_string(out.bits) + " bits is under the minimum of " +
                                      std::to_string(min_bits) + " (RFC 8301)"};
    unsigned char* der = nullptr;
    int len = i2d_PUBKEY(key, &der);
    if (len <= 0) return Error{Errc::Invalid, "cannot encode the public key"};
    out.public_b64 = base64_encode(std::string_view(reinterpret_cast<char*>(der), std::size_t(len)));
    OPENSSL_free(der);
  } else if (id == EVP_PKEY_ED25519) {
    out.type = KeyType::Ed25519;
    out.bits = 256;
    unsigned char raw[32];
    std::size_t len = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != 32)
      return Error{Errc::Invalid, "cannot read the Ed25519 public key"};
    out.public_b64 = base64_encode(std::string_view(reinterpret_cast<char*>(raw), len));
  } else {
    return Error{Errc::Invalid, "not an RSA or Ed25519 key"};
  }
  Bio b(BIO_new(BIO_s_mem()), BIO_free);
  if (!b || PEM_write_bio_PrivateKey(b.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return Error{Errc::Invalid, "cannot write the private key as PEM"};
  out.pem = bio_text(b.get());
  return out;
}

}  // namespace

std::string_view key_type_name(KeyType t) { return t == KeyType::Rsa ? "rsa" : "ed25519"; }
std::string_view signing_algorithm(KeyType t) { return t == KeyType::Rsa ? "rsa-sha256" : "ed25519-sha256"; }

std::optional<KeyRecord> parse_key_record(std::string_view txt, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<KeyRecord> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  if (txt.size() > kMaxKeyRecord) return fail("key record too long");
  auto tags = proto::parse_tag_list(txt);
  if (!tags) return fail("malformed key record");
  KeyRecord r;
  if (auto v = tags->get("v")) {
    // §3.6.1: "if present, this tag MUST be the first one".
    if (tags->tags.front().first != "v" || *v != "DKIM1") return fail("bad key record version");
    r.v = std::string(*v);
  }
  if (auto k = tags->get("k")) r.k = std::string(*k);
  if (r.k != "rsa" && r.k != "ed25519") return fail("unknown key type k=" + r.k.substr(0, 16));
  r.h = proto::strip_fws(tags->get("h").value_or(""));
  r.s = proto::strip_fws(tags->get("s").value_or(""));
  r.t = proto::strip_fws(tags->get("t").value_or(""));
  auto p = tags->get("p");
  if (!p) return fail("key record without p=");
  r.p = proto::strip_fws(*p);
  if (!r.p.empty() && !base64_decode(r.p)) return fail("p= is not base64");
  return r;
}

std::string format_key_record(const KeyRecord& r) {
  std::string out = "v=DKIM1; k=" + r.k;
  if (!r.h.empty()) out += "; h=" + r.h;
  if (!r.s.empty()) out += "; s=" + r.s;
  if (!r.t.empty()) out += "; t=" + r.t;
  return out + "; p=" + r.p;
}

std::vector<std::string> split_txt(std::string_view data, std::size_t max) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < data.size(); i += max) out.emplace_back(data.substr(i, max));
  if (out.empty()) out.emplace_back();
  return out;
}

std::string zone_line(std::string_view selector, std::string_view domain, std::string_view record) {
  std::string out = std::string(selector) + "._domainkey." + std::string(domain) + ". IN TXT";
  // Key records hold no '"' or '\\' (base64 and tag syntax), so no escaping.
  for (const auto& part : split_txt(record)) out += " \"" + part + "\"";
  return out;
}

Result<PrivateKey> parse_private_key(std::string_view pem, unsigned min_bits) {
  Bio b(BIO_new_mem_buf(pem.data(), int(pem.size())), BIO_free);
  if (!b) return Error{Errc::Invalid, "out of memory"};
  Pkey key(PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (!key) return Error{Errc::Invalid, "not a PEM private key (or it is encrypted)"};
  return describe(key.get(), min_bits);
}

Result<PrivateKey> load_private_key(const std::filesystem::path& path, unsigned min_bits) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{Errc::IoError, path.string() + ": cannot open: " + std::strerror(errno)};
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Error{Errc::IoError, path.string() + ": read error"};
  auto key = parse_private_key(buf.str(), min_bits);
  if (!key) return Error{key.error().code, path.string() + ": " + key.error().detail};
  return key;
}

Result<PrivateKey> generate_key(KeyType type, unsigned bits) {
  Pkey key(type == KeyType::Rsa ? EVP_RSA_gen(bits) : EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"),
           EVP_PKEY_free);
  if (!key) return Error{Errc::Invalid, "key generation failed"};
  return describe(key.get(), 0);
}

}  // namespace moat::filters::dkim

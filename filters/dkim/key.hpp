// DKIM keys (RFC 6376 §3.6.1 key records, RFC 8463 §4 Ed25519, RFC 8301 key
// sizes): parsing and writing the TXT record, loading a signing key from a
// PEM file, and making new key pairs for `moatctl dkim keygen`. OpenSSL 3.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace moat::filters::dkim {

enum class KeyType { Rsa, Ed25519 };
std::string_view key_type_name(KeyType t);          // "rsa", "ed25519" (the k= values)
std::string_view signing_algorithm(KeyType t);      // "rsa-sha256", "ed25519-sha256"

// A key record's tags. p= empty means revoked (§3.6.1).
struct KeyRecord {
  std::string v;            // "DKIM1" or empty
  std::string k = "rsa";    // default k=rsa
  std::string h;            // acceptable hashes, colon-separated; empty: any
  std::string s;            // service types; empty: "*"
  std::string t;            // flags ("y", "s")
  std::string p;            // base64 public key, FWS removed
  bool revoked() const { return p.empty(); }
};

inline constexpr std::size_t kMaxKeyRecord = 8192;  // bytes of TXT data

// RFC 6376 §3.6.1: v= if present must be first and "DKIM1"; p= is required.
// nullopt with *error set when the record is not usable.
std::optional<KeyRecord> parse_key_record(std::string_view txt, std::string* error = nullptr);

// "v=DKIM1; k=ed25519; p=..." (only the tags that differ from defaults, plus v and k).
std::string format_key_record(const KeyRecord& r);

// Splits TXT data into character-strings of at most `max` bytes (RFC 1035 §3.3.14).
std::vector<std::string> split_txt(std::string_view data, std::size_t max = 255);

// The zone-file line to publish: `sel._domainkey.example.org. IN TXT "v=DKIM1; ..." "..."`.
std::string zone_line(std::string_view selector, std::string_view domain, std::string_view record);

// A private key ready for libopendkim: its PEM text and the public half as
// the p= value (RSA: SubjectPublicKeyInfo DER; Ed25519: the raw 32 bytes,
// RFC 8463 §4.2), both base64.
struct PrivateKey {
  KeyType type = KeyType::Rsa;
  unsigned bits = 0;
  std::string pem;
  std::string public_b64;
};

// Reads and checks a PEM private key (PKCS#8 or traditional RSA). RSA keys
// under min_bits are refused (RFC 8301 §3.2), as is anything not RSA/Ed25519.
Result<PrivateKey> load_private_key(const std::filesystem::path& path, unsigned min_bits = 1024);
Result<PrivateKey> parse_private_key(std::string_view pem, unsigned min_bits = 1024);

// A fresh key pair; RSA with `bits` (2048 by default, RFC 8301 §3.2).
Result<PrivateKey> generate_key(KeyType type, unsigned bits = 2048);

}  // namespace moat::filters::dkim

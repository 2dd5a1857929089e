// Password hashing and checking for moat's own user database: argon2id
// (RFC 9106) for every new hash, and verification of imported crypt(3)
// hashes ($2b$ bcrypt, $6$ SHA-512 crypt) so users can move over unchanged.
#pragma once

#include <string>
#include <string_view>

#include "common/error.hpp"

namespace moat::directory {

constexpr std::size_t kMaxNameBytes = 255;
constexpr std::size_t kMaxPasswordBytes = 1024;

// argon2id cost (OWASP's 2023 minimum): t=2 passes, m=19 MiB, p=1.
constexpr unsigned kArgonTime = 2;
constexpr unsigned kArgonMemoryKiB = 19 * 1024;
constexpr unsigned kArgonLanes = 1;

enum class Scheme { Argon2id, Bcrypt, ShaCrypt512, Unknown };

Scheme scheme_of(std::string_view encoded);
std::string_view scheme_name(Scheme s);  // "argon2id", "bcrypt", "sha512-crypt", "unknown"

// User names: full addresses or plain names, 1..255 bytes of well-formed
// UTF-8 without control characters or whitespace (they end up in SASL,
// IMAP LOGIN and log lines, where such bytes would confuse the parser).
Status validate_name(std::string_view name);
// 1..1024 bytes, no NUL (SASL PLAIN uses NUL as its separator).
Status validate_password(std::string_view password);

// A fresh argon2id encoded string ("$argon2id$v=19$m=...").
Result<std::string> hash_password(std::string_view password);

// Checks password against an encoded hash of any supported scheme; false for
// a mismatch, an unknown scheme or a malformed hash.
bool verify_password(std::string_view encoded, std::string_view password);

// Burns the same time as checking a real argon2id hash; used for unknown users
// so the time to answer does not reveal whether a name exists.
void verify_dummy(std::string_view password);
std::string_view dummy_hash();

// Equal length and equal bytes, in time that depends only on the lengths.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace moat::directory

// See password.hpp. argon2 via libargon2 (RFC 9106), crypt(3) hashes via
// libxcrypt's crypt_r, salts from OpenSSL's CSPRNG.
#include "directory/password.hpp"

#include <argon2.h>
#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <memory>

namespace moat::directory {
namespace {

constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kTagBytes = 32;

// Made once with the parameters above from a password nobody uses; a test
// keeps its parameters in step with kArgon*.
constexpr std::string_view kDummy =
    "$argon2id$v=19$m=19456,t=2,p=1$CzBVep/E6Q4zWH2ix+wRNg$BGTCo19TjK2wJF77Hg/POPh+DM/cBGl2/MkWoLxJEfw";

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Length of the UTF-8 sequence starting at s[i] if well-formed (no overlongs,
// no surrogates, nothing above U+10FFFF), else 0.
std::size_t utf8_len(std::string_view s, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  std::size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  if (n == 3 && c == 0xE0 && b(i + 1) < 0xA0) return 0;   // overlong
  if (n == 3 && c == 0xED && b(i + 1) >= 0xA0) return 0;  // UTF-16 surrogate
  if (n == 4 && c == 0xF0 && b(i + 1) < 0x90) return 0;   // overlong
  if (n == 4 && c == 0xF4 && b(i + 1) >= 0x90) return 0;  // > U+10FFFF
  return n;
}

bool verify_argon2(std::string_view encoded, std::string_view password) {
  std::string enc(encoded);  // libargon2 wants a NUL-terminated string
  return argon2id_verify(enc.c_str(), password.data(), password.size()) == ARGON2_OK;
}

bool verify_crypt(std::string_view encoded, std::string_view password) {
  // struct crypt_data is ~32 KiB: keep it off the coroutine/thread stack.
  auto data = std::make_unique<crypt_data>();
  std::string enc(encoded), pw(password);
  const char* out = crypt_r(pw.c_str(), enc.c_str(), data.get());
  // libxcrypt returns a string starting with '*' on failure, never a hash.
  bool ok = out != nullptr && out[0] != '*' && constant_time_equal(out, encoded);
  OPENSSL_cleanse(data.get(), sizeof(crypt_data));
  OPENSSL_cleanse(pw.data(), pw.size());
  return ok;
}

}  // namespace

Scheme scheme_of(std::string_view e) {
  if (starts_with(e, "$argon2id$")) return Scheme::Argon2id;
  if (starts_with(e, "$2b$") || starts_with(e, "$2y$") || starts_with(e, "$2a$")) return Scheme::Bcrypt;
  if (starts_with(e, "$6$")) return Scheme::ShaCrypt512;
  return Scheme::Unknown;
}

std::string_view scheme_name(Scheme s) {
  switch (s) {
    case Scheme::Argon2id: return "argon2id";
    case Scheme::Bcrypt: return "bcrypt";
    case Scheme::ShaCrypt512: return "sha512-crypt";
    default: return "unknown";
  }
}

Status validate_name(std::string_view name) {
  if (name.empty()) return {Errc::Invalid, "user name is empty"};
  if (name.size() > kMaxNameBytes) return {Errc::Invalid, "user name longer than 255 bytes"};
  for (std::size_t i = 0; i < name.size();) {
    std::size_t n = utf8_len(name, i);
    if (n == 0) return {Errc::Invalid, "user name is not valid UTF-8"};
    auto c = static_cast<unsigned char>(name[i]);
    bool c1 = n == 2 && c == 0xC2 && static_cast<unsigned char>(name[i + 1]) < 0xA0;  // U+0080..U+009F
    if (c <= 0x20 || c == 0x7F || c1)
      return {Errc::Invalid, "user name contains a control character or whitespace"};
    i += n;
  }
  return {};
}

Status validate_password(std::string_view pw) {
  if (pw.empty()) return {Errc::Invalid, "password is empty"};
  if (pw.size() > kMaxPasswordBytes) return {Errc::Invalid, "password longer than 1024 bytes"};
  if (pw.find('\0') != std::string_view::npos) return {Errc::Invalid, "password contains NUL"};
  return {};
}

Result<std::string> hash_password(std::string_view password) {
  if (auto st = validate_password(password); !st) return st.error();
  unsigned char salt[kSaltBytes];
  if (RAND_bytes(salt, sizeof salt) != 1) return {Errc::TempFailure, "RAND_bytes failed"};
  std::size_t len = argon2_encodedlen(kArgonTime, kArgonMemoryKiB, kArgonLanes, kSaltBytes, kTagBytes,
                                      Argon2_id);
  std::string out(len, '\0');
  int rc = argon2id_hash_encoded(kArgonTime, kArgonMemoryKiB, kArgonLanes, password.data(), password.size(),
                                 salt, sizeof salt, kTagBytes, out.data(), out.size());
  if (rc != ARGON2_OK) return {Errc::TempFailure, std::string("argon2: ") + argon2_error_message(rc)};
  out.resize(out.find('\0'));
  return out;
}

bool verify_password(std::string_view encoded, std::string_view password) {
  if (!validate_password(password)) return false;
  switch (scheme_of(encoded)) {
    case Scheme::Argon2id: return verify_argon2(encoded, password);
    case Scheme::Bcrypt:
    case Scheme::ShaCrypt512: return verify_crypt(encoded, password);
    default: return false;
  }
}

void verify_dummy(std::string_view password) {
  std::string_view pw = password.empty() || password.size() > kMaxPasswordBytes ? "x" : password;
  (void)verify_argon2(kDummy, pw);
}

std::string_view dummy_hash() { return kDummy; }

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace moat::directory

// The one adapter around OpenDKIM's libopendkim (RFC 6376, RFC 8463): a
// library handle made once per filter build, verification of a message's
// signatures against key records looked up beforehand through moat's
// resolver, and signing. Everything here blocks (RSA, hashing the body):
// call it from the blocking pool, never from an I/O thread. The only file
// that includes <opendkim/dkim.h>.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "filters/dkim/key.hpp"
#include "filters/dkim/signature.hpp"

struct dkim_lib;

namespace moat::filters::dkim {

struct LibOptions {
  unsigned min_key_bits = 1024;            // RSA keys below are a permerror (RFC 8301 §3.2)
  bool allow_sha1 = false;                 // else rsa-sha1 is a permerror (RFC 8301 §3.1)
  std::vector<std::string> sign_headers;   // signed and over-signed (one more than present)
  std::uint64_t fixed_time = 0;            // tests: the clock for t= and x=; 0 is now
};

// What the key lookup found for "selector._domainkey.domain" (lower case).
enum class KeyStatus { Found, NotFound, TempFail };
struct KeyAnswer {
  KeyStatus status = KeyStatus::NotFound;
  std::string record;                      // the TXT data when Found
};
using KeyAnswers = std::map<std::string, KeyAnswer, std::less<>>;
std::string key_name(std::string_view selector, std::string_view domain);

// RFC 8601 §2.7.1 result for one signature: pass, fail, temperror, permerror.
struct Outcome {
  std::string result;
  std::string reason;
};

class OpenDkim {
 public:
  static Result<std::unique_ptr<OpenDkim>> create(const LibOptions& options);
  ~OpenDkim();
  OpenDkim(const OpenDkim&) = delete;
  OpenDkim& operator=(const OpenDkim&) = delete;

  // One outcome per entry of `sigs` (find_signatures() of the same header),
  // in the same order. `header` is the header section (CRLF lines), `body`
  // what follows the blank line. Keys are only read from `keys`.
  std::vector<Outcome> verify(std::string_view header, std::string_view body, const std::vector<Signature>& sigs,
                              const KeyAnswers& keys) const;

  // The complete "DKIM-Signature: ...\r\n" field for the message, relaxed/relaxed.
  Result<std::string> sign(std::string_view header, std::string_view body, const PrivateKey& key,
                           std::string_view domain, std::string_view selector) const;

 private:
  explicit OpenDkim(const LibOptions& options) : options_(options) {}
  LibOptions options_;
  dkim_lib* lib_ = nullptr;
};

}  // namespace moat::filters::dkim

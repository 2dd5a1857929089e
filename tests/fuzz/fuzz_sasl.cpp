// Fuzz target: base64 (strict, with an encode round trip), SASL PLAIN and
// LOGIN decoding (RFC 4616, RFC 4954) and xtext (RFC 3461).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/base64.hpp"
#include "common/proto/sasl.hpp"
#include "common/proto/xtext.hpp"

using namespace moat;
using namespace moat::proto;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto d = base64_decode(in); d && base64_encode(*d) != in) std::abort();  // one encoding per value
  if (auto d = base64_decode(base64_encode(in)); !d || *d != in) std::abort();
  if (auto c = sasl::decode_plain(in)) {
    if (c->authcid.empty() || c->password.empty() || c->authcid.size() > sasl::kMaxField ||
        c->password.size() > sasl::kMaxField || c->authzid.size() > sasl::kMaxField)
      std::abort();
  }
  (void)sasl::decode_login(in);
  (void)sasl::parse_auth(in);
  if (auto x = smtp::xtext_decode(in); x && smtp::xtext_encode(*x).size() < x->size()) std::abort();
  if (auto x = smtp::xtext_decode(smtp::xtext_encode(in)); !x || *x != in) std::abort();
  return 0;
}

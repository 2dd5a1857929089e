// A fast confirmation of DKIM passes (RFC 6376 §6.1, rsa-sha256 only) in
// front of libopendkim, which stays the verifier for everything else.
//
// Why: a profile of bench/auth (callgrind-free, `perf record` of moatd, see
// bench/README.md) put 10% of moatd's CPU with all sender checks on into
// libopendkim's dkim_sig_process() → d2i_PUBKEY_bio(): OpenSSL 3 decodes the
// key record's SubjectPublicKeyInfo afresh for every message, and that
// decode costs several times the RSA-2048 verification itself (RSA_verify
// was 1.7%). libopendkim has no way to be handed a decoded key, so the
// key's decoding can only be cached outside it.
//
// What: the signatures of the commonest, simplest shape — a=rsa-sha256, no
// l=, x=, z= or q= other than dns/txt, From signed, a plain key record
// (k=rsa, no t= flags, h= and s= allowing sha256 and email) — are verified
// here with a cached EVP_PKEY per key record. This only ever says "pass":
// when anything is unusual, or the hash or signature does not verify, the
// message goes to libopendkim and its verdict (and reason) is the answer.
// tests/unit/dkim/vectors_test.cpp checks every vector against libopendkim
// (a pass here is a pass there).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "filters/dkim/opendkim.hpp"
#include "filters/dkim/signature.hpp"

struct evp_pkey_st;

namespace moat::filters::dkim {

class FastPass {
 public:
  explicit FastPass(unsigned min_key_bits) : min_key_bits_(min_key_bits) {}

  // True when every signature of `sigs` (find_signatures() of `header`)
  // verifies here; false sends the message to libopendkim. `now` is the
  // verifier's clock (seconds since the epoch) for t=.
  bool all_pass(std::string_view header, std::string_view body, const std::vector<Signature>& sigs,
                const KeyAnswers& keys, std::uint64_t now);

  static constexpr std::size_t kMaxKeys = 1000;  // decoded keys kept (by record text)

 private:
  bool passes(const Field& sig_field, const std::vector<Field>& fields, std::string_view body,
              const KeyAnswers& keys, std::uint64_t now);
  std::shared_ptr<evp_pkey_st> key_for(const std::string& record);

  unsigned min_key_bits_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<evp_pkey_st>> keys_;
};

}  // namespace moat::filters::dkim

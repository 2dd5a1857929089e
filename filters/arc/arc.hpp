// ARC, Authenticated Received Chain (RFC 8617): verifies the chain of
// ARC-Seal / ARC-Message-Signature / ARC-Authentication-Results sets a
// message carries (cv=none|pass|fail) and, when [arc] is configured, adds
// our own set (a gateway in front of an internal server is a forwarder).
// DKIM-style signatures (RFC 6376 §3.4 canonicalization, §3.7 hashing),
// rsa-sha256 and ed25519-sha256 (RFC 8463), with OpenSSL 3; keys are
// DKIM key records fetched through the daemon's resolver.
#pragma once

#include <openssl/evp.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.hpp"
#include "filters/filter.hpp"
#include "filters/services.hpp"

namespace moat::dns {
class Resolver;
}

namespace moat::filters::arc {

inline constexpr unsigned kMaxInstances = 50;  // RFC 8617 §4.2.1

enum class Cv { None, Pass, Fail };
std::string_view cv_name(Cv cv);

// RFC 6376 §3.4 canonicalization.
std::string canon_header_relaxed(std::string_view field);  // "name:value\r\n"
std::string canon_body(std::string_view body, bool relaxed);
// The field with the value of its b= tag removed (RFC 6376 §3.7).
std::string without_b(std::string_view field);

// DKIM key record (RFC 6376 §3.6.1) to a public key; nullptr when unusable.
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
Pkey parse_key_record(std::string_view txt, std::string_view algorithm);

struct Verification {
  Cv cv = Cv::None;
  unsigned instances = 0;          // highest instance found (0: no ARC)
  std::string reason;              // why it failed
  std::string ams_domain;          // d= of the newest AMS, for A-R
  int oldest_pass = -1;            // not computed (-1)
};

// Key TXT record per "selector._domainkey.domain"; nullopt: none / lookup failed.
using Keys = std::function<std::optional<std::string>(const std::string& name)>;

// The key names the chain of `message` needs (newest AMS, every AS).
std::vector<std::string> key_names(std::string_view message);

// RFC 8617 §5.2 chain validation of a whole message (CRLF lines).
Verification verify(std::string_view message, const Keys& keys);

// Our ARC set. `results` is the AAR payload after "i=N; ": the authserv-id,
// ";", then the results (e.g. "mx.example; spf=pass ...; dkim=pass ...").
struct SealRequest {
  std::string domain, selector;
  EVP_PKEY* key = nullptr;
  long long timestamp = 0;
  std::vector<std::string> headers;  // h= for the AMS, lower case; absent ones are left out
  std::string results;
  Cv chain = Cv::None;               // the verified cv of the incoming chain
  unsigned instance = 1;             // the incoming chain's highest instance + 1
};
struct Seal {
  std::string aar, ams, as;          // values only, no field name, no CRLF
  std::string fields() const;        // the three fields, AS first, each ending in CRLF
};
std::optional<Seal> seal(std::string_view message, const SealRequest& req);

// The default AMS h= list (RFC 8617 §4.1.2 leaves it to the sealer;
// RFC 6376 §5.4.1's recommendations).
const std::vector<std::string>& default_sign_headers();

class ArcFilter final : public Filter {
 public:
  static Result<std::unique_ptr<Filter>> make(const config::Config& cfg, const Services& services);
  std::string_view name() const override { return "arc"; }
  PhaseMask phases() const override { return mask(Phase::EndOfData); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

 private:
  ArcFilter(const config::Config& cfg, const Services& services, Pkey key);
  dns::Resolver& resolver_;
  boost::asio::thread_pool& blocking_;
  config::Arc settings_;
  std::string authserv_id_;
  Pkey key_;  // null: verify only
};

}  // namespace moat::filters::arc

// Fuzz target: DKIM-Signature fields (RFC 6376 §3.5) in a header section,
// through moat's field splitting and tag extraction (for Authentication-
// Results, RFC 8601) and through libopendkim's own signature parser via the
// adapter (no keys: every lookup fails, so no crypto, no network). Oracles:
// limits hold, one outcome per signature with an RFC 8601 result, the
// Authentication-Results field written from them is one well-formed field.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "filters/authres/authres.hpp"
#include "filters/dkim/dkim.hpp"
#include "filters/dkim/opendkim.hpp"
#include "filters/dkim/signature.hpp"

using namespace moat::filters;
using namespace moat::filters::dkim;

namespace {

const OpenDkim& lib() {
  static auto l = [] {
    LibOptions o;
    o.sign_headers = kDefaultSignHeaders;
    auto r = OpenDkim::create(o);
    if (!r) std::abort();
    return std::move(*r);
  }();
  return *l;
}

bool known_result(std::string_view r) { return r == "pass" || r == "fail" || r == "permerror" || r == "temperror"; }

// Every CRLF inside the field is folding (followed by WSP); it ends in CRLF.
bool one_field(std::string_view f) {
  if (!f.ends_with("\r\n")) return false;
  for (std::size_t i = 0; i + 2 < f.size(); ++i) {
    if (f[i] == '\n' && (i == 0 || f[i - 1] != '\r')) return false;
    if (f[i] == '\r' && (f[i + 1] != '\n' || (f[i + 2] != ' ' && f[i + 2] != '\t'))) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto split = in.find("\r\n\r\n");
  std::string_view header = in.substr(0, split == std::string_view::npos ? in.size() : split + 2);
  std::string_view body = split == std::string_view::npos ? std::string_view() : in.substr(split + 4);

  if (split_fields(header).size() > kMaxFields) std::abort();
  bool more = false;
  auto sigs = find_signatures(header, 4, &more);
  if (sigs.size() > 4) std::abort();
  std::vector<AuthResult> results;
  auto outcomes = lib().verify(header, body, sigs, KeyAnswers{});
  if (outcomes.size() != sigs.size()) std::abort();
  for (std::size_t i = 0; i < sigs.size(); ++i) {
    const auto& s = sigs[i];
    if (s.valid && (s.d.empty() || s.s.empty() || s.b.empty())) std::abort();
    if (s.header_b().size() > 8 || s.d.size() > 255 || s.s.size() > 255) std::abort();
    if (!known_result(outcomes[i].result)) std::abort();
    if (outcomes[i].result == "pass") std::abort();  // nothing can pass without a key
    results.push_back(auth_result(s, outcomes[i].result, outcomes[i].reason));
  }
  if (!one_field(authentication_results("mx.example.net", results))) std::abort();
  return 0;
}

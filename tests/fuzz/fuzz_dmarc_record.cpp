// Fuzz target: DMARC policy records (RFC 7489 §6.3, RFC 9091 np=).
// Oracles: bounded URI lists, pct in 0..100, and an Ok record's p= written
// back as a minimal record parses to the same policy.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "filters/dmarc/record.hpp"

using namespace moat::filters::dmarc;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = parse_record(in);
  if (r.status != RecordStatus::Ok) return 0;
  if (r.record.pct > 100 || r.record.rua.size() > kMaxUris || r.record.ruf.size() > kMaxUris) std::abort();
  auto again = parse_record("v=DMARC1; p=" + std::string(policy_name(r.record.p)));
  if (again.status != RecordStatus::Ok || again.record.p != r.record.p) std::abort();
  // The Organizational Domain of whatever the record names must not crash.
  for (const auto& u : r.record.rua) (void)org_domain(u.substr(u.find('@') == std::string::npos ? 0 : u.find('@') + 1));
  return 0;
}

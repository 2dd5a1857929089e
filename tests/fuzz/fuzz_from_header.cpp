// Fuzz target: the DMARC author-domain parser (RFC 5322 From, see
// filters/dmarc/from_header.hpp). Oracles: the limits hold, an Ok result
// has exactly one lower-case LDH domain, and re-parsing "From: a@<domain>"
// gives the same domain back.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "filters/dmarc/from_header.hpp"

using namespace moat::filters::dmarc;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  From f = parse_from(in);
  if (f.domains.size() > kMaxMailboxes) std::abort();
  for (const auto& d : f.domains)
    for (char c : d)
      if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' ||
            c == '.'))
        std::abort();
  if (f.status == FromStatus::Ok) {
    if (f.domains.size() != 1) std::abort();
    From again = parse_from("From: a@" + f.domain() + "\r\n");
    if (again.status != FromStatus::Ok || again.domain() != f.domain()) std::abort();
  }
  (void)parse_from_value(in);
  return 0;
}

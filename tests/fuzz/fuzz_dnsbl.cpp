// Fuzz target: DNSBL/RHSBL query names (RFC 5782) built from client-supplied
// HELO names and MAIL FROM domains, and answer matching. Oracles: a domain
// query is lower case, at most 253 characters, ends in ".zone" and starts with
// the (lower-cased, dot-stripped) name; IP queries have 4 or 32 labels before
// the zone; matching never lists an answer outside the configured ranges.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "filters/dnsbl/dnsbl.hpp"

using namespace moat;
using namespace moat::filters::dnsbl;

namespace {

std::size_t labels(std::string_view s) {
  std::size_t n = 1;
  for (char c : s) n += c == '.';
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view zone = "dbl.example.com";
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto q = domain_query(in, zone)) {
    if (q->size() > 253 || !q->ends_with(".dbl.example.com")) std::abort();
    for (char c : *q)
      if (std::isupper(static_cast<unsigned char>(c))) std::abort();
    std::string name(in);
    if (!name.empty() && name.back() == '.') name.pop_back();
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!q->starts_with(name + ".")) std::abort();
  }
  // The first 16 bytes as an address, the rest as answers.
  if (size >= 16) {
    IpAddr ip;
    std::memcpy(ip.b.data(), data, 16);
    ip.v4 = (data[0] & 1) != 0;
    auto q = ip_query(ip, "bl.example.com");
    if (labels(q) != (ip.v4 ? 4u : 32u) + 3) std::abort();
    std::vector<IpAddr> answers;
    for (std::size_t i = 16; i + 4 <= size && answers.size() < 16; i += 4) {
      IpAddr a;
      a.v4 = true;
      a.b[10] = a.b[11] = 0xff;
      std::memcpy(a.b.data() + 12, data + i, 4);
      answers.push_back(a);
    }
    config::DnsblZone z;
    z.zone = "bl.example.com";
    auto m = match(answers, z);
    if (m.outcome == Outcome::Listed && (m.answer.b[12] != 127 || (m.answer.b[13] == 255 && m.answer.b[14] == 255)))
      std::abort();
    z.answers = {{*parse_ip("127.0.0.2"), *parse_ip("127.0.0.11")}};
    m = match(answers, z);
    if (m.outcome == Outcome::Listed &&
        (m.answer.b[12] != 127 || m.answer.b[13] != 0 || m.answer.b[14] != 0 || m.answer.b[15] < 2 || m.answer.b[15] > 11))
      std::abort();
  }
  return 0;
}

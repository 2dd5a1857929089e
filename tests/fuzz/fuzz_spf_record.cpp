// Fuzz target: SPF records with macros (RFC 7208 §4.6, §7, §12) through our
// wrapper: the input is the record of every domain asked (check_host's own,
// includes, redirects) and the exp= text, so record selection, our ABNF
// checks and macro expansion, libspf2's compiler and evaluator and our DNS
// layer's limits all see it. Oracles: a known result, at most 10 DNS terms
// and 3 void lookups counted, a bounded number of DNS questions, and the
// Received-SPF field staying one field.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "filters/spf/evaluate.hpp"
#include "filters/spf/record.hpp"
#include "filters/spf/spf.hpp"

using namespace moat;
namespace spf = moat::filters::spf;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  std::string record(reinterpret_cast<const char*>(data), size);
  if (record.rfind("v=spf1", 0) != 0) record = "v=spf1 " + record;

  spf::MacroValues v;
  v.sender = "user@fuzz.example";
  v.domain = "fuzz.example";
  v.ip = *parse_ip("192.0.2.1");
  v.helo = "helo.example";
  (void)spf::expand_macros(std::string_view(record).substr(7 < record.size() ? 7 : record.size()), v, true);
  auto n4 = spf::normalize(record, v, true);
  auto n6 = spf::normalize(record, v, false);
  if (n4.error.empty() == n4.record.empty() || n6.error.empty() == n6.record.empty()) std::abort();

  int questions = 0;
  spf::Lookup lookup = [&](const std::string& name, int type) {
    ++questions;
    spf::DnsReply r;
    r.status = spf::DnsReply::Status::Ok;
    if (type == 16) r.names = {record};
    else if (type == 15) r.names = {"mx1.fuzz.example", "mx2.fuzz.example"};
    else if (type == 12) r.names = {"ptr.fuzz.example"};
    else if (type == 1 && !name.empty() && name[0] == 'a') r.addrs = {*parse_ip("192.0.2.1")};
    else if (type == 1 || type == 28) r.status = spf::DnsReply::Status::NxDomain;
    return r;
  };
  for (const char* ip : {"192.0.2.1", "2001:db8::1"}) {
    spf::Query q{*parse_ip(ip), "user@fuzz.example", "helo.example", false, "mx.example"};
    questions = 0;
    spf::Outcome o = spf::evaluate(q, lookup);
    if (o.dns_terms > spf::kMaxDnsTerms || o.void_lookups > spf::kMaxVoidLookups + 1) std::abort();
    // Terms, their follow-ups (10 names each), exp and %{p}: far below this.
    if (questions > 400) std::abort();
    if (spf::result_name(o.result).empty()) std::abort();
    std::string h = spf::received_spf(o, q);
    if (h.find("\r\n") == std::string::npos || h.substr(0, h.size() - 2).find("\r\n\r\n") != std::string::npos) std::abort();
    for (std::size_t i = 0; i + 1 < h.size(); ++i)
      if (h[i] == '\n' && h[i + 1] != '\t') std::abort();  // every line after the first is a continuation
    (void)h.size();
  }
  return 0;
}

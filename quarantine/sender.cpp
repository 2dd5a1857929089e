// See sender.hpp.
#include "quarantine/sender.hpp"

#include "common/text.hpp"
#include "filters/dmarc/dmarc.hpp"
#include "filters/dmarc/from_header.hpp"

namespace moat::quarantine {
namespace {

// "user@example.com" or "example.com" -> "example.com".
std::string identity_domain(std::string_view id) {
  auto at = id.rfind('@');
  return lower(at == std::string_view::npos ? id : id.substr(at + 1));
}

}  // namespace

std::string authenticated_domain(const std::vector<filters::AuthResult>& auth, std::string_view header) {
  for (const auto& a : auth)
    if (a.method == "dmarc" && a.result == "pass" && !a.prop("header.from").empty())
      return lower(a.prop("header.from"));
  auto from = filters::dmarc::parse_from(header);
  if (from.status != filters::dmarc::FromStatus::Ok) return {};
  const std::string domain = from.domain();
  for (const auto& a : auth) {
    if (a.result != "pass") continue;
    std::string id;
    if (a.method == "dkim") id = identity_domain(a.prop("header.d"));
    else if (a.method == "spf") id = identity_domain(a.prop("smtp.mailfrom"));
    if (!id.empty() && filters::dmarc::aligned(id, domain, false)) return domain;
  }
  return {};
}

}  // namespace moat::quarantine

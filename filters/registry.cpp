// Filter factory (see registry.hpp). Adding a filter: its folder under
// filters/, its name in known.hpp, one line here.
#include "filters/registry.hpp"

#include "filters/dkim/dkim.hpp"
#include "filters/antivirus/antivirus.hpp"
#include "filters/arc/arc.hpp"
#include "filters/attachments/attachments.hpp"
#include "filters/bayes/bayes.hpp"
#include "filters/dmarc/dmarc.hpp"
#include "filters/dnsbl/dnsbl.hpp"
#include "filters/greylist/greylist.hpp"
#include "filters/helo/helo.hpp"
#include "filters/hops/hops.hpp"
#include "filters/known.hpp"
#include "filters/ratelimit/ratelimit.hpp"
#include "filters/size/size.hpp"
#include "filters/rules/rules_filter.hpp"
#include "filters/spf/spf.hpp"

namespace moat::filters {

std::vector<std::string_view> known_filters() { return {kKnownFilters.begin(), kKnownFilters.end()}; }

Result<std::unique_ptr<Filter>> make_filter(const config::Filter& settings, const config::Config& cfg,
                                            const Services& services) {
  const auto& n = settings.name;
  if (n == "helo") return std::unique_ptr<Filter>(std::make_unique<helo::HeloFilter>(cfg));
  if (n == "hops") return std::unique_ptr<Filter>(std::make_unique<hops::HopsFilter>(cfg));
  if (n == "size") return std::unique_ptr<Filter>(std::make_unique<size::SizeFilter>(cfg));
  if (n == "ratelimit") return std::unique_ptr<Filter>(std::make_unique<ratelimit::RateLimitFilter>(cfg, services.ratelimits));
  if (n == "dnsbl") {
    if (!services.resolver && !cfg.dnsbl.zones.empty()) return Error{Errc::Invalid, "dnsbl needs the DNS resolver"};
    return std::unique_ptr<Filter>(std::make_unique<dnsbl::DnsblFilter>(cfg, services.resolver, services.dnsbl_cache, settings.budget));
  }
  if (n == "greylist")
    return std::unique_ptr<Filter>(std::make_unique<greylist::GreylistFilter>(cfg, services.greylist, services.blocking));
  if (n == "dkim") {
    auto f = dkim::DkimFilter::create(cfg, services);
    if (!f) return f.error();
    return std::unique_ptr<Filter>(std::move(*f));
  }
  if (n == "arc") return arc::ArcFilter::make(cfg, services);
  if (n == "bayes") return std::unique_ptr<Filter>(std::make_unique<bayes::BayesFilter>(cfg, services));
  if (n == "dmarc") return dmarc::DmarcFilter::make(cfg, services);
  if (n == "rules") return rules::RulesFilter::make(cfg, services);
  if (n == "spf") return std::unique_ptr<Filter>(std::make_unique<spf::SpfFilter>(cfg, settings, services.resolver, services.blocking));
  if (n == "attachments")
    return std::unique_ptr<Filter>(std::make_unique<attachments::AttachmentsFilter>(cfg, services.blocking));
  if (n == "antivirus")
    return std::unique_ptr<Filter>(std::make_unique<antivirus::AntivirusFilter>(cfg, settings, services.blocking));
  return Error{Errc::Invalid, "unknown filter \"" + n + "\""};
}

}  // namespace moat::filters

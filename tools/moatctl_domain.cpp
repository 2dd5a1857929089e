// `moatctl domain`: local domains kept in the user database (directory/
// userdb), beside the [local] domains of the config file. moatd sees a
// change within a few seconds (gateway/queue/local.hpp kDomainTtl).
#include <cstdio>
#include <iostream>

#include "common/config.hpp"
#include "directory/userdb.hpp"
#include "tools/moatctl.hpp"

namespace moat::ctl {
namespace {

constexpr const char* kUsage =
    "usage: moatctl domain add DOMAIN\n"
    "       moatctl domain del DOMAIN\n"
    "       moatctl domain list            (database and config file)\n";

constexpr Complaint kSay{"domain", kUsage};

}  // namespace

int domain_cmd(const Context& ctx, const Args& args) {
  if (args.empty()) return kSay.usage();
  const std::string& verb = args[0];
  if (verb == "list" ? args.size() != 1 : args.size() != 2) return kSay.usage();
  if (verb != "list" && verb != "add" && verb != "del") return kSay.usage("unknown command: " + verb);
  auto cfg = config::load(ctx.config_file);
  if (!cfg) return kSay.failed(cfg.error());
  if (verb != "list" && !config::is_domain_name(args[1])) return kSay.usage("not a domain name: " + args[1]);
  if (verb == "add" && (*cfg)->relay_domain(args[1]))
    return kSay.failed({Errc::Invalid, args[1] + " is a relay domain in " + (*cfg)->source.string()});
  auto db = directory::UserDb::open((*cfg)->db_path());
  if (!db) return kSay.failed(db.error());
  if (verb == "add") {
    if (auto st = (*db)->add_domain(args[1]); !st) return kSay.failed(st.error());
    return 0;
  }
  if (verb == "del") {
    if (auto st = (*db)->remove_domain(args[1]); !st) return kSay.failed(st.error());
    return 0;
  }
  auto list = (*db)->domains();
  if (!list) return kSay.failed(list.error());
  for (const auto& d : (*cfg)->local.domains) std::printf("%s\tconfig\n", d.c_str());
  for (const auto& d : *list) std::printf("%s\tdatabase\n", d.c_str());
  return 0;
}

}  // namespace moat::ctl

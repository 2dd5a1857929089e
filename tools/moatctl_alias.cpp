// `moatctl alias`: aliases and catch-alls of local domains, in the user
// database (directory/userdb). "@example.org" is the domain's catch-all.
#include <cstdio>
#include <iostream>

#include "common/config.hpp"
#include "directory/userdb.hpp"
#include "tools/moatctl.hpp"

namespace moat::ctl {
namespace {

constexpr const char* kUsage =
    "usage: moatctl alias add ADDRESS TARGET   (ADDRESS @domain: catch-all)\n"
    "       moatctl alias del ADDRESS [TARGET]\n"
    "       moatctl alias list\n"
    "       moatctl alias resolve ADDRESS      (the users mail to ADDRESS reaches)\n";

constexpr Complaint kSay{"alias", kUsage};

}  // namespace

int alias_cmd(const Context& ctx, const Args& args) {
  if (args.empty()) return kSay.usage();
  const std::string& verb = args[0];
  bool ok_args = (verb == "list" && args.size() == 1) || (verb == "add" && args.size() == 3) ||
                 (verb == "del" && (args.size() == 2 || args.size() == 3)) || (verb == "resolve" && args.size() == 2);
  if (!ok_args) return kSay.usage();
  auto cfg = config::load(ctx.config_file);
  if (!cfg) return kSay.failed(cfg.error());
  auto db = directory::UserDb::open((*cfg)->db_path());
  if (!db) return kSay.failed(db.error());
  if (verb == "add") {
    if (auto st = (*db)->add_alias(args[1], args[2]); !st) return kSay.failed(st.error());
    return 0;
  }
  if (verb == "del") {
    if (auto st = (*db)->remove_alias(args[1], args.size() == 3 ? args[2] : std::string()); !st)
      return kSay.failed(st.error());
    return 0;
  }
  if (verb == "resolve") {
    auto users = (*db)->resolve(args[1]);
    if (!users) return kSay.failed(users.error());
    if (users->empty()) {
      std::cerr << "moatctl alias: " << args[1] << ": unknown recipient\n";
      return 1;
    }
    for (const auto& u : *users) std::printf("%s\n", u.name.c_str());
    return 0;
  }
  auto list = (*db)->aliases();
  if (!list) return kSay.failed(list.error());
  for (const auto& a : *list) std::printf("%s\t%s\n", a.address.c_str(), a.target.c_str());
  return 0;
}

}  // namespace moat::ctl

// moatctl config check [FILE] | config show [FILE]: validate a configuration
// the way moatd will load it, or print the effective values as TOML.
#include <cstdio>

#include "common/config.hpp"
#include "tools/moatctl.hpp"

namespace moat::ctl {

int config_cmd(const Context& ctx, const Args& args) {
  if (args.empty() || args.size() > 2 || (args[0] != "check" && args[0] != "show")) {
    std::fprintf(stderr, "usage: moatctl config check|show [FILE]\n");
    return 2;
  }
  const std::filesystem::path file = args.size() == 2 ? std::filesystem::path(args[1]) : ctx.config_file;
  auto cfg = config::load(file);
  if (!cfg) {
    // Already "FILE:LINE: message", one per line: what editors and CI jump to.
    std::fprintf(stderr, "%s\n", cfg.error().detail.c_str());
    return 1;
  }
  if (args[0] == "show") {
    std::fputs(config::to_toml(**cfg).c_str(), stdout);
  } else {
    std::printf("OK: %s\n", file.string().c_str());
  }
  return 0;
}

}  // namespace moat::ctl

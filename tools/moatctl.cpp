// moatctl: the admin CLI, in the manner of postqueue/postsuper/doveadm.
//   moatctl [--config FILE] config check [FILE]
//   moatctl [--config FILE] user add|passwd|del|list
//   moatctl [--config FILE] queue list|show|flush|delete|hold|release
//   moatctl [--config FILE] reload|metrics
//   moatctl [--config FILE] dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--dir DIR]
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "tools/moatctl.hpp"

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: moatctl [--config FILE] COMMAND ...\n"
               "  config check [FILE]          validate a configuration file\n"
               "  user add|passwd|del NAME     manage SMTP AUTH users (password on stdin)\n"
               "  user list [--json]\n"
               "  queue list [--json]          show the mail queue\n"
               "  queue show ID [--json]\n"
               "  queue flush                  retry deferred mail now\n"
               "  queue delete|hold|release ID\n"
               "  reload                       re-read the configuration (like SIGHUP)\n"
               "  metrics                      print counters in Prometheus text format\n"
               "  dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--dir DIR]\n"
               "                               make a DKIM key, print its DNS TXT record\n");
}

std::filesystem::path default_config() {
  for (const char* p : {"moat.toml", "etc/moat.toml"})
    if (std::filesystem::exists(p)) return p;
  return "etc/moat.toml";
}

}  // namespace

int main(int argc, char** argv) {
  moat::ctl::Context ctx{default_config()};
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; ++i) {
    if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      ctx.config_file = argv[++i];
    } else {
      usage();
      return std::strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
  }
  if (i >= argc) {
    usage();
    return 2;
  }
  std::string cmd = argv[i++];
  moat::ctl::Args args(argv + i, argv + argc);
  if (cmd == "config") return moat::ctl::config_cmd(ctx, args);
  if (cmd == "user") return moat::ctl::user_cmd(ctx, args);
  if (cmd == "queue") return moat::ctl::queue_cmd(ctx, args);
  if (cmd == "dkim") return moat::ctl::dkim_cmd(ctx, args);
  if (cmd == "reload" || cmd == "metrics") return moat::ctl::control_cmd(ctx, cmd, args);
  usage();
  return 2;
}

// moatctl: the admin CLI, in the manner of postqueue/postsuper/doveadm.
//   moatctl [--config FILE] config check [FILE]
//   moatctl [--config FILE] user add|passwd|del|list|quota
//   moatctl [--config FILE] domain|alias|mailbox ...
//   moatctl [--config FILE] queue list|show|flush|delete|hold|release
//   moatctl [--config FILE] reload|metrics
//   moatctl [--config FILE] dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--dir DIR]
//   moatctl [--config FILE] rules check|scan|import-sa|bench (tools/moatctl_rules.cpp)
//   moatctl [--config FILE] quarantine list|show|release|delete|learn|expire|allow|block|unlist|lists
//   moatctl [--config FILE] learn|unlearn|bayes ... (tools/moatctl_learn.cpp)
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "tools/moatctl.hpp"

namespace moat::ctl {

int Complaint::usage(std::string_view why) const {
  if (!why.empty()) std::cerr << "moatctl " << name << ": " << why << "\n";
  std::cerr << usage_text;
  return 2;
}

int Complaint::failed(const Error& e) const {
  std::cerr << "moatctl " << name << ": " << e.detail << "\n";
  return 1;
}

}  // namespace moat::ctl

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: moatctl [--config FILE] COMMAND ...\n"
               "  config check [FILE]          validate a configuration file\n"
               "  user add|passwd|del NAME     manage SMTP AUTH users (password on stdin)\n"
               "  user list [--json]\n"
               "  user quota NAME SIZE         set a user's mailbox quota (500M, 2G; 0: none)\n"
               "  domain add|del|list [DOMAIN] local domains (mail kept in the mailbox store)\n"
               "  alias add|del|list|resolve   aliases and catch-alls (@domain)\n"
               "  mailbox list|messages|fetch|append|expunge|create|purge|compact|usage\n"
               "                               users' mailboxes in the store\n"
               "  queue list [--json]          show the mail queue\n"
               "  queue show ID [--json]\n"
               "  queue flush                  retry deferred mail now\n"
               "  queue delete|hold|release ID\n"
               "  reload                       re-read the configuration (like SIGHUP)\n"
               "  metrics                      print counters in Prometheus text format\n"
               "  quarantine list|show|release|delete|learn|expire|allow|block|unlist|lists\n"
               "                               held and rejected messages, sender lists\n"
               "  rules check|scan|import-sa|bench  rule sets: compile, try, convert SpamAssassin rules, measure\n"
               "  dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--dir DIR]\n"
               "                               make a DKIM key, print its DNS TXT record\n"
               "  learn --spam|--ham [--user U] PATH...   train Bayes (files, folders, mbox)\n"
               "  unlearn [--user U] PATH...   take messages back out of Bayes\n"
               "  bayes stats [--json]         learned counts per user\n"
               "  bayes classify [--pipeline] PATH...   Bayes probability (or full score) per message\n"
               "  bayes compact                delete token rows unlearning left at zero\n");
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
  if (cmd == "rules") return moat::ctl::rules_cmd(ctx, args);
  if (cmd == "domain") return moat::ctl::domain_cmd(ctx, args);
  if (cmd == "alias") return moat::ctl::alias_cmd(ctx, args);
  if (cmd == "mailbox") return moat::ctl::mailbox_cmd(ctx, args);
  if (cmd == "quarantine") return moat::ctl::quarantine_cmd(ctx, args);
  if (cmd == "learn" || cmd == "unlearn" || cmd == "bayes") return moat::ctl::learn_cmd(ctx, cmd, args);
  if (cmd == "reload" || cmd == "metrics") return moat::ctl::control_cmd(ctx, cmd, args);
  usage();
  return 2;
}

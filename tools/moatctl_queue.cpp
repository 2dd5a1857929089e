// moatctl queue list|show|flush|delete|hold|release: asks moatd over its
// control socket; when moatd is down, list and show read the spool directly
// (read-only, like `postqueue -p` without a running master) and the others fail.

#include <cstdio>
#include <string>

#include "common/config.hpp"
#include "gateway/queue/admin.hpp"
#include "gateway/queue/queue_file.hpp"
#include "tools/moatctl.hpp"

namespace moat::ctl {
namespace {

int usage() {
  std::fprintf(stderr, "usage: moatctl queue list [--json] | show ID [--json] | flush | delete ID | hold ID | release ID\n");
  return 2;
}

int offline(const std::filesystem::path& spool, const std::string& sub, const Args& rest, bool json) {
  if (sub == "list") {
    auto l = gateway::admin::scan_spool(spool);
    if (!l) {
      std::fprintf(stderr, "moatctl: %s\n", l.error().detail.c_str());
      return 1;
    }
    std::fputs(gateway::admin::format_list(*l, json).c_str(), stdout);
    return 0;
  }
  auto m = gateway::admin::load_message(spool, rest[1]);
  if (!m) {
    std::fprintf(stderr, "moatctl: %s\n", m.error().detail.c_str());
    return 1;
  }
  std::fputs(gateway::admin::format_show(*m, json).c_str(), stdout);
  return 0;
}

}  // namespace

int queue_cmd(const Context& ctx, const Args& args) {
  bool json = false;
  Args rest;
  for (const auto& a : args) {
    if (a == "--json") json = true;
    else rest.push_back(a);
  }
  if (rest.empty()) return usage();
  const std::string& sub = rest[0];
  bool needs_id = sub == "show" || sub == "delete" || sub == "hold" || sub == "release";
  if (!needs_id && sub != "list" && sub != "flush") return usage();
  if (needs_id != (rest.size() == 2) || (!needs_id && rest.size() != 1)) return usage();
  if (needs_id && !gateway::qf::valid_queue_id(rest[1])) {
    std::fprintf(stderr, "moatctl: invalid queue id %s\n", rest[1].c_str());
    return 1;
  }
  auto cfg = config::load(ctx.config_file);
  if (!cfg) {
    std::fprintf(stderr, "moatctl: %s\n", cfg.error().detail.c_str());
    return 1;
  }
  const auto& sock = (*cfg)->server.control_socket;
  std::string line = "queue " + sub + (needs_id ? " " + rest[1] : "") + (json ? " --json" : "");
  std::string reply;
  if (ask(sock, line, reply)) return print_reply(reply);
  if (sub == "list" || sub == "show") return offline((*cfg)->spool_dir(), sub, rest, json);
  std::fprintf(stderr, "moatctl: moatd is not running (no answer on %s); 'queue %s' needs the daemon\n",
               sock.c_str(), sub.c_str());
  return 1;
}

}  // namespace moat::ctl

// moatctl queue list|show|flush|delete|hold|release: asks moatd over its
// control socket; when moatd is down, list and show read the spool directly
// (read-only, like `postqueue -p` without a running master) and the others fail.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
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

// Sends one line, returns everything moatd answers; nullopt-like empty
// result with `down` set when nothing listens on the socket.
bool ask(const std::filesystem::path& sock_path, const std::string& line, std::string& reply, bool& down) {
  down = false;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (sock_path.native().size() >= sizeof sa.sun_path) {
    ::close(fd);
    return false;
  }
  std::memcpy(sa.sun_path, sock_path.c_str(), sock_path.native().size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    down = errno == ENOENT || errno == ECONNREFUSED;
    ::close(fd);
    return false;
  }
  timeval tv{60, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string req = line + "\n";
  if (::write(fd, req.data(), req.size()) != ssize_t(req.size())) {
    ::close(fd);
    return false;
  }
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, std::size_t(n));
  }
  ::close(fd);
  return true;
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
  auto sock = (*cfg)->server.control_socket;
  if (sock.empty()) sock = (*cfg)->server.data_dir / "run" / "moatd.sock";
  std::string line = "queue " + sub + (needs_id ? " " + rest[1] : "") + (json ? " --json" : "");
  std::string reply;
  bool down = false;
  if (ask(sock, line, reply, down)) {
    bool failed = reply.rfind("ERROR: ", 0) == 0;
    std::fputs(failed ? reply.c_str() + 7 : reply.c_str(), failed ? stderr : stdout);
    return failed ? 1 : 0;
  }
  if (sub == "list" || sub == "show") return offline((*cfg)->spool_dir(), sub, rest, json);
  std::fprintf(stderr, "moatctl: moatd is not running (no answer on %s); 'queue %s' needs the daemon\n",
               sock.c_str(), sub.c_str());
  return 1;
}

}  // namespace moat::ctl

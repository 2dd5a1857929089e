// moatctl reload | metrics, and the control-socket client that these and the
// queue commands share: one request line to moatd, its whole answer back.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/config.hpp"
#include "tools/moatctl.hpp"

namespace moat::ctl {

bool ask(const std::filesystem::path& sock_path, const std::string& line, std::string& reply) {
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

int print_reply(const std::string& reply) {
  bool failed = reply.rfind("ERROR: ", 0) == 0;
  std::fputs(failed ? reply.c_str() + 7 : reply.c_str(), failed ? stderr : stdout);
  return failed ? 1 : 0;
}

int control_cmd(const Context& ctx, const std::string& word, const Args& args) {
  if (!args.empty()) {
    std::fprintf(stderr, "usage: moatctl %s\n", word.c_str());
    return 2;
  }
  auto cfg = config::load(ctx.config_file);
  if (!cfg) {
    std::fprintf(stderr, "moatctl: %s\n", cfg.error().detail.c_str());
    return 1;
  }
  std::string reply;
  if (ask((*cfg)->server.control_socket, word, reply)) return print_reply(reply);
  std::fprintf(stderr, "moatctl: moatd is not running (no answer on %s)\n", (*cfg)->server.control_socket.c_str());
  return 1;
}

}  // namespace moat::ctl

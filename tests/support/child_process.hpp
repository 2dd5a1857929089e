// Test helpers for running real peer programs (unbound, smtp-sink, ...) from
// C++ tests: a RAII child process killed by its PID, a free loopback port
// finder, a wait-for-port helper and a temporary directory. Header-only so
// tests/CMakeLists.txt needs no edit; POSIX only.
#pragma once

#include <fcntl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.hpp"

namespace moat::test {

// A free TCP (and, by luck of the kernel's allocator, usually UDP) port on
// 127.0.0.1: bind port 0 and read it back. Racy in principle; good enough.
inline std::uint16_t free_port(int type = SOCK_STREAM) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    int fd = ::socket(AF_INET, type, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    std::uint16_t port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0)
      port = ntohs(sa.sin_port);
    ::close(fd);
    if (port == 0) continue;
    // unbound needs the port free for both UDP and TCP.
    int other = ::socket(AF_INET, type == SOCK_STREAM ? SOCK_DGRAM : SOCK_STREAM, 0);
    sa.sin_port = htons(port);
    bool ok = ::bind(other, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    ::close(other);
    if (ok) return port;
  }
  return 0;
}

// True once something accepts TCP connections on 127.0.0.1:port.
inline bool wait_for_port(std::uint16_t port, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    ::close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

inline void write_file(const std::filesystem::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << data;
}

// fork/exec of argv[0] (a full path) with stdout/stderr sent to `log`; the
// destructor sends SIGTERM to that PID only, then SIGKILL after a grace time.
class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> argv, const std::filesystem::path& log = "/dev/null") {
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    // Everything that may allocate happens before fork: the test process has
    // threads, and a child that mallocs before exec can deadlock on a lock
    // another thread held at fork time.
    int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);  // our own group: a terminal ^C to the test does not race us
      if (log_fd >= 0) {
        ::dup2(log_fd, 1);  // dup2 clears O_CLOEXEC on the copies
        ::dup2(log_fd, 2);
      }
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    if (log_fd >= 0) ::close(log_fd);
  }
  ~ChildProcess() { stop(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace moat::test

// Real peers for tests: unbound serving a generated test zone on 127.0.0.1,
// and Postfix's smtp-sink capturing messages. Each starts on a free port and
// is stopped by PID when the fixture goes out of scope.
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/child_process.hpp"

namespace moat::test {

// unbound with local-zone/local-data only: it answers for the zones given and
// refuses recursion elsewhere (nothing leaves the machine).
class UnboundServer {
 public:
  // zones: "example.test." style names made `static`; records: local-data
  // lines such as "example.test. MX 10 mx.example.test.".
  UnboundServer(const std::vector<std::string>& zones, const std::vector<std::string>& records,
                const std::vector<std::string>& extra_conf = {}) {
    port_ = free_port(SOCK_DGRAM);
    std::string conf =
        "server:\n"
        "  interface: 127.0.0.1\n"
        "  port: " + std::to_string(port_) + "\n"
        "  do-ip6: no\n"
        "  do-daemonize: no\n"
        "  chroot: \"\"\n"
        "  username: \"\"\n"
        "  directory: \"" + dir_.path.string() + "\"\n"
        "  pidfile: \"" + (dir_.path / "unbound.pid").string() + "\"\n"
        "  use-syslog: no\n"
        "  logfile: \"\"\n"
        "  verbosity: 0\n"
        "  access-control: 127.0.0.0/8 allow\n"
        "  num-threads: 1\n"
        "  auto-trust-anchor-file: \"\"\n";
    for (const auto& z : zones) conf += "  local-zone: \"" + z + "\" static\n";
    // TXT data carries double quotes; unbound then wants single quotes.
    for (const auto& r : records) {
      const char* q = r.find('"') == std::string::npos ? "\"" : "'";
      conf += "  local-data: " + (q + r + q) + "\n";
    }
    for (const auto& e : extra_conf) conf += "  " + e + "\n";
    conf += "remote-control:\n  control-enable: no\n";
    write_file(dir_.path / "unbound.conf", conf);
    proc_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/usr/sbin/unbound", "-d", "-c", (dir_.path / "unbound.conf").string()},
        dir_.path / "unbound.log");
    // unbound listens on TCP too; its TCP port being up means UDP is up.
    ready_ = wait_for_port(port_);
  }
  bool ready() const { return ready_; }
  std::uint16_t port() const { return port_; }
  std::string log() const { return read_file(dir_.path / "unbound.log"); }

 private:
  TempDir dir_;
  std::uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> proc_;
  bool ready_ = false;
};

// /usr/sbin/smtp-sink on 127.0.0.1:<free port>, each message dumped to its
// own file under dir()/m/ (-d). extra: more options, e.g. {"-f", "RCPT"}.
class SmtpSink {
 public:
  explicit SmtpSink(std::vector<std::string> extra = {}) {
    port_ = free_port();
    std::filesystem::create_directories(dir_.path / "m");
    std::vector<std::string> argv{"/usr/sbin/smtp-sink", "-u", "root", "-c"};
    argv.push_back("-d");
    argv.push_back((dir_.path / "m").string() + "/%H%M%S.");
    for (auto& e : extra) argv.push_back(std::move(e));
    argv.push_back("127.0.0.1:" + std::to_string(port_));
    argv.push_back("64");
    proc_ = std::make_unique<ChildProcess>(argv, dir_.path / "sink.log");
    ready_ = wait_for_port(port_);
  }
  bool ready() const { return ready_; }
  std::uint16_t port() const { return port_; }
  // Captured transactions, oldest first (names carry a time and random hex,
  // so order by modification time).
  std::vector<std::string> messages() const {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path / "m"))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
      return std::filesystem::last_write_time(a) < std::filesystem::last_write_time(b);
    });
    std::vector<std::string> out;
    for (const auto& f : files) out.push_back(read_file(f));
    return out;
  }
  // Waits until n messages were captured (the file is closed after ".").
  bool wait_messages(std::size_t n, std::chrono::milliseconds limit = std::chrono::seconds(5)) const {
    auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      if (messages().size() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

 private:
  TempDir dir_;
  std::uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> proc_;
  bool ready_ = false;
};

}  // namespace moat::test

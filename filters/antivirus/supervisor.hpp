// Starts moat-scand and keeps it running (ARCHITECTURE.md "Processes"):
// a thread that forks and execs the scanner, waits for it, and starts it
// again when it dies, with a growing pause (200 ms to 5 s) if it keeps dying
// at once. The child gets SIGKILL when moatd dies (PR_SET_PDEATHSIG), so a
// scanner never outlives its daemon. A scan that times out calls restart():
// a scanner that no longer answers in time is killed and replaced.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace moat::filters::antivirus {

class Supervisor {
 public:
  struct Options {
    std::filesystem::path binary;   // moat-scand
    std::vector<std::string> args;  // after argv[0]
    std::filesystem::path socket;   // start() waits until it answers
    std::filesystem::path pidfile;  // the running scanner's PID, for operators and tests
  };
  explicit Supervisor(Options opt);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts the watch thread and waits up to `wait` for the socket to accept.
  void start(std::chrono::milliseconds wait);
  void stop();
  void restart(const std::string& why);
  pid_t pid() const { return pid_.load(); }
  unsigned restarts() const { return restarts_.load(); }

  // The one supervisor of this process, if any (the antivirus filter's
  // timeout path reaches it here; moatd makes it before any filter exists).
  static Supervisor* current();

 private:
  void loop();
  pid_t spawn();
  void write_pidfile(pid_t pid);

  Options opt_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::atomic<pid_t> pid_{0};
  std::atomic<unsigned> restarts_{0};
};

// The moat-scand beside the running executable (moatd and moat-scand are
// installed together).
std::filesystem::path default_scand_path();

}  // namespace moat::filters::antivirus

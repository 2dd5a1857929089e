// See log.hpp. Lines are assembled first and written with one write(2) so
// concurrent threads never interleave within a line.
#include "common/log.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>

namespace moat::log {
namespace {
std::string g_program = "moat";
std::atomic<Level> g_level{Level::Info};
int g_fd = 2;
std::mutex g_mu;

// getpid() once, not a system call per line; a forked child looks it up again.
std::atomic<pid_t> g_pid{0};
pid_t cached_pid() {
  static const bool registered = [] { return ::pthread_atfork(nullptr, nullptr, [] { g_pid = 0; }) == 0; }();
  (void)registered;
  pid_t p = g_pid.load(std::memory_order_relaxed);
  if (p == 0) g_pid = p = ::getpid();
  return p;
}

std::string_view prefix(Level l) {
  switch (l) {
    case Level::Warning: return "warning: ";
    case Level::Error: return "error: ";
    case Level::Debug: return "debug: ";
    default: return "";
  }
}
}  // namespace

void set_program(std::string_view name) { g_program = std::string(name); }
void set_level(Level min) { g_level = min; }

void set_file(const std::string& path) {
  std::lock_guard lk(g_mu);
  if (g_fd != 2) ::close(g_fd);
  g_fd = 2;
  if (path.empty()) return;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd >= 0) g_fd = fd;
}

void line(Level level, std::string_view text) {
  if (level < g_level.load(std::memory_order_relaxed)) return;
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char ts[32];
  std::size_t n = std::strftime(ts, sizeof ts, "%b %e %H:%M:%S", &tm);
  std::string out;
  out.reserve(text.size() + 64);
  out.append(ts, n);
  out += ' ';
  out += g_program;
  out += '[';
  out += std::to_string(cached_pid());
  out += "]: ";
  out += prefix(level);
  out += text;
  out += '\n';
  std::lock_guard lk(g_mu);
  const char* p = out.data();
  std::size_t left = out.size();
  while (left > 0) {
    ssize_t w = ::write(g_fd, p, left);
    if (w <= 0) break;
    p += w;
    left -= std::size_t(w);
  }
}

}  // namespace moat::log

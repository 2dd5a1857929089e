// See failpoint.hpp.
#include "common/failpoint.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace moat::failpoint {
namespace {

struct Point {
  std::string name;
  std::string action;   // kill | exit | error | sleep:MS
  unsigned on_hit = 1;  // act on this hit and after
  std::atomic<unsigned> hits{0};
};

std::mutex g_mu;
std::vector<Point*> g_points;
// Every Point ever made stays alive until exit: hit() may still hold one
// while a reload() (tests only) replaces the list.
std::vector<std::unique_ptr<Point>> g_all;
std::atomic<bool> g_any{false};
std::once_flag g_once;

void parse_env() {
  std::lock_guard lk(g_mu);
  g_points.clear();
  const char* env = std::getenv("MOAT_FAILPOINT");
  if (!env || !*env) {
    g_any = false;
    return;
  }
  std::string_view s(env);
  while (!s.empty()) {
    auto comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
    auto eq = item.find('=');
    auto* p = g_all.emplace_back(std::make_unique<Point>()).get();
    p->name = std::string(item.substr(0, eq));
    p->action = eq == std::string_view::npos ? "kill" : std::string(item.substr(eq + 1));
    if (auto at = p->action.find('@'); at != std::string::npos) {
      p->on_hit = unsigned(std::strtoul(p->action.c_str() + at + 1, nullptr, 10));
      p->action.resize(at);
    }
    g_points.push_back(p);
  }
  g_any = !g_points.empty();
}

}  // namespace

void reload() { parse_env(); }

bool hit(std::string_view point) {
  std::call_once(g_once, parse_env);
  if (!g_any.load(std::memory_order_relaxed)) return false;
  Point* p = nullptr;
  {
    std::lock_guard lk(g_mu);
    for (auto* q : g_points)
      if (q->name == point) p = q;
  }
  if (!p) return false;
  if (++p->hits < p->on_hit) return false;
  if (p->action == "kill") {
    ::kill(::getpid(), SIGKILL);
    ::pause();
  }
  if (p->action == "exit") ::_exit(99);
  if (p->action.rfind("sleep:", 0) == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(p->action.c_str() + 6)));
    return false;
  }
  return p->action == "error";
}

}  // namespace moat::failpoint

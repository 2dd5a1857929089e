// moat-scand supervisor (see supervisor.hpp).
#include "filters/antivirus/supervisor.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "common/log.hpp"
#include "common/metrics.hpp"

namespace moat::filters::antivirus {
namespace {

std::atomic<Supervisor*> g_current{nullptr};

bool socket_answers(const std::filesystem::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  ::close(fd);
  return ok;
}

// Written beside and renamed over, so a reader never sees a half-written PID.
void write_pidfile_at(const std::filesystem::path& path, pid_t pid) {
  auto tmp = path;
  tmp += ".tmp";
  { std::ofstream(tmp) << pid << "\n"; }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + std::to_string(WTERMSIG(status));
  return "stopped";
}

}  // namespace

std::filesystem::path default_scand_path() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path("moat-scand") : self.parent_path() / "moat-scand";
}

Supervisor* Supervisor::current() { return g_current.load(); }

Supervisor::Supervisor(Options opt) : opt_(std::move(opt)) {}

Supervisor::~Supervisor() { stop(); }

void Supervisor::start(std::chrono::milliseconds wait) {
  g_current.store(this);
  thread_ = std::thread([this] { loop(); });
  auto until = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < until && !socket_answers(opt_.socket))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

void Supervisor::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (pid_t p = pid_.load(); p > 0) ::kill(p, SIGTERM);
  if (thread_.joinable()) thread_.join();
  Supervisor* self = this;
  g_current.compare_exchange_strong(self, nullptr);
}

void Supervisor::restart(const std::string& why) {
  pid_t p = pid_.load();
  if (p <= 0) return;
  log::warning("moat-scand[" + std::to_string(p) + "]: restarting: " + why);
  ::kill(p, SIGKILL);
}

// Everything the child needs is built before fork(): after it, in a
// multithreaded parent, only async-signal-safe calls are allowed.
void Supervisor::write_pidfile(pid_t pid) { write_pidfile_at(opt_.pidfile, pid); }

pid_t Supervisor::spawn() {
  std::vector<std::string> args{opt_.binary.string()};
  args.insert(args.end(), opt_.args.begin(), opt_.args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execv(argv[0], argv.data());
  ::_exit(127);
}

void Supervisor::loop() {
  auto& restarts = metrics::counter("moat_scand_restarts_total", {}, "moat-scand restarts after it died");
  std::chrono::milliseconds pause{200};
  for (;;) {
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
    }
    const auto started = std::chrono::steady_clock::now();
    pid_t pid = spawn();
    if (pid < 0) {
      log::error(std::string("moat-scand: fork failed: ") + std::strerror(errno));
    } else {
      pid_.store(pid);
      write_pidfile(pid);
      log::info("moat-scand[" + std::to_string(pid) + "]: started");
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      pid_.store(0);
      std::lock_guard lk(mu_);
      if (stopping_) return;
      log::warning("moat-scand[" + std::to_string(pid) + "]: " + describe(status) + "; starting it again");
      restarts.inc();
      restarts_.fetch_add(1);
    }
    // A scanner that ran a while gets restarted at once; one that keeps
    // dying at start waits longer each time instead of spinning.
    if (std::chrono::steady_clock::now() - started > std::chrono::seconds(10)) pause = std::chrono::milliseconds(200);
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, pause, [this] { return stopping_; });
    pause = std::min<std::chrono::milliseconds>(pause * 2, std::chrono::seconds(5));
  }
}

}  // namespace moat::filters::antivirus

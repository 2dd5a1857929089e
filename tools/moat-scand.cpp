// moat-scand: the virus scanner process (ARCHITECTURE.md "Processes";
// SECURITY.md promise 5). It owns libclamav, listens on a Unix socket for
// moatd's scan requests (common/proto/scand), and runs sandboxed: memory
// capped (RLIMIT_AS), no core dumps, no new privileges, its own empty network
// namespace when it can make one, and an unprivileged user when started as
// root; ClamAV's scratch files are kept in memory (see kShm). Scans run on
// a pool of worker threads, each taking connections off the listening
// socket; signatures reload on SIGHUP or when the database folders change,
// swapped in whole while scans go on (signatures/engine.hpp).
//
//   moat-scand --config FILE [--socket PATH]
#include <grp.h>
#include <linux/magic.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/config.hpp"
#include "common/failpoint.hpp"
#include "common/log.hpp"
#include "common/proto/scand/scand.hpp"
#include "signatures/engine.hpp"

namespace {

namespace fs = std::filesystem;
namespace scand = moat::proto::scand;
namespace sig = moat::signatures;
using namespace moat;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

sig::Limits engine_limits(const config::Antivirus& av) {
  sig::Limits l;
  l.max_scan_size = av.max_scan_size;
  l.max_file_size = av.max_file_size;
  l.max_recursion = av.max_recursion;
  l.max_files = av.max_files;
  l.max_scan_time_ms = std::uint32_t(av.max_scan_time.count());
  return l;
}

// Our folders, plus the system ClamAV folder when freshclam has filled it.
std::vector<fs::path> database_dirs(const config::Antivirus& av) {
  std::vector<fs::path> dirs = av.signatures;
  if (!av.system_signatures.empty() && sig::has_databases(av.system_signatures)) dirs.push_back(av.system_signatures);
  return dirs;
}

int listen_on(const fs::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  if (fd < 0 || path.native().size() >= sizeof sa.sun_path) return -1;
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 64) != 0) {
    ::close(fd);
    return -1;
  }
  ::chmod(path.c_str(), 0660);
  return fd;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(std::size_t(n));
  }
  return true;
}

// ClamAV's scratch folder. libclamav writes what it takes apart (mail parts,
// archive members, normalised HTML) to files there, and makes and removes a
// folder for every item it scans. The items of a SpamAssassin corpus message
// took 5.6 ms to scan with those files on the disk (ext4 mounted with
// discard here: each removal waits for the device), 0.25 to 0.5 ms with them
// in memory (libclamav alone, 300 messages). As root: a tmpfs of our own
// over /dev/shm in a private mount namespace, gone with the process, its
// size capped (scratch_size). Without root, or where mounting is refused: a
// folder of our own in the shared /dev/shm when that is a tmpfs (not capped
// then), else ClamAV's default ($TMPDIR, /tmp).
constexpr const char* kShm = "/dev/shm";
constexpr std::string_view kShmPrefix = "moat-scand-";

// Twice what the scans in flight may write before a limit trips (a verdict):
// one item at a time per thread, each read up to max_scan_size plus the one
// file that goes over it; the rest for ClamAV's normalised HTML and scripts.
std::uint64_t scratch_size(const config::Antivirus& av) {
  return 2 * std::uint64_t(std::max(av.threads, 1u)) * (av.max_scan_size + av.max_file_size) + (64u << 20);
}

bool private_tmpfs(const config::Antivirus& av, const passwd& pw) {
  auto fail = [](const char* what) {
    log::warning(std::string(what) + ": " + std::strerror(errno) + "; ClamAV's files go elsewhere");
    return false;
  };
  if (::unshare(CLONE_NEWNS) != 0) return fail("unshare(CLONE_NEWNS)");
  // Nothing mounted here may show outside (systemd makes / shared).
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return fail("mount --make-rprivate /");
  const std::string opts = "size=" + std::to_string(scratch_size(av)) + ",mode=0700,uid=" + std::to_string(pw.pw_uid) +
                           ",gid=" + std::to_string(pw.pw_gid);
  if (::mount("moat-scand", kShm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts.c_str()) != 0)
    return fail("mount tmpfs on /dev/shm");
  return true;
}

// The folders of earlier scanners of this user that were killed before
// they could remove theirs.
void remove_stale(uid_t owner) {
  std::error_code ec;
  for (auto it = fs::directory_iterator(kShm, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    struct stat st {};
    if (!name.starts_with(kShmPrefix) || ::lstat(it->path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_uid != owner)
      continue;
    const long pid = std::strtol(name.c_str() + kShmPrefix.size(), nullptr, 10);
    if (pid > 0 && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH) fs::remove_all(it->path(), ec);
  }
}

fs::path shared_tmpfs_folder(uid_t owner, gid_t group) {
  struct statfs sf {};
  if (::statfs(kShm, &sf) != 0 || sf.f_type != TMPFS_MAGIC) return {};
  remove_stale(owner);
  fs::path dir = fs::path(kShm) / (std::string(kShmPrefix) + std::to_string(::getpid()));
  if (::mkdir(dir.c_str(), 0700) != 0 || ::chown(dir.c_str(), owner, group) != 0) return {};
  return dir;
}

// The sandbox. Steps that need root are skipped (and said so) without it.
// `scratch` is set to ClamAV's scratch folder ("" for its default).
bool sandbox(const config::Config& cfg, const fs::path& socket, fs::path& scratch) {
  const auto& av = cfg.antivirus;
  rlimit zero{0, 0};
  ::setrlimit(RLIMIT_CORE, &zero);
  // ASan reserves terabytes of shadow address space; an RLIMIT_AS would stop
  // the sanitizer build from starting, so that build runs uncapped.
  if (av.memory && !kSanitized) {
    rlimit as{av.memory, av.memory};
    if (::setrlimit(RLIMIT_AS, &as) != 0) log::warning(std::string("setrlimit(RLIMIT_AS): ") + std::strerror(errno));
  }
  if (::geteuid() == 0) {
    // No network: a new, empty network namespace (Unix sockets by path still work).
    if (::unshare(CLONE_NEWNET) != 0) log::warning(std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno));
    std::string user = !av.user.empty() ? av.user : !cfg.server.user.empty() ? cfg.server.user : "nobody";
    const passwd* pw = ::getpwnam(user.c_str());
    if (!pw) {
      log::error("no such user " + user);
      return false;
    }
    scratch = private_tmpfs(av, *pw) ? fs::path(kShm) : shared_tmpfs_folder(pw->pw_uid, pw->pw_gid);
    if (::chown(socket.c_str(), pw->pw_uid, pw->pw_gid) != 0 || ::setgroups(0, nullptr) != 0 ||
        ::setgid(pw->pw_gid) != 0 || ::setuid(pw->pw_uid) != 0) {
      log::error("dropping privileges to " + user + ": " + std::strerror(errno));
      return false;
    }
  } else {
    scratch = shared_tmpfs_folder(::geteuid(), ::getegid());
  }
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  return true;
}

class Scanner {
 public:
  Scanner(sig::Holder& holder, scand::Limits limits) : holder_(holder), limits_(limits) {}

  scand::ScanReply scan(const scand::ScanRequest& req) {
    failpoint::hit("scand.scan");  // tests: "scand.scan=sleep:3000" to kill a scanner mid-scan
    scand::ScanReply reply;
    reply.id = req.id;
    auto engine = holder_.current();  // kept for the whole request, even across a reload
    if (!engine) {
      reply.verdict = scand::Verdict::Error;
      reply.detail = "no signatures loaded";
      return reply;
    }
    for (std::size_t i = 0; i < req.items.size(); ++i) {
      auto r = engine->scan(req.items[i].data, req.items[i].name);
      if (r.outcome == sig::Outcome::Clean) continue;
      auto v = r.outcome == sig::Outcome::Virus           ? scand::Verdict::Virus
               : r.outcome == sig::Outcome::LimitExceeded ? scand::Verdict::LimitExceeded
                                                          : scand::Verdict::Error;
      reply.findings.push_back(scand::Finding{std::uint16_t(i), v, r.name.substr(0, limits_.max_name)});
      if (v > reply.verdict) reply.verdict = v;
    }
    return reply;
  }

  // One connection: frames in, replies out, until the peer closes.
  void serve(int fd) {
    scand::Decoder decoder(limits_);
    std::vector<char> buf(1 << 16);
    for (;;) {
      ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      if (auto st = decoder.feed(std::string_view(buf.data(), std::size_t(n))); !st) {
        log::warning(st.error().detail);
        return;
      }
      while (decoder.has_frame()) {
        scand::Frame f = decoder.next();
        std::string out;
        if (f.type == scand::FrameType::Ping) {
          out = scand::encode_frame(scand::FrameType::Pong, {});
        } else if (f.type == scand::FrameType::ScanRequest) {
          auto req = scand::decode_request(f.payload, limits_);
          if (!req) {
            log::warning(req.error().detail);
            return;
          }
          out = scand::encode(scan(*req));
        } else {
          return;
        }
        if (!write_all(fd, out)) return;
      }
    }
  }

 private:
  sig::Holder& holder_;
  scand::Limits limits_;
};

void worker(int listen_fd, Scanner* scanner, std::chrono::seconds idle) {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // listener closed: shutting down
    }
    // A client that stops sending must not hold a worker for ever.
    timeval tv{static_cast<time_t>(idle.count()), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    scanner->serve(fd);
    ::close(fd);
  }
}

bool reload(sig::Holder& holder) {
  auto st = holder.reload();
  if (!st) {
    log::error("signatures not reloaded, keeping the loaded ones: " + st.error().detail);
    return false;
  }
  log::info("signatures loaded: " + std::to_string(holder.current()->signatures()) + " from " +
            std::to_string(holder.dirs().size()) + " folder(s)");
  return true;
}

int usage(int rc) {
  std::fprintf(rc ? stderr : stdout, "usage: moat-scand --config FILE [--socket PATH]\n");
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  log::set_program("moat-scand");
  std::string config_file, socket_arg;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc) config_file = argv[++i];
    else if (std::strcmp(argv[i], "--socket") == 0 && i + 1 < argc) socket_arg = argv[++i];
    else if (std::strcmp(argv[i], "--help") == 0) return usage(0);
    else return usage(2);
  }
  if (config_file.empty()) return usage(2);
  auto cfg = config::load(config_file);
  if (!cfg) {
    log::error(cfg.error().detail);
    return 1;
  }
  const auto& av = (*cfg)->antivirus;
  fs::path socket = socket_arg.empty() ? av.socket : fs::path(socket_arg);

  // Signals are taken by sigwait in the main thread; workers never see them.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&sigs, s);
  ::pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  int fd = listen_on(socket);
  if (fd < 0) {
    log::error("cannot listen on " + socket.string() + ": " + std::strerror(errno));
    return 1;
  }
  fs::path scratch;
  if (!sandbox(**cfg, socket, scratch)) return 1;
  log::info("ClamAV's scratch folder: " +
            (scratch.empty() ? std::string("its default ($TMPDIR or /tmp)") : scratch.string()));

  sig::Holder holder(database_dirs(av), engine_limits(av), scratch);
  // Without signatures moat-scand still answers, with an error: moatd then
  // tempfails (fail closed) instead of passing mail as clean.
  reload(holder);

  Scanner scanner(holder, [&] {
    scand::Limits l;
    l.max_frame = std::size_t(4 * (*cfg)->limits.message_size + (1u << 20));
    return l;
  }());
  const auto idle = std::chrono::duration_cast<std::chrono::seconds>(av.timeout) + std::chrono::seconds(5);
  std::vector<std::thread> workers;
  for (unsigned i = 0; i < av.threads; ++i) workers.emplace_back(worker, fd, &scanner, idle);
  log::info("listening on " + socket.string() + " with " + std::to_string(av.threads) + " scan threads");

  auto last_change = holder.newest_change();
  auto next_check = std::chrono::steady_clock::now() + av.reload_check;
  for (;;) {
    timespec tick{1, 0};
    int s = ::sigtimedwait(&sigs, nullptr, &tick);
    if (s == SIGTERM || s == SIGINT) break;
    if (s == SIGHUP) {
      reload(holder);
      last_change = holder.newest_change();
      continue;
    }
    // clamd SelfCheck: reload when a database folder or file changed.
    if (av.reload_check.count() == 0 || std::chrono::steady_clock::now() < next_check) continue;
    next_check = std::chrono::steady_clock::now() + av.reload_check;
    if (auto now = holder.newest_change(); now != last_change && reload(holder)) last_change = now;
  }
  log::info("stopping");
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  ::unlink(socket.c_str());
  std::error_code ec;
  if (!scratch.empty() && scratch != kShm) fs::remove_all(scratch, ec);
  // Scans in progress are abandoned: moatd sees the connection drop and tempfails.
  ::_exit(0);
}

// `moatctl user`: manage moat's own user database (directory/userdb) from the
// shell, like `doveadm pw` plus Postfix-style exit codes (0 ok, 1 failed, 2 usage).
// Passwords come from stdin (one line) or, on a TTY, twice without echo.
#include <pwd.h>
#include <termios.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <optional>
#include <ctime>
#include <iostream>
#include <string>

#include "common/config.hpp"
#include "directory/password.hpp"
#include "directory/userdb.hpp"
#include "store/fs_store.hpp"
#include "tools/moatctl.hpp"

namespace moat::ctl {

void hand_store_to_service_user(const config::Config& cfg);  // tools/moatctl_mailbox.cpp

namespace {

constexpr const char* kUsage =
    "usage: moatctl user add NAME          (password from stdin, or prompted twice on a TTY)\n"
    "       moatctl user passwd NAME\n"
    "       moatctl user import NAME       (existing $argon2id$/$2b$/$2y$/$6$ hash from stdin)\n"
    "       moatctl user del NAME\n"
    "       moatctl user disable|enable NAME\n"
    "       moatctl user check NAME        (exit 0 if the password from stdin matches)\n"
    "       moatctl user quota NAME SIZE   (bytes, or 500M, 2G; 0 for no limit)\n"
    "       moatctl user list [--json]\n";

constexpr Complaint kSay{"user", kUsage};

// Restores the terminal however the read ends.
class EchoOff {
 public:
  EchoOff() : ok_(::tcgetattr(STDIN_FILENO, &saved_) == 0) {
    if (!ok_) return;
    termios t = saved_;
    t.c_lflag &= static_cast<tcflag_t>(~ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
  }
  ~EchoOff() {
    if (ok_) ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_);
  }
  EchoOff(const EchoOff&) = delete;
  EchoOff& operator=(const EchoOff&) = delete;

 private:
  termios saved_{};
  bool ok_;
};

bool read_line(std::string& out) {
  if (!std::getline(std::cin, out)) return false;
  if (!out.empty() && out.back() == '\r') out.pop_back();
  return true;
}

Result<std::string> prompt(const char* text) {
  std::cerr << text << std::flush;
  std::string line;
  bool ok;
  {
    EchoOff guard;
    ok = read_line(line);
  }
  std::cerr << "\n";
  if (!ok) return Error{Errc::Invalid, "no password given"};
  return line;
}

// One line from a pipe; on a TTY ask twice so a typo does not lock the user out.
Result<std::string> read_password(bool confirm) {
  if (::isatty(STDIN_FILENO) == 0) {
    std::string line;
    if (!read_line(line)) return Error{Errc::Invalid, "no password on stdin"};
    return line;
  }
  auto first = prompt("Password: ");
  if (!first || !confirm) return first;
  auto second = prompt("Retype password: ");
  if (!second) return second;
  if (*first != *second) return Error{Errc::Invalid, "passwords do not match"};
  return first;
}

// moatd drops to server.user after binding; when root runs moatctl the
// database must stay readable and writable for that user.
void hand_to_service_user(const config::Config& cfg) {
  if (::geteuid() != 0 || cfg.server.user.empty()) return;
  passwd pw{}, *found = nullptr;
  char buf[4096];
  if (::getpwnam_r(cfg.server.user.c_str(), &pw, buf, sizeof buf, &found) != 0 || found == nullptr) return;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::string p = cfg.db_path().string() + suffix;
    if (::access(p.c_str(), F_OK) == 0 && ::chown(p.c_str(), pw.pw_uid, pw.pw_gid) != 0)
      std::cerr << "moatctl user: warning: cannot chown " << p << " to " << cfg.server.user << "\n";
  }
}

std::string iso_time(std::int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += esc;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

int list_users(directory::UserDb& db, bool json) {
  auto users = db.list();
  if (!users) return kSay.failed(users.error());
  if (json) {
    std::cout << "[";
    for (std::size_t i = 0; i < users->size(); ++i) {
      const auto& u = (*users)[i];
      std::cout << (i ? ",\n " : "") << "{\"name\":" << json_string(u.name) << ",\"created\":" << u.created
                << ",\"disabled\":" << (u.disabled ? "true" : "false") << ",\"scheme\":" << json_string(u.scheme)
                << ",\"quota\":" << u.quota << "}";
    }
    std::cout << "]\n";
    return 0;
  }
  std::size_t w = 4;
  for (const auto& u : *users) w = std::max(w, u.name.size());
  std::printf("%-*s  %-20s  %-8s  %-12s  %s\n", static_cast<int>(w), "NAME", "CREATED", "STATUS", "SCHEME", "QUOTA");
  for (const auto& u : *users)
    std::printf("%-*s  %-20s  %-8s  %-12s  %s\n", static_cast<int>(w), u.name.c_str(), iso_time(u.created).c_str(),
                u.disabled ? "disabled" : "active", u.scheme.c_str(),
                u.quota ? std::to_string(u.quota).c_str() : "-");
  return 0;
}

// Commands that take exactly one NAME.
int named_cmd(directory::UserDb& db, const std::string& verb, const std::string& name) {
  Status st;
  if (verb == "add" || verb == "passwd") {
    auto pw = read_password(true);
    if (!pw) return kSay.failed(pw.error());
    if (auto v = directory::validate_password(*pw); !v) return kSay.failed(v.error());
    st = verb == "add" ? db.add(name, *pw) : db.set_password(name, *pw);
  } else if (verb == "import") {
    std::string hash;
    if (!read_line(hash)) return kSay.failed({Errc::Invalid, "no hash on stdin"});
    st = db.add_hash(name, hash);
  } else if (verb == "check") {
    auto pw = read_password(false);
    if (!pw) return kSay.failed(pw.error());
    auto r = db.verify(name, *pw);
    if (!r) return kSay.failed(r.error());
    std::cout << (*r ? "ok" : "no match") << "\n";
    return *r ? 0 : 1;
  } else if (verb == "quota") {
    return kSay.usage("quota takes NAME SIZE");
  } else if (verb == "del") {
    st = db.remove(name);
  } else if (verb == "disable" || verb == "enable") {
    st = db.set_disabled(name, verb == "disable");
  } else {
    return kSay.usage("unknown command: " + verb);
  }
  if (!st) return kSay.failed(st.error());
  return 0;
}

bool is_named_verb(const std::string& v) {
  return v == "add" || v == "passwd" || v == "import" || v == "check" || v == "del" || v == "disable" ||
         v == "enable";
}

// "500M" → 524288000; plain digits are bytes.
std::optional<std::uint64_t> parse_size(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::uint64_t mult = 1;
  switch (s.back()) {
    case 'K': case 'k': mult = 1ull << 10; break;
    case 'M': case 'm': mult = 1ull << 20; break;
    case 'G': case 'g': mult = 1ull << 30; break;
    case 'T': case 't': mult = 1ull << 40; break;
    default: break;
  }
  if (mult != 1) s.remove_suffix(1);
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty() || v > (UINT64_MAX >> 1) / mult) return std::nullopt;
  return v * mult;
}

int quota_cmd(const Context& ctx, const Args& args) {
  if (args.size() != 3) return kSay.usage("quota takes NAME SIZE");
  auto size = parse_size(args[2]);
  if (!size) return kSay.usage("bad size: " + args[2]);
  auto cfg = config::load(ctx.config_file);
  if (!cfg) return kSay.failed(cfg.error());
  auto db = directory::UserDb::open((*cfg)->db_path());
  if (!db) return kSay.failed(db.error());
  if (auto st = (*db)->set_quota(args[1], *size); !st) return kSay.failed(st.error());
  return 0;
}

}  // namespace

int user_cmd(const Context& ctx, const Args& args) {
  if (args.empty()) return kSay.usage();
  const std::string& verb = args[0];
  if (verb == "quota") return quota_cmd(ctx, args);
  bool json = false;
  if (verb == "list") {
    if (args.size() > 2 || (args.size() == 2 && args[1] != "--json")) return kSay.usage();
    json = args.size() == 2;
  } else if (!is_named_verb(verb)) {
    return kSay.usage("unknown command: " + verb);
  } else if (args.size() != 2) {
    return kSay.usage(verb + " takes exactly one NAME");
  } else if (auto v = directory::validate_name(args[1]); !v) {
    return kSay.usage(v.error().detail);
  }

  auto cfg = config::load(ctx.config_file);
  if (!cfg) return kSay.failed(cfg.error());
  auto db = directory::UserDb::open((*cfg)->db_path());
  if (!db) return kSay.failed(db.error());
  int rc = verb == "list" ? list_users(**db, json) : named_cmd(**db, verb, args[1]);
  // New users get their mailboxes (INBOX, Drafts, Sent, Junk, Trash) now,
  // so IMAP shows them before the first mail arrives. Mail is kept when a
  // user is deleted (`moatctl mailbox purge USER` removes it).
  if (rc == 0 && (verb == "add" || verb == "import")) {
    auto store = store::FsStore::open({(*cfg)->store_dir()});
    Status st = store ? (*store)->create_user(args[1]) : Status(store.error());
    if (!st) std::cerr << "moatctl user: warning: mailboxes not created: " << st.error().detail << "\n";
    hand_store_to_service_user(**cfg);
  }
  hand_to_service_user(**cfg);
  return rc;
}

}  // namespace moat::ctl

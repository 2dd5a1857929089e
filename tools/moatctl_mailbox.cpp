// `moatctl mailbox`: look into and repair users' mailboxes in the store
// (store/fs_store), like `doveadm mailbox|fetch|expunge`. Works on the files
// directly, with the same locks moatd takes, so moatd may be running.
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <iterator>

#include "common/config.hpp"
#include "store/fs_store.hpp"
#include "tools/moatctl.hpp"

namespace moat::ctl {
namespace {

constexpr const char* kUsage =
    "usage: moatctl mailbox list USER\n"
    "       moatctl mailbox messages USER [MAILBOX]\n"
    "       moatctl mailbox fetch USER MAILBOX UID      (the message bytes on stdout)\n"
    "       moatctl mailbox append USER MAILBOX         (a message on stdin)\n"
    "       moatctl mailbox expunge USER MAILBOX UIDS   (e.g. 3 or 1:5,9 or 1:*)\n"
    "       moatctl mailbox create USER MAILBOX\n"
    "       moatctl mailbox purge USER                  (delete all of a user's mail)\n"
    "       moatctl mailbox compact                     (rewrite indexes, free unused bodies)\n"
    "       moatctl mailbox usage                       (bytes of message bodies on disk)\n";

constexpr Complaint kSay{"mailbox", kUsage};

std::optional<std::uint32_t> parse_uid(std::string_view s) {
  if (s == "*") return UINT32_MAX;
  std::uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == 0) return std::nullopt;
  return v;
}

std::optional<store::UidRanges> parse_uids(std::string_view s) {
  store::UidRanges out;
  while (!s.empty()) {
    auto comma = s.find(',');
    auto part = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
    auto colon = part.find(':');
    auto a = parse_uid(part.substr(0, colon));
    auto b = colon == std::string_view::npos ? a : parse_uid(part.substr(colon + 1));
    if (!a || !b) return std::nullopt;
    out.emplace_back(std::min(*a, *b), std::max(*a, *b));
  }
  if (out.empty()) return std::nullopt;
  return out;
}

std::string flag_text(const store::MessageInfo& m) {
  static constexpr std::pair<store::Flag, const char*> kNames[] = {{store::kSeen, "\\Seen"},
                                                                  {store::kAnswered, "\\Answered"},
                                                                  {store::kFlagged, "\\Flagged"},
                                                                  {store::kDeleted, "\\Deleted"},
                                                                  {store::kDraft, "\\Draft"}};
  std::string out;
  for (const auto& [f, name] : kNames)
    if (m.flags & f) out += (out.empty() ? "" : " ") + std::string(name);
  for (const auto& k : m.keywords) out += (out.empty() ? "" : " ") + k;
  return out.empty() ? "-" : out;
}

std::string iso_time(std::int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int list_cmd(store::FsStore& st, const std::string& user) {
  auto boxes = st.list(user);
  if (!boxes) return kSay.failed(boxes.error());
  std::printf("%-24s %-9s %8s %8s %12s %12s %8s\n", "MAILBOX", "USE", "MESSAGES", "UNSEEN", "BYTES", "UIDVALIDITY",
              "UIDNEXT");
  for (const auto& b : *boxes) {
    auto s = st.status(user, b.name);
    if (!s) return kSay.failed(s.error());
    auto use = store::special_use_name(b.special_use);
    std::printf("%-24s %-9s %8u %8u %12llu %12u %8u\n", b.name.c_str(), use.empty() ? "-" : std::string(use).c_str(),
                s->messages, s->unseen, static_cast<unsigned long long>(s->size), s->uidvalidity, s->uidnext);
  }
  return 0;
}

int messages_cmd(store::FsStore& st, const std::string& user, const std::string& box) {
  auto msgs = st.messages(user, box);
  if (!msgs) return kSay.failed(msgs.error());
  std::printf("%-8s %-10s %-20s %-32s %s\n", "UID", "SIZE", "INTERNALDATE", "GUID", "FLAGS");
  for (const auto& m : *msgs)
    std::printf("%-8u %-10llu %-20s %-32s %s\n", m.uid, static_cast<unsigned long long>(m.size),
                iso_time(m.internaldate).c_str(), m.guid.c_str(), flag_text(m).c_str());
  return 0;
}

int fetch_cmd(store::FsStore& st, const Args& args) {
  auto uid = parse_uid(args[3]);
  if (!uid || *uid == UINT32_MAX) return kSay.usage("bad UID: " + args[3]);
  auto bytes = st.fetch(args[1], args[2], *uid);
  if (!bytes) return kSay.failed(bytes.error());
  std::fwrite(bytes->data(), 1, bytes->size(), stdout);
  return 0;
}

// stdin as a message; bare LF line ends become CRLF (IMAP and SMTP's form).
int append_cmd(store::FsStore& st, const Args& args) {
  std::string in((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  std::string msg;
  msg.reserve(in.size() + in.size() / 32);
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) msg += '\r';
    msg += in[i];
  }
  store::AppendRequest req;
  req.content = msg;
  auto uid = st.append(args[1], args[2], req);
  if (!uid) return kSay.failed(uid.error());
  std::printf("%u\n", *uid);
  return 0;
}

int expunge_cmd(store::FsStore& st, const Args& args) {
  auto uids = parse_uids(args[3]);
  if (!uids) return kSay.usage("bad UID set: " + args[3]);
  store::FlagUpdate up;
  up.mode = store::FlagUpdate::Mode::Add;
  up.flags = store::kDeleted;
  auto marked = st.store_flags(args[1], args[2], *uids, up);
  if (!marked) return kSay.failed(marked.error());
  auto gone = st.expunge(args[1], args[2], *uids);
  if (!gone) return kSay.failed(gone.error());
  for (auto u : *gone) std::printf("%u\n", u);
  return 0;
}

}  // namespace

// moatd drops to server.user: files moatctl makes as root must be its own.
void hand_store_to_service_user(const config::Config& cfg) {
  if (::geteuid() != 0 || cfg.server.user.empty()) return;
  passwd pw{}, *found = nullptr;
  char buf[4096];
  if (::getpwnam_r(cfg.server.user.c_str(), &pw, buf, sizeof buf, &found) != 0 || found == nullptr) return;
  std::error_code ec;
  auto give = [&](const std::filesystem::path& p) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) == 0 && st.st_uid == 0) (void)::lchown(p.c_str(), pw.pw_uid, pw.pw_gid);
  };
  give(cfg.store_dir());
  for (const auto& e : std::filesystem::recursive_directory_iterator(cfg.store_dir(), ec)) give(e.path());
}

int mailbox_cmd(const Context& ctx, const Args& args) {
  if (args.empty()) return kSay.usage();
  const std::string& v = args[0];
  const std::size_t n = args.size();
  bool ok = (v == "list" && n == 2) || (v == "messages" && (n == 2 || n == 3)) || (v == "fetch" && n == 4) ||
            (v == "append" && n == 3) || (v == "expunge" && n == 4) || (v == "create" && n == 3) ||
            (v == "purge" && n == 2) || (v == "compact" && n == 1) || (v == "usage" && n == 1);
  if (!ok) return kSay.usage();
  auto cfg = config::load(ctx.config_file);
  if (!cfg) return kSay.failed(cfg.error());
  auto st = store::FsStore::open(store::store_options(**cfg));
  if (!st) return kSay.failed(st.error());
  auto& s = **st;
  struct Handover {
    const config::Config& cfg;
    ~Handover() { hand_store_to_service_user(cfg); }
  } handover{**cfg};
  if (v == "list") return list_cmd(s, args[1]);
  if (v == "messages") return messages_cmd(s, args[1], n == 3 ? args[2] : "INBOX");
  if (v == "fetch") return fetch_cmd(s, args);
  if (v == "append") return append_cmd(s, args);
  if (v == "expunge") return expunge_cmd(s, args);
  Status r;
  if (v == "create") r = s.create(args[1], args[2], store::SpecialUse::None);
  if (v == "purge") r = s.delete_user(args[1]);
  if (v == "compact") r = s.compact();
  if (v == "usage") {
    auto u = s.body_usage();
    if (!u) return kSay.failed(u.error());
    std::printf("%llu bytes in %llu bodies\n", static_cast<unsigned long long>(u->first),
                static_cast<unsigned long long>(u->second));
  }
  if (!r) return kSay.failed(r.error());
  return 0;
}

}  // namespace moat::ctl

// moatctl learn|unlearn|bayes: trains and inspects the Bayes token store
// directly in SQLite (WAL), like sa-learn, so it is safe while moatd runs.
//   moatctl learn --spam|--ham [--user U] [--db FILE] [--files-from F] PATH...
//   moatctl unlearn [--user U] [--db FILE] [--files-from F] PATH...
//   moatctl bayes stats [--db FILE] [--json]
//   moatctl bayes classify [--user U] [--db FILE] [--pipeline] [--files-from F] PATH...
//   moatctl bayes compact [--db FILE]
// A PATH is a message file, an mbox (split at "From " lines) or a folder of
// either (recursive, hidden files skipped).
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "filters/bayes/bayes.hpp"
#include "filters/pipeline.hpp"
#include "filters/policy.hpp"
#include "tools/moatctl.hpp"

namespace moat::ctl {
namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace bayes = filters::bayes;

constexpr std::uintmax_t kMaxFile = 256u << 20;  // an mbox larger than this is skipped with a message

struct Options {
  std::optional<bayes::Class> cls;
  std::string user;
  fs::path db;
  bool json = false;
  bool pipeline = false;
  std::vector<fs::path> paths;
};

int usage() {
  std::fprintf(stderr,
               "usage: moatctl learn --spam|--ham [--user U] [--db FILE] [--files-from F] PATH...\n"
               "       moatctl unlearn [--user U] [--db FILE] [--files-from F] PATH...\n"
               "       moatctl bayes stats [--db FILE] [--json]\n"
               "       moatctl bayes classify [--user U] [--db FILE] [--pipeline] [--files-from F] PATH...\n"
               "       moatctl bayes compact [--db FILE]\n");
  return 2;
}

bool read_list(const std::string& from, std::vector<fs::path>& out) {
  std::ifstream f;
  std::istream* in = &std::cin;
  if (from != "-") {
    f.open(from);
    if (!f) return false;
    in = &f;
  }
  for (std::string line; std::getline(*in, line);)
    if (!line.empty()) out.emplace_back(line);
  return true;
}

bool parse(const Args& args, std::size_t first, Options& o) {
  for (std::size_t i = first; i < args.size(); ++i) {
    const std::string& a = args[i];
    bool has_value = i + 1 < args.size();
    if (a == "--spam") o.cls = bayes::Class::Spam;
    else if (a == "--ham") o.cls = bayes::Class::Ham;
    else if (a == "--json") o.json = true;
    else if (a == "--pipeline") o.pipeline = true;
    else if (a == "--user" && has_value) o.user = args[++i];
    else if (a == "--db" && has_value) o.db = args[++i];
    else if (a == "--files-from" && has_value) {
      if (!read_list(args[++i], o.paths)) {
        std::fprintf(stderr, "moatctl: cannot read %s\n", args[i].c_str());
        return false;
      }
    } else if (!a.empty() && a[0] == '-') return false;
    else o.paths.emplace_back(a);
  }
  for (auto& c : o.user) c = char(std::tolower(static_cast<unsigned char>(c)));
  return true;
}

// Message files under the given paths, folders expanded in name order.
std::vector<fs::path> expand(const std::vector<fs::path>& paths) {
  std::vector<fs::path> out;
  for (const auto& p : paths) {
    std::error_code ec;
    if (!fs::is_directory(p, ec)) {
      out.push_back(p);
      continue;
    }
    std::vector<fs::path> found;
    for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->path().filename().string().starts_with(".")) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file()) found.push_back(it->path());
    }
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

// An mbox holds several messages, each starting with a "From " line after
// an empty line; a lone message file may also start with one.
std::vector<std::string_view> split_mbox(std::string_view data) {
  if (!data.starts_with("From ")) return {data};
  std::vector<std::string_view> out;
  std::size_t start = 0, pos = 0;
  while ((pos = data.find("\n\nFrom ", pos)) != std::string_view::npos) {
    out.push_back(data.substr(start, pos + 1 - start));
    start = pos + 2;
    pos = start;
  }
  out.push_back(data.substr(start));
  return out;
}

bool read_file(const fs::path& p, std::string& out) {
  std::error_code ec;
  auto size = fs::file_size(p, ec);
  if (ec || size > kMaxFile) {
    std::fprintf(stderr, "moatctl: %s: %s\n", p.c_str(), ec ? ec.message().c_str() : "too large, skipped");
    return false;
  }
  std::ifstream f(p, std::ios::binary);
  out.assign(std::istreambuf_iterator<char>(f), {});
  if (!f.good() && !f.eof()) {
    std::fprintf(stderr, "moatctl: %s: read error\n", p.c_str());
    return false;
  }
  return true;
}

// "[#####.....] 120/400 files, 118 messages, 230/s" on a terminal only.
class Progress {
 public:
  explicit Progress(std::size_t total) : total_(total), tty_(::isatty(2) != 0), start_(Clock::now()) {}
  void update(std::size_t files, std::size_t messages, bool last = false) {
    if (!tty_) return;
    auto now = Clock::now();
    if (!last && now - shown_ < std::chrono::milliseconds(100)) return;
    shown_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    int filled = total_ ? int(30 * files / total_) : 30;
    std::fprintf(stderr, "\r[%s%s] %zu/%zu files, %zu messages, %.0f/s", std::string(filled, '#').c_str(),
                 std::string(30 - filled, '.').c_str(), files, total_, messages, secs > 0 ? messages / secs : 0.0);
    if (last) std::fputc('\n', stderr);
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::size_t total_;
  bool tty_;
  Clock::time_point start_, shown_{};
};

// Calls fn(message, path) for each message under the paths.
template <class Fn>
std::size_t for_each_message(const std::vector<fs::path>& files, Fn&& fn) {
  Progress progress(files.size());
  std::size_t messages = 0, done = 0, failed = 0;
  std::string data;
  for (const auto& f : files) {
    if (!read_file(f, data)) {
      ++failed;
    } else {
      for (auto m : split_mbox(data)) {
        fn(m, f);
        ++messages;
      }
    }
    progress.update(++done, messages);
  }
  progress.update(done, messages, true);
  return failed;
}

// The configuration, with --db over its Bayes database; null after saying
// why it could not be loaded.
config::Snapshot load_config(const Context& ctx, const Options& o) {
  auto cfg = config::load(ctx.config_file);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().detail.c_str());
    return nullptr;
  }
  if (o.db.empty()) return *cfg;
  auto copy = std::make_shared<config::Config>(**cfg);
  copy->bayes.db = o.db;
  return config::Snapshot(std::move(copy));
}

int learn_cmd(const Context& ctx, const Args& args, bool forget) {
  Options o;
  if (!parse(args, 0, o) || o.paths.empty() || (!forget && !o.cls) || (forget && o.cls)) return usage();
  auto cfg = load_config(ctx, o);
  if (!cfg) return 1;
  bayes::Store store(cfg->bayes.db);
  std::size_t learned = 0, skipped = 0, errors = 0, in_batch = 0;
  // Batches of 100 keep moatd's autolearn from waiting long on the write lock.
  auto flush = [&] {
    if (auto st = store.end_batch(); !st) {
      std::fprintf(stderr, "moatctl: %s\n", st.error().detail.c_str());
      ++errors;
    }
    in_batch = 0;
  };
  std::size_t failed = for_each_message(expand(o.paths), [&](std::string_view m, const fs::path& path) {
    if (in_batch == 0)
      if (auto st = store.begin_batch(); !st) {
        std::fprintf(stderr, "moatctl: %s\n", st.error().detail.c_str());
        ++errors;
        return;
      }
    bool counted = false;
    if (forget) {
      auto r = bayes::unlearn(store, m, o.user);
      if (!r) std::fprintf(stderr, "moatctl: %s: %s\n", path.c_str(), r.error().detail.c_str());
      errors += !r;
      counted = r && *r;
    } else {
      auto r = bayes::learn(store, m, *o.cls, o.user);
      if (!r) std::fprintf(stderr, "moatctl: %s: %s\n", path.c_str(), r.error().detail.c_str());
      errors += !r;
      counted = r && *r != bayes::LearnResult::AlreadyLearned;
    }
    (counted ? learned : skipped)++;
    if (++in_batch >= 100) flush();
  });
  if (in_batch) flush();
  std::printf("%s %zu message(s), %zu %s\n", forget ? "unlearned" : "learned", learned, skipped,
              forget ? "not learned before" : "already learned");
  return errors || failed ? 1 : 0;
}

int stats_cmd(const Context& ctx, const Args& args) {
  Options o;
  if (!parse(args, 1, o) || !o.paths.empty()) return usage();
  auto cfg = load_config(ctx, o);
  if (!cfg) return 1;
  bayes::Store store(cfg->bayes.db);
  auto st = store.stats();
  if (!st) {
    std::fprintf(stderr, "moatctl: %s\n", st.error().detail.c_str());
    return 1;
  }
  const auto& b = cfg->bayes;
  if (o.json) {
    std::printf("[");
    for (std::size_t i = 0; i < st->size(); ++i) {
      const auto& u = (*st)[i];
      std::string name;
      for (char c : u.user)
        if (c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20) name += c;
      std::printf("%s{\"user\":\"%s\",\"spam\":%lld,\"ham\":%lld,\"tokens\":%lld,\"trained\":%s}", i ? "," : "",
                  name.c_str(), (long long)u.messages.spam, (long long)u.messages.ham, (long long)u.tokens,
                  u.messages.spam >= b.min_spam && u.messages.ham >= b.min_ham ? "true" : "false");
    }
    std::printf("]\n");
    return 0;
  }
  std::printf("%-32s %10s %10s %12s  %s\n", "USER", "SPAM", "HAM", "TOKENS", "TRAINED");
  for (const auto& u : *st)
    std::printf("%-32s %10lld %10lld %12lld  %s\n", u.user.empty() ? "(global)" : u.user.c_str(),
                (long long)u.messages.spam, (long long)u.messages.ham, (long long)u.tokens,
                u.messages.spam >= b.min_spam && u.messages.ham >= b.min_ham ? "yes" : "no");
  std::printf("db: %s (min_spam %u, min_ham %u)\n", cfg->bayes.db.c_str(), b.min_spam, b.min_ham);
  return 0;
}

// Deletes the token rows unlearning left at zero counts (Store::compact);
// safe while moatd runs, whose copy reloads once.
int compact_cmd(const Context& ctx, const Args& args) {
  Options o;
  if (!parse(args, 1, o) || !o.paths.empty()) return usage();
  auto cfg = load_config(ctx, o);
  if (!cfg) return 1;
  bayes::Store store(cfg->bayes.db);
  auto removed = store.compact();
  if (!removed) {
    std::fprintf(stderr, "moatctl: %s\n", removed.error().detail.c_str());
    return 1;
  }
  std::printf("removed %lld token row(s) at zero counts\n", static_cast<long long>(*removed));
  return 0;
}

asio::awaitable<void> run_pipeline(filters::Pipeline* p, filters::ScanContext* ctx, filters::Verdict* out) {
  *out = co_await p->run(filters::Phase::EndOfData, *ctx);
}

// Runs the configured EndOfData filters and the policy over one message, as
// moatd would after DATA (offline: no client, no DNS).
filters::Verdict scan(asio::io_context& io, filters::Pipeline& p, const config::Snapshot& cfg, const std::string& msg,
                      const std::string& user, std::vector<filters::Symbol>& symbols) {
  filters::ScanContext ctx;
  ctx.config = cfg;
  if (!user.empty()) {
    Recipient r;
    r.address = user;
    ctx.envelope.recipients.push_back(std::move(r));
  }
  ctx.message = msg;
  auto end = msg.find("\r\n\r\n");
  ctx.header = std::string_view(msg).substr(0, end == std::string::npos ? msg.size() : end + 2);
  ctx.message_size = msg.size();
  filters::Verdict v;
  asio::co_spawn(io, run_pipeline(&p, &ctx, &v), asio::detached);
  io.restart();
  io.run();
  symbols = std::move(ctx.symbols);
  return v;
}

int classify_cmd(const Context& ctx, const Args& args) {
  Options o;
  if (!parse(args, 1, o) || o.paths.empty()) return usage();
  auto cfg = load_config(ctx, o);
  if (!cfg) return 1;
  bayes::Store store(cfg->bayes.db);
  asio::io_context io;
  asio::thread_pool pool(1);
  std::unique_ptr<filters::Pipeline> pipeline;
  if (o.pipeline) {
    auto p = filters::Pipeline::build(cfg, filters::Services{nullptr, &pool, cfg->server.data_dir});
    if (!p) {
      std::fprintf(stderr, "moatctl: %s\n", p.error().detail.c_str());
      return 1;
    }
    pipeline = std::move(*p);
  }
  int errors = 0;
  std::size_t failed = for_each_message(expand(o.paths), [&](std::string_view m, const fs::path& path) {
    std::string msg = bayes::as_received(m);  // as moatd's filters see it
    if (pipeline) {
      std::vector<filters::Symbol> symbols;
      auto v = scan(io, *pipeline, cfg, msg, o.user, symbols);
      std::string names;
      for (const auto& s : symbols) names += (names.empty() ? "" : ",") + s.name;
      std::printf("%s\t%s\t%s\t%s\n", filters::format_score(v.score).c_str(),
                  std::string(filters::action_name(v.action)).c_str(), names.empty() ? "-" : names.c_str(),
                  path.c_str());
      return;
    }
    auto r = bayes::classify(store, msg, o.user, cfg->bayes);
    if (!r) {
      std::fprintf(stderr, "moatctl: %s: %s\n", path.c_str(), r.error().detail.c_str());
      ++errors;
      return;
    }
    std::printf("%.4f\t%s\t%s\n", r->probability, r->trained ? std::string(bayes::band(r->probability)).c_str() : "-",
                path.c_str());
  });
  pool.join();
  return errors || failed ? 1 : 0;
}

}  // namespace

int learn_cmd(const Context& ctx, const std::string& word, const Args& args) {
  if (word == "learn") return learn_cmd(ctx, args, false);
  if (word == "unlearn") return learn_cmd(ctx, args, true);
  if (args.empty()) return usage();
  if (args[0] == "stats") return stats_cmd(ctx, args);
  if (args[0] == "classify") return classify_cmd(ctx, args);
  if (args[0] == "compact") return compact_cmd(ctx, args);
  return usage();
}

}  // namespace moat::ctl

// moatctl rules: check and compile rule folders, scan a message, import
// SpamAssassin rules, and measure the rules stage (bench/rules-speed).
//   moatctl rules check [DIR...]             parse + compile, print the engine split
//   moatctl rules scan FILE... [--dir DIR] [--cache DIR]   symbols each message hits
//   moatctl rules import-sa SADIR OUTDIR [--score-set N]   convert *.cf into OUTDIR/sa.rules + sa.scores
//   moatctl rules bench --dir DIR --corpus DIR... [--limit N] [--class body] [--no-pcre] [--no-gates] [--cache DIR] [--per-rule N] [--rank-hs N]
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <hs/hs.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <time.h>
#include <unistd.h>

#include "common/config.hpp"
#include "filters/rules/message_input.hpp"
#include "rules/ascii_variant.hpp"
#include "rules/load.hpp"
#include "rules/ruleset.hpp"
#include "rules/sa_import.hpp"
#include "rules/skeleton.hpp"
#include "tools/moatctl.hpp"

namespace moat::ctl {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int usage() {
  std::fprintf(stderr,
               "usage: moatctl rules check [DIR...]\n"
               "       moatctl rules scan FILE... [--dir DIR] [--cache DIR]\n"
               "       moatctl rules import-sa SADIR OUTDIR [--score-set 0-3]\n"
               "       moatctl rules bench --dir DIR --corpus DIR... [--limit N] [--class body|rawbody|full] [--no-pcre] [--no-gates] [--cache DIR] [--per-rule N] [--rank-hs N]\n");
  return 2;
}

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// CPU seconds of this process: on a shared machine the wall clock also
// counts the time other processes held the cores.
double cpu_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

// --per-rule: the rules that cost the most, by moat's PCRE2 time, by
// prefilter candidates and by PCRE2 one-by-one time.
void print_per_rule(const std::vector<rules::Rule>& rs, const rules::RuleSet& set, const rules::ScanCost& cost,
                    const std::vector<double>& base_ns, std::size_t top) {
  std::vector<std::size_t> idx(rs.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  auto engine = [&](std::size_t i) {
    if (set.ascii_engine(i) == rules::Engine::Gated) return "gated";
    switch (set.engine(i)) {
      case rules::Engine::Hyperscan: return "hs";
      case rules::Engine::Prefilter: return "prefilter";
      case rules::Engine::Pcre: return "pcre2";
      default: return "-";
    }
  };
  auto line = [&](std::size_t i) {
    const auto& c = cost.rules[i];
    std::printf("  %-28s %-9s %6zu B  pcre2 %8.3f s %7llu runs  cand %7llu conf %7llu  one-by-one %8.3f s\n",
                rs[i].symbol.c_str(), engine(i), rs[i].pattern.size(), double(c.pcre_ns) / 1e9,
                static_cast<unsigned long long>(c.pcre_runs), static_cast<unsigned long long>(c.candidates),
                static_cast<unsigned long long>(c.confirmed), i < base_ns.size() ? base_ns[i] / 1e9 : 0.0);
  };
  std::uint64_t pcre_total = 0;
  for (const auto& c : cost.rules) pcre_total += c.pcre_ns;
  std::printf("per rule: hs_scan %.3f s (every buffer %.3f, non-ASCII buffers %.3f, ASCII variants %.3f), "
              "skeleton gates %.3f s, PCRE2 in moat %.3f s\n",
              double(cost.hs_ns) / 1e9, double(cost.hs_ns_group[0]) / 1e9, double(cost.hs_ns_group[1]) / 1e9,
              double(cost.hs_ns_group[2]) / 1e9, double(cost.gate_ns) / 1e9, double(pcre_total) / 1e9);
  std::sort(idx.begin(), idx.end(), [&](auto a, auto b) { return cost.rules[a].pcre_ns > cost.rules[b].pcre_ns; });
  std::printf("top %zu by PCRE2 time in moat:\n", top);
  for (std::size_t k = 0; k < std::min(top, idx.size()) && cost.rules[idx[k]].pcre_ns; ++k) line(idx[k]);
  std::sort(idx.begin(), idx.end(), [&](auto a, auto b) {
    return cost.rules[a].candidates - cost.rules[a].confirmed > cost.rules[b].candidates - cost.rules[b].confirmed;
  });
  std::printf("top %zu by prefilter or gate false positives (candidates PCRE2 turned down):\n", top);
  for (std::size_t k = 0; k < std::min(top, idx.size()) && cost.rules[idx[k]].candidates; ++k) line(idx[k]);
  if (base_ns.empty()) return;
  std::sort(idx.begin(), idx.end(), [&](auto a, auto b) { return base_ns[a] > base_ns[b]; });
  std::printf("top %zu by PCRE2-JIT one-by-one time:\n", top);
  for (std::size_t k = 0; k < std::min(top, idx.size()); ++k) line(idx[k]);
}

// --rank-hs: each rule that Hyperscan takes, compiled alone (its search
// form, with HS_FLAG_PREFILTER where it needs it) and scanned over the ASCII
// buffers: which patterns make the shared database slow, and what their
// skeletons look like (rules/skeleton.hpp). A diagnostic, not a benchmark:
// patterns in one database share passes.
void rank_hs(const std::vector<rules::Rule>& rs, const std::vector<std::string>& bufs, std::size_t top) {
  struct Row {
    std::size_t rule;
    double cpu;
  };
  std::vector<Row> rows;
  double total = 0;
  std::vector<const std::string*> ascii;
  for (const auto& b : bufs)
    if (std::none_of(b.begin(), b.end(), [](char ch) { return static_cast<unsigned char>(ch) >= 0x80; })) ascii.push_back(&b);
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const auto& r = rs[i];
    if (r.pattern.size() > 2000) continue;
    std::string p = rules::search_form(r.pattern, r.flags);
    if (r.flags.find('x') != std::string::npos) p = "(?x)" + p;
    unsigned f = HS_FLAG_SINGLEMATCH;
    if (r.flags.find('i') != std::string::npos) f |= HS_FLAG_CASELESS;
    if (r.flags.find('s') != std::string::npos) f |= HS_FLAG_DOTALL;
    if (r.flags.find('m') != std::string::npos) f |= HS_FLAG_MULTILINE;
    hs_database_t* db = nullptr;
    hs_compile_error_t* err = nullptr;
    if (hs_compile(p.c_str(), f, HS_MODE_BLOCK, nullptr, &db, &err) != HS_SUCCESS) {
      if (err) hs_free_compile_error(err);
      err = nullptr;
      if (hs_compile(p.c_str(), f | HS_FLAG_PREFILTER, HS_MODE_BLOCK, nullptr, &db, &err) != HS_SUCCESS) {
        if (err) hs_free_compile_error(err);
        continue;
      }
    }
    hs_scratch_t* scratch = nullptr;
    hs_alloc_scratch(db, &scratch);
    const double c0 = cpu_now();
    for (const auto* b : ascii) {
      hs_scan(db, b->data(), static_cast<unsigned>(b->size()), 0, scratch,
              [](unsigned, unsigned long long, unsigned long long, unsigned, void*) { return 0; }, nullptr);
    }
    const double c = cpu_now() - c0;
    total += c;
    rows.push_back({i, c});
    hs_free_scratch(scratch);
    hs_free_database(db);
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.cpu > b.cpu; });
  std::printf("rank-hs: %zu patterns alone over the %zu ASCII buffers, %.3f s CPU in all\n", rows.size(), ascii.size(),
              total);
  for (std::size_t k = 0; k < std::min(top, rows.size()); ++k) {
    const auto& r = rs[rows[k].rule];
    auto sk = rules::alnum_skeleton(rules::search_form(r.pattern, r.flags), r.flags);
    std::printf("  %-28s %8.3f s  runs %zu/%zu  %s\n", r.symbol.c_str(), rows[k].cpu, sk ? sk->pattern_run : 0,
                sk ? sk->skeleton_run : 0, sk ? sk->pattern.substr(0, 90).c_str() : "(no skeleton)");
  }
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream b;
  b << in.rdbuf();
  return b.str();
}

// Rule folders: those given, else [rules] of the config, else the default set.
std::vector<fs::path> dirs_from(const Context& ctx, const std::vector<fs::path>& given) {
  if (!given.empty()) return given;
  config::Rules r;
  if (auto cfg = config::load(ctx.config_file)) r = (*cfg)->rules;
  return rules::rule_dirs(r);
}

void print_report(const rules::CompileReport& r, std::size_t nrules) {
  std::printf("%zu rules: %zu hyperscan, %zu prefilter+pcre2, %zu pcre2 only, %zu meta, %zu other; %zu with an ASCII variant; "
              "%zu gated; %s in %.3f s",
              nrules, r.hyperscan, r.prefilter, r.pcre, r.meta, r.other, r.ascii_variants, r.gated,
              r.from_cache ? "loaded from cache" : "compiled", r.seconds);
  if (!r.from_cache) std::printf(" (%zu hs_compile_multi calls)", r.hs_compiles);
  std::printf("\n");
}

int check(const Context& ctx, const Args& args) {
  std::vector<fs::path> given(args.begin(), args.end());
  auto loaded = rules::load(dirs_from(ctx, given));
  if (!loaded) {
    std::fprintf(stderr, "%s\n", loaded.error().detail.c_str());
    return 1;
  }
  const auto n = loaded->rules.size();
  rules::CompileReport rep;
  auto set = rules::RuleSet::compile(std::move(loaded->rules), {}, &rep);
  if (!set) {
    std::fprintf(stderr, "%s\n", set.error().detail.c_str());
    return 1;
  }
  print_report(rep, n);
  std::printf("%zu scores\n", loaded->scores.size());
  return 0;
}

int scan(const Context& ctx, const Args& args) {
  std::vector<fs::path> dirs, files;
  rules::CompileOptions opts;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--dir" && i + 1 < args.size()) dirs.emplace_back(args[++i]);
    else if (args[i] == "--cache" && i + 1 < args.size()) opts.cache_dir = args[++i];
    else files.emplace_back(args[i]);
  }
  if (files.empty()) return usage();
  auto loaded = rules::load(dirs_from(ctx, dirs));
  if (!loaded) {
    std::fprintf(stderr, "%s\n", loaded.error().detail.c_str());
    return 1;
  }
  auto set = rules::RuleSet::compile(std::move(loaded->rules), opts);
  if (!set) {
    std::fprintf(stderr, "%s\n", set.error().detail.c_str());
    return 1;
  }
  for (const auto& f : files) {
    std::string msg = read_file(f);
    auto hits = (*set)->scan(filters::rules::make_input(msg));
    if (!hits) {
      std::fprintf(stderr, "%s: %s\n", f.c_str(), hits.error().detail.c_str());
      return 1;
    }
    std::printf("%s:", f.c_str());
    for (const auto* r : *hits) std::printf(" %s", r->symbol.c_str());
    std::printf("\n");
  }
  return 0;
}

int import_sa(Args args) {
  int score_set = rules::kDefaultScoreSet;
  if (args.size() == 4 && args[2] == "--score-set" && args[3].size() == 1 && args[3][0] >= '0' && args[3][0] <= '3') {
    score_set = args[3][0] - '0';
    args.resize(2);
  }
  if (args.size() != 2) return usage();
  auto imp = rules::import_sa_dir(args[0], score_set);
  if (!imp) {
    std::fprintf(stderr, "%s\n", imp.error().detail.c_str());
    return 1;
  }
  fs::path out(args[1]);
  std::error_code ec;
  fs::create_directories(out, ec);
  std::string header = "# Converted by `moatctl rules import-sa " + args[0] + "` from " + std::to_string(imp->files) +
                       " SpamAssassin files, score set " + std::to_string(score_set) + ".\n";
  std::ofstream(out / "sa.rules", std::ios::binary) << header << rules::to_text(imp->rules);
  std::ofstream scores(out / "sa.scores", std::ios::binary);
  scores << header;
  for (const auto& [s, v] : imp->scores) scores << s << ' ' << v << '\n';
  std::ofstream(out / "sa-not-converted.txt", std::ios::binary) << [&] {
    std::string t;
    for (const auto& s : imp->skipped) t += s + "\n";
    return t;
  }();
  std::size_t total = 0;
  for (const auto& [k, n] : imp->converted_by_type) total += n;
  std::printf("converted %zu rules from %zu files:", total, imp->files);
  for (const auto& [k, n] : imp->converted_by_type) std::printf(" %s %zu", k.c_str(), n);
  std::printf("\nnot converted %zu (listed in %s):\n", imp->skipped.size(), (out / "sa-not-converted.txt").c_str());
  for (const auto& [why, n] : imp->skipped_by_reason) std::printf("  %6zu  %s\n", n, why.c_str());
  std::printf("scores: %zu\n", imp->scores.size());
  return 0;
}

// ---- bench ----

int bench(const Context& ctx, const Args& args) {
  std::vector<fs::path> dirs, corpora;
  std::size_t limit = 0;
  std::string cls_name = "body";
  bool run_pcre = true;
  bool gates = true;
  std::size_t per_rule = 0, rank = 0;
  fs::path keep_cache;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--dir" && i + 1 < args.size()) dirs.emplace_back(args[++i]);
    else if (args[i] == "--corpus" && i + 1 < args.size()) corpora.emplace_back(args[++i]);
    else if (args[i] == "--limit" && i + 1 < args.size()) limit = std::stoul(args[++i]);
    else if (args[i] == "--class" && i + 1 < args.size()) cls_name = args[++i];
    else if (args[i] == "--no-pcre") run_pcre = false;
    else if (args[i] == "--no-gates") gates = false;
    else if (args[i] == "--rank-hs" && i + 1 < args.size()) rank = std::stoul(args[++i]);
    else if (args[i] == "--per-rule" && i + 1 < args.size()) per_rule = std::stoul(args[++i]);
    else if (args[i] == "--cache" && i + 1 < args.size()) keep_cache = args[++i];
    else return usage();
  }
  rules::RuleClass cls = cls_name == "rawbody" ? rules::RuleClass::RawBody
                         : cls_name == "full"  ? rules::RuleClass::Full
                                               : rules::RuleClass::Body;
  if (corpora.empty()) return usage();
  auto loaded = rules::load(dirs_from(ctx, dirs));
  if (!loaded) {
    std::fprintf(stderr, "%s\n", loaded.error().detail.c_str());
    return 1;
  }
  // Only the regex rules of the class: both engines run exactly these.
  std::vector<rules::Rule> picked;
  for (auto& r : loaded->rules)
    if (r.cls == cls && (limit == 0 || picked.size() < limit)) picked.push_back(r);

  // Messages, decoded once; the buffer each engine scans is the same.
  std::vector<std::string> bufs;
  std::size_t bytes = 0, raw_bytes = 0;
  for (const auto& dir : corpora) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::string msg = read_file(f);
      raw_bytes += msg.size();
      auto in = filters::rules::make_input(msg);
      std::string b = cls == rules::RuleClass::Body ? in.body : cls == rules::RuleClass::RawBody ? in.rawbody : msg;
      bytes += b.size();
      bufs.push_back(std::move(b));
    }
  }
  std::printf("corpus: %zu messages, %.1f MB raw, %.1f MB scanned (%s)\n", bufs.size(), raw_bytes / 1e6, bytes / 1e6,
              cls_name.c_str());
  if (rank) {
    rank_hs(picked, bufs, rank);
    return 0;
  }

  // --cache DIR keeps the compiled set for the next run (the first compile
  // of SpamAssassin's rules takes minutes); without it a temporary folder.
  fs::path cache = keep_cache.empty() ? fs::temp_directory_path() / ("moat-rules-bench-" + std::to_string(::getpid()))
                                      : keep_cache;
  rules::CompileOptions opts;
  opts.cache_dir = cache;
  opts.gates = gates;
  rules::CompileReport rep;
  auto t0 = Clock::now();
  auto set = rules::RuleSet::compile(picked, opts, &rep);
  if (!set) {
    std::fprintf(stderr, "%s\n", set.error().detail.c_str());
    return 1;
  }
  std::printf("compile: ");
  print_report(rep, picked.size());
  rules::CompileReport rep2;
  auto set2 = rules::RuleSet::compile(picked, opts, &rep2);
  std::printf("reload:  ");
  print_report(rep2, picked.size());
  (void)t0;
  if (keep_cache.empty()) fs::remove_all(cache);

  // moat: one scan per message.
  std::vector<std::size_t> hits_moat(picked.size(), 0);
  // Every (message, rule) verdict, for the oracle below.
  std::vector<std::vector<std::uint8_t>> verdict_moat;
  verdict_moat.reserve(bufs.size());
  auto t = Clock::now();
  double cpu = cpu_now();
  for (const auto& b : bufs) {
    rules::Input in;
    if (cls == rules::RuleClass::Body) in.body = b;
    else if (cls == rules::RuleClass::RawBody) in.rawbody = b;
    else in.full = b;
    auto v = (*set)->evaluate(in);
    if (!v) {
      std::fprintf(stderr, "%s\n", v.error().detail.c_str());
      return 1;
    }
    std::vector<std::uint8_t> row(v->size());
    for (std::size_t i = 0; i < v->size(); ++i) {
      hits_moat[i] += (*v)[i] != 0;
      row[i] = (*v)[i] != 0;
    }
    verdict_moat.push_back(std::move(row));
  }
  double secs = since(t);
  double cpu_secs = cpu_now() - cpu;
  std::printf("moat rules:           %8.2f s  %8.2f MB/s   (cpu %.2f s, %.2f MB/s)\n", secs, bytes / 1e6 / secs, cpu_secs,
              bytes / 1e6 / cpu_secs);
  // The per-rule costs come from a second pass: timing each PCRE2 call
  // would slow the measured one.
  rules::ScanCost cost;
  if (per_rule)
    for (const auto& b : bufs) {
      rules::Input in;
      if (cls == rules::RuleClass::Body) in.body = b;
      else if (cls == rules::RuleClass::RawBody) in.rawbody = b;
      else in.full = b;
      (void)(*set)->evaluate(in, &cost);
    }
  if (!run_pcre) {
    if (per_rule) print_per_rule((*set)->rules(), **set, cost, {}, per_rule);
    return 0;
  }

  // PCRE2-JIT, one pattern at a time over each message: the baseline.
  std::vector<pcre2_code*> codes;
  const auto& rs = (*set)->rules();
  for (const auto& r : rs) {
    int err = 0;
    PCRE2_SIZE off = 0;
    std::uint32_t f = 0;
    if (r.flags.find('i') != std::string::npos) f |= PCRE2_CASELESS;
    if (r.flags.find('s') != std::string::npos) f |= PCRE2_DOTALL;
    if (r.flags.find('m') != std::string::npos) f |= PCRE2_MULTILINE;
    if (r.flags.find('x') != std::string::npos) f |= PCRE2_EXTENDED;
    auto* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(r.pattern.data()), r.pattern.size(), f, &err, &off, nullptr);
    if (c) pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
    codes.push_back(c);
  }
  std::vector<std::size_t> hits_pcre(rs.size(), 0);
  std::size_t pairs_differ = 0;
  pcre2_match_context* mc = pcre2_match_context_create(nullptr);
  pcre2_set_match_limit(mc, rules::kPcreMatchLimit);
  // One match block for all: the baseline pays for matching, not allocation.
  auto* md = pcre2_match_data_create(1, nullptr);
  std::vector<double> base_ns(per_rule ? codes.size() : 0, 0.0);
  t = Clock::now();
  cpu = cpu_now();
  for (const auto& b : bufs) {
    for (std::size_t i = 0; i < codes.size(); ++i) {
      if (!codes[i]) continue;
      const auto t0 = per_rule ? Clock::now() : Clock::time_point{};
      int rc = pcre2_match(codes[i], reinterpret_cast<PCRE2_SPTR>(b.data()), b.size(), 0, 0, md, mc);
      if (per_rule) base_ns[i] += std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
      hits_pcre[i] += rc >= 0;
      pairs_differ += (rc >= 0) != (verdict_moat[std::size_t(&b - bufs.data())][i] != 0);
    }
  }
  double psecs = since(t);
  double pcpu_secs = cpu_now() - cpu;
  pcre2_match_data_free(md);
  pcre2_match_context_free(mc);
  for (auto* c : codes) pcre2_code_free(c);
  std::printf("pcre2-jit one by one: %8.2f s  %8.2f MB/s   (cpu %.2f s, %.2f MB/s)\n", psecs, bytes / 1e6 / psecs,
              pcpu_secs, bytes / 1e6 / pcpu_secs);
  std::printf("speed-up: %.1fx (cpu %.1fx)\n", psecs / secs, pcpu_secs / cpu_secs);
  if (per_rule) print_per_rule(rs, **set, cost, base_ns, per_rule);
  // The oracle: both engines must agree on every rule's hit count.
  std::size_t differ = 0;
  for (std::size_t i = 0; i < rs.size(); ++i)
    if (hits_moat[i] != hits_pcre[i]) {
      if (++differ <= 10)
        std::printf("  differs: %s moat %zu pcre2 %zu\n", rs[i].symbol.c_str(), hits_moat[i], hits_pcre[i]);
    }
  std::size_t total = 0;
  for (auto h : hits_pcre) total += h;
  std::printf("hits: %zu rule-message pairs; rules where the engines differ: %zu; rule-message pairs that differ: %zu\n",
              total, differ, pairs_differ);
  return differ == 0 && pairs_differ == 0 ? 0 : 1;
}

}  // namespace

int rules_cmd(const Context& ctx, const Args& args) {
  if (args.empty()) return usage();
  Args rest(args.begin() + 1, args.end());
  if (args[0] == "check") return check(ctx, rest);
  if (args[0] == "scan") return scan(ctx, rest);
  if (args[0] == "import-sa") return import_sa(rest);
  if (args[0] == "bench") return bench(ctx, rest);
  return usage();
}

}  // namespace moat::ctl

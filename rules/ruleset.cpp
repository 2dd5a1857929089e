// Rule set compiler and scanner (see ruleset.hpp). The Hyperscan and PCRE2
// C APIs are wrapped here and nowhere else.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "rules/ruleset.hpp"

#include "rules/ascii_variant.hpp"
#include "rules/skeleton.hpp"

#include <hs/hs.h>
#include <openssl/evp.h>
#include <pcre2.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <system_error>
#include <thread>
#include <unistd.h>

namespace moat::rules {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kCacheMagic = "MOATRS05";

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) out += {kHex[md[i] >> 4], kHex[md[i] & 15]};
  return out;
}

unsigned hs_flags(const Rule& r) {
  unsigned f = HS_FLAG_SINGLEMATCH;
  if (r.flags.find('i') != std::string::npos) f |= HS_FLAG_CASELESS;
  if (r.flags.find('s') != std::string::npos) f |= HS_FLAG_DOTALL;
  if (r.flags.find('m') != std::string::npos) f |= HS_FLAG_MULTILINE;
  return f;
}

// Hyperscan has no flag for /x; the inline option does the same.
std::string hs_pattern(const Rule& r, const std::string& pattern) {
  return r.flags.find('x') != std::string::npos ? "(?x)" + pattern : pattern;
}

std::uint32_t pcre_flags(const Rule& r) {
  std::uint32_t f = 0;
  if (r.flags.find('i') != std::string::npos) f |= PCRE2_CASELESS;
  if (r.flags.find('s') != std::string::npos) f |= PCRE2_DOTALL;
  if (r.flags.find('m') != std::string::npos) f |= PCRE2_MULTILINE;
  if (r.flags.find('x') != std::string::npos) f |= PCRE2_EXTENDED;
  return f;
}

std::string where(const Rule& r) { return r.file + ":" + std::to_string(r.line) + ": rule " + r.symbol + ": "; }

bool hs_accepts(const std::string& pattern, unsigned flags) {
  hs_expr_info_t* info = nullptr;
  hs_compile_error_t* err = nullptr;
  hs_error_t rc = hs_expression_info(pattern.c_str(), flags, &info, &err);
  if (err) hs_free_compile_error(err);
  bool ok = rc == HS_SUCCESS && info;
  // A pattern that can match the empty string would hit every buffer;
  // leave it to PCRE2, which gives it exactly the semantics it asks for.
  if (ok && info->min_width == 0) ok = false;
  std::free(info);
  return ok;
}

}  // namespace

std::optional<std::string> check_pattern(const Rule& r) {
  int errcode = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(r.pattern.data()), r.pattern.size(), pcre_flags(r),
                                   &errcode, &off, nullptr);
  if (code) {
    pcre2_code_free(code);
    return std::nullopt;
  }
  PCRE2_UCHAR msg[256];
  pcre2_get_error_message(errcode, msg, sizeof msg);
  return std::string(reinterpret_cast<char*>(msg)) + " at offset " + std::to_string(off);
}

bool is_heavy(std::string_view p, std::size_t heavy_length) {
  if (p.size() > heavy_length) return true;
  // Multiply bounded repeat maxima along the pattern: "(?:[a-z]\W{0,3}){10}"
  // gives 30. Nesting is not tracked; a product over the whole pattern
  // overestimates, which only costs a PCRE2 confirmation.
  std::uint64_t product = 1;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\') {
      ++i;
      continue;
    }
    if (p[i] != '{') continue;
    std::size_t j = i + 1;
    unsigned lo = 0, hi = 0;
    bool digits = false;
    while (j < p.size() && std::isdigit(static_cast<unsigned char>(p[j]))) lo = std::min(lo * 10 + unsigned(p[j++] - '0'), 100000u), digits = true;
    hi = lo;
    if (j < p.size() && p[j] == ',') {
      ++j;
      hi = 0;
      bool any = false;
      while (j < p.size() && std::isdigit(static_cast<unsigned char>(p[j]))) hi = std::min(hi * 10 + unsigned(p[j++] - '0'), 100000u), any = true;
      if (!any) hi = lo;  // {m,}: unbounded after m, cheap for Hyperscan
    }
    if (!digits || j >= p.size() || p[j] != '}') continue;
    if (hi > 1) product = std::min<std::uint64_t>(product * hi, 1u << 30);
    i = j;
  }
  return product > kHeavyRepeat;
}

// ---- building ----

Result<std::shared_ptr<const RuleSet>> RuleSet::compile(std::vector<Rule> rules, const CompileOptions& opts,
                                                        CompileReport* report) {
  CompileReport local;
  CompileReport& rep = report ? *report : local;
  rep = {};
  auto start = std::chrono::steady_clock::now();
  std::shared_ptr<RuleSet> set(new RuleSet());
  set->rules_ = std::move(rules);
  if (auto st = set->prepare(opts, rep); !st) return st.error();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return std::shared_ptr<const RuleSet>(std::move(set));
}

RuleSet::~RuleSet() {
  if (match_ctx_) pcre2_match_context_free(match_ctx_);
  for (auto& u : units_)
    if (u.code) pcre2_code_free(u.code);
  for (auto& per_class : db_)
    for (auto* d : per_class)
      if (d) hs_free_database(d);
  if (stream_db_) hs_free_database(stream_db_);
  for (auto* d : gate_db_)
    if (d) hs_free_database(d);
  for (auto* s : scratch_pool_) hs_free_scratch(s);
  if (proto_scratch_) hs_free_scratch(proto_scratch_);
}

namespace {

pcre2_code* pcre_compile(std::string_view pattern, const Rule& r, std::string* error) {
  int errcode = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), pcre_flags(r), &errcode,
                                   &off, nullptr);
  if (!code && error) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(errcode, msg, sizeof msg);
    *error = "bad pattern at offset " + std::to_string(off) + ": " + reinterpret_cast<char*>(msg);
  }
  return code;
}

}  // namespace

Status RuleSet::prepare(const CompileOptions& opts, CompileReport& rep) {
  // PCRE2 first: it is the reference syntax (Perl), so a rule it rejects is
  // an error in the rule, whatever Hyperscan thinks.
  std::string errors;
  std::vector<Rule> kept;
  for (auto& r : rules_) {
    if (r.cls != RuleClass::Meta && !r.exists) {
      std::string why;
      pcre2_code* code = pcre_compile(r.pattern, r, &why);
      if (!code) {
        std::string e = where(r) + why;
        if (opts.lenient) rep.dropped.push_back(e);
        else errors += e + "\n";
        continue;
      }
      pcre2_code_free(code);
    }
    kept.push_back(std::move(r));
  }
  rules_ = std::move(kept);
  if (!errors.empty()) {
    errors.pop_back();
    return Error{Errc::Invalid, errors};
  }

  // Meta rules: resolve names, order inputs first, refuse cycles. In lenient
  // mode a meta naming a dropped rule is dropped too (repeat until stable).
  for (bool again = true; again;) {
    again = false;
    std::map<std::string, std::uint32_t, std::less<>> index;
    for (std::uint32_t i = 0; i < rules_.size(); ++i) index.emplace(rules_[i].symbol, i);
    meta_.assign(rules_.size(), MetaExpr{});
    for (std::uint32_t i = 0; i < rules_.size(); ++i) {
      auto& r = rules_[i];
      if (r.cls != RuleClass::Meta) continue;
      auto m = MetaExpr::compile(r.expr, [&](std::string_view s) -> std::optional<std::uint32_t> {
        auto it = index.find(s);
        if (it == index.end()) return std::nullopt;
        return it->second;
      });
      if (!m) {
        std::string e = where(r) + m.error().detail;
        if (!opts.lenient) {
          errors += e + "\n";
          continue;
        }
        rep.dropped.push_back(e);
        rules_.erase(rules_.begin() + i);
        again = true;
        break;
      }
      meta_[i] = std::move(*m);
    }
  }
  if (!errors.empty()) {
    errors.pop_back();
    return Error{Errc::Invalid, errors};
  }
  // Topological order of metas (depth-first; 1 = visiting, 2 = done).
  std::vector<std::uint8_t> mark(rules_.size(), 0);
  std::string cycle;
  std::function<bool(std::uint32_t, unsigned)> visit = [&](std::uint32_t i, unsigned depth) {
    if (rules_[i].cls != RuleClass::Meta || mark[i] == 2) return true;
    if (mark[i] == 1 || depth > 1000) {
      cycle = where(rules_[i]) + "meta rules refer to each other in a loop";
      return false;
    }
    mark[i] = 1;
    for (auto in : meta_[i].inputs())
      if (!visit(in, depth + 1)) return false;
    mark[i] = 2;
    meta_order_.push_back(i);
    return true;
  };
  for (std::uint32_t i = 0; i < rules_.size(); ++i)
    if (!visit(i, 0)) return Error{Errc::Invalid, cycle};

  for (const auto& r : rules_)
    if (r.cls != RuleClass::Meta) needs_ |= class_bit(r.cls);

  // Header keys.
  key_of_.assign(rules_.size(), -1);
  for (std::uint32_t i = 0; i < rules_.size(); ++i) {
    const auto& r = rules_[i];
    if (r.cls != RuleClass::Header) continue;
    std::pair<std::string, std::string> k{r.header, r.modifier};
    auto it = std::find(header_keys_.begin(), header_keys_.end(), k);
    key_of_[i] = static_cast<int>(it - header_keys_.begin());
    if (it == header_keys_.end()) header_keys_.push_back(std::move(k));
  }

  if (auto st = make_units(); !st) return st;
  choose_gates(opts);

  std::string text;
  for (const auto& r : rules_) text += to_text(r);
  hash_ = sha256_hex(text + "\n" + hs_version() + "\n" + std::string(kCacheMagic) + std::to_string(opts.heavy_length) +
                     (opts.gates ? "+gates3" : ""));

  fs::path cache_file;
  if (!opts.cache_dir.empty()) cache_file = opts.cache_dir / ("rules-" + hash_.substr(0, 32) + ".hsdb");
  rep.cache_file = cache_file.string();
  if (!cache_file.empty() && load_cache(cache_file)) {
    rep.from_cache = true;
  } else {
    if (auto st = build_databases(opts, rep); !st) return st;
    if (!cache_file.empty()) save_cache(cache_file);
  }

  // PCRE2 code is kept (and JIT-compiled) only where it runs.
  engines_.assign(rules_.size(), Engine::None);
  ascii_engines_.assign(rules_.size(), Engine::None);
  for (std::uint32_t u = 0; u < units_.size(); ++u) {
    auto& unit = units_[u];
    const auto cls = static_cast<std::size_t>(rules_[unit.rule].cls);
    if (unit.engine == Engine::Pcre) pcre_only_[cls][static_cast<int>(unit.group)].push_back(u);
    if (unit.engine == Engine::Pcre || unit.engine == Engine::Prefilter || unit.engine == Engine::Gated) {
      pcre2_jit_compile(unit.code, PCRE2_JIT_COMPLETE);  // failure is fine: the interpreter runs it
    } else if (unit.code) {
      pcre2_code_free(unit.code);
      unit.code = nullptr;
    }
    (unit.group == Group::Ascii ? ascii_engines_ : engines_)[unit.rule] = unit.engine;
    unit_rule_.push_back(unit.rule);
    unit_engine_.push_back(unit.engine);
  }
  for (std::uint32_t i = 0; i < rules_.size(); ++i) {
    switch (engines_[i]) {
      case Engine::Hyperscan: ++rep.hyperscan; break;
      case Engine::Prefilter: ++rep.prefilter; break;
      case Engine::Pcre: ++rep.pcre; break;
      case Engine::None: rules_[i].cls == RuleClass::Meta ? ++rep.meta : ++rep.other; break;
      case Engine::Gated: break;  // only ASCII units are gated
    }
    if (ascii_engines_[i] == Engine::Gated) ++rep.gated;
    else if (ascii_engines_[i] != Engine::None) ++rep.ascii_variants;
  }
  for (auto& per_class : db_)
    for (auto* d : per_class) {
      if (!d) continue;
      if (hs_alloc_scratch(d, &proto_scratch_) != HS_SUCCESS) return Error{Errc::Invalid, "hs_alloc_scratch failed"};
    }
  if (stream_db_ && hs_alloc_scratch(stream_db_, &proto_scratch_) != HS_SUCCESS)
    return Error{Errc::Invalid, "hs_alloc_scratch failed"};
  for (auto* d : gate_db_)
    if (d && hs_alloc_scratch(d, &proto_scratch_) != HS_SUCCESS) return Error{Errc::Invalid, "hs_alloc_scratch failed"};
  rep.full_stream = stream_db_ != nullptr;
  // The limits bound backtracking on hostile input (e.g. nested repeats).
  match_ctx_ = pcre2_match_context_create(nullptr);
  pcre2_set_match_limit(match_ctx_, kPcreMatchLimit);
  pcre2_set_depth_limit(match_ctx_, kPcreMatchLimit / 10);
  return {};
}

// Units: each regex rule as written; a rule with an ASCII variant runs as
// written only on buffers with high bytes and as the variant on the rest.
Status RuleSet::make_units() {
  for (std::uint32_t i = 0; i < rules_.size(); ++i) {
    const auto& r = rules_[i];
    if (r.cls == RuleClass::Meta || r.exists) continue;
    // What runs is the search form: the rules only ask whether a pattern
    // matches, not where (ascii_variant.hpp).
    std::string pattern = search_form(r.pattern, r.flags);
    pcre2_code* code = pcre_compile(pattern, r, nullptr);
    if (!code) {
      pattern = r.pattern;
      code = pcre_compile(pattern, r, nullptr);
    }
    if (!code) return Error{Errc::Invalid, where(r) + "PCRE2 refused a pattern it accepted before"};
    Unit full{i, Group::Any, Engine::None, pattern, code, {}, 0};
    const AsciiVariant v = ascii_variant(pattern, r.flags);
    // A variant only pays when it is much smaller: otherwise the rule would
    // be compiled twice (the __FILL_THIS_FORM_* rules, each seconds to
    // compile, lose only a byte or two).
    const bool split = v.kind == AsciiVariant::Kind::Reduced && v.pattern.size() * 2 < pattern.size();
    pcre2_code* reduced = split ? pcre_compile(v.pattern, r, nullptr) : nullptr;
    if (v.kind == AsciiVariant::Kind::Never) {
      full.group = Group::High;
    } else if (reduced) {
      full.group = Group::High;
      units_.push_back(Unit{i, Group::Ascii, Engine::None, v.pattern, reduced, {}, 0});
    }
    units_.push_back(std::move(full));
  }
  return {};
}

Status RuleSet::build_databases(const CompileOptions& opts, CompileReport& rep) {
  for (auto& u : units_) {
    if (u.engine == Engine::Gated) continue;
    const auto& r = rules_[u.rule];
    const auto pat = hs_pattern(r, u.pattern);
    // Very long patterns (SpamAssassin's replace_tag expansions: thousands of
    // bytes of alternations with lookaheads) take seconds each to compile in
    // either Hyperscan mode and make the whole database slow to build; PCRE2
    // runs them directly.
    if (u.pattern.size() > opts.heavy_length) {
      u.engine = Engine::Pcre;
      continue;
    }
    const bool heavy = is_heavy(u.pattern, opts.heavy_length);
    if (!heavy && hs_accepts(pat, hs_flags(r))) u.engine = Engine::Hyperscan;
    else if (hs_accepts(pat, hs_flags(r) | HS_FLAG_PREFILTER)) u.engine = Engine::Prefilter;
    else u.engine = Engine::Pcre;
  }
  // The databases are independent: compile them side by side (the big one
  // of a class dominates, but the three groups of the body class overlap).
  struct Job {
    int cls, group;
    std::size_t compiles = 0;
    Status status;
  };
  bool used[kClassCount][kGroups] = {};
  for (const auto& u : units_) used[static_cast<int>(rules_[u.rule].cls)][static_cast<int>(u.group)] = true;
  std::vector<Job> jobs;
  for (int c = 0; c < kClassCount; ++c)
    for (int g = 0; g < kGroups; ++g)
      if (used[c][g]) jobs.push_back(Job{c, g, 0, {}});
  std::vector<std::thread> threads;
  for (auto& j : jobs) {
    try {
      threads.emplace_back([this, &j] { j.status = build_database(j.cls, j.group, j.compiles); });
    } catch (const std::system_error&) {
      j.status = build_database(j.cls, j.group, j.compiles);  // no thread to be had: compile here
    }
  }
  for (auto& t : threads) t.join();
  for (auto& j : jobs) {
    rep.hs_compiles += j.compiles;
    if (!j.status) return j.status;
  }
  // ASCII units left to PCRE2 alone run behind their skeleton instead.
  for (auto& u : units_)
    if (u.engine == Engine::Pcre && u.group == Group::Ascii && !u.gate.empty()) u.engine = Engine::Gated;
  for (int c = 0; c < kClassCount; ++c)
    if (auto st = build_gate_database(c, opts, rep.hs_compiles); !st) return st;
  // After the block databases: they settle each unit's engine.
  build_stream_database(rep.hs_compiles);
  return {};
}

RuleSet::HsBuild RuleSet::compile_units(const std::function<bool(const Unit&)>& pick, unsigned mode) const {
  std::vector<std::string> pats;
  std::vector<unsigned> flags, ids;
  for (std::uint32_t u = 0; u < units_.size(); ++u) {
    const auto& unit = units_[u];
    if (unit.engine != Engine::Hyperscan && unit.engine != Engine::Prefilter) continue;
    if (!pick(unit)) continue;
    const auto& r = rules_[unit.rule];
    pats.push_back(hs_pattern(r, unit.pattern));
    flags.push_back(hs_flags(r) | (unit.engine == Engine::Prefilter ? HS_FLAG_PREFILTER : 0));
    ids.push_back(u);
  }
  HsBuild out;
  if (pats.empty()) return out;
  out.ran = true;
  std::vector<const char*> ptrs;
  for (auto& p : pats) ptrs.push_back(p.c_str());
  hs_compile_error_t* err = nullptr;
  if (hs_compile_multi(ptrs.data(), flags.data(), ids.data(), static_cast<unsigned>(ptrs.size()), mode, nullptr,
                       &out.db, &err) != HS_SUCCESS) {
    out.db = nullptr;
    out.error = err && err->message ? err->message : "unknown error";
    if (err && err->expression >= 0) out.refused = long(ids[static_cast<std::size_t>(err->expression)]);
  }
  if (err) hs_free_compile_error(err);
  return out;
}

// The full class in stream mode: every Hyperscan and Prefilter unit of all
// three groups, so the hits of the group the message turns out to need (known
// only at the end) are there. All or nothing: if Hyperscan refuses any of
// them in stream mode, the set has no stream and end of data block-scans.
void RuleSet::build_stream_database(std::size_t& compiles) {
  HsBuild b = compile_units([this](const Unit& u) { return rules_[u.rule].cls == RuleClass::Full; }, HS_MODE_STREAM);
  compiles += b.ran;
  stream_db_ = b.db;
}

// ---- skeleton gates (rules/skeleton.hpp, docs/rules.md "Skeleton gates") ----

namespace {

// A gate pays when the skeleton has a literal of 3+ bytes for Hyperscan to
// anchor on and the pattern as written has none: then the rule leaves the
// every-buffer database, where it costs a pass of its own, for a cheap
// literal match on the squeezed buffer. A pattern with a literal of its own
// is cheap in Hyperscan already.
bool worth_gating(const Skeleton& sk) { return sk.skeleton_run >= 3 && sk.pattern_run < 3; }

}  // namespace

// Body and rawbody rules only (one buffer each per message; header, uri and
// full buffers are small or streamed), when the skeleton has the literal the
// pattern lacks, or the pattern is too long for Hyperscan. The unit that runs
// on ASCII buffers (the ASCII variant, else the rule as written, which is
// then split into a High unit as written and an Ascii unit behind the gate)
// becomes Gated. Other ASCII units keep their skeleton in `gate`: if
// Hyperscan then refuses them (build_databases), the gate is cheaper than
// PCRE2 on every buffer. All of this depends on the rules only, so a cache
// file's unit list matches.
void RuleSet::choose_gates(const CompileOptions& opts) {
  if (!opts.gates) return;
  const std::size_t n = units_.size();
  for (std::size_t u = 0; u < n; ++u) {
    const auto cls = rules_[units_[u].rule].cls;
    if (cls != RuleClass::Body && cls != RuleClass::RawBody) continue;
    if (units_[u].group == Group::High) continue;
    const auto& r = rules_[units_[u].rule];
    auto sk = alnum_skeleton(units_[u].pattern, r.flags);
    // Skeletons have no lookarounds and no counted repeats, so Hyperscan
    // compiles them far faster than patterns of the same length
    // (__YOUR_PASSWORD's, 2.9 KB: 0.16 s alone); twice the length cut still
    // bounds the compile time.
    if (!sk || sk->pattern.size() > 2 * opts.heavy_length) continue;
    if (!worth_gating(*sk) && units_[u].pattern.size() <= opts.heavy_length) {
      if (units_[u].group == Group::Ascii) {
        units_[u].gate = std::move(sk->pattern);  // a gate if Hyperscan refuses the unit
        units_[u].max_width = sk->max_width;
      }
      continue;
    }
    if (units_[u].group == Group::Any) {
      pcre2_code* copy = pcre_compile(units_[u].pattern, r, nullptr);
      if (!copy) continue;
      units_[u].group = Group::High;
      units_.push_back(Unit{units_[u].rule, Group::Ascii, Engine::None, units_[u].pattern, copy, {}, 0});
      auto& g = units_.back();
      g.engine = Engine::Gated;
      g.gate = std::move(sk->pattern);
      g.max_width = sk->max_width;
    } else {
      units_[u].engine = Engine::Gated;
      units_[u].gate = std::move(sk->pattern);
      units_[u].max_width = sk->max_width;
    }
  }
}

// One database of the class's gates, compiled without SINGLEMATCH: the scan
// keeps the earliest end of each gate's matches. A unit whose gate Hyperscan
// refuses (none of SpamAssassin's) runs on PCRE2 alone: the other databases
// are built by then.
Status RuleSet::build_gate_database(int c, const CompileOptions&, std::size_t& compiles) {
  for (;;) {
    std::vector<std::string> pats;
    std::vector<unsigned> flags, ids;
    for (std::uint32_t u = 0; u < units_.size(); ++u) {
      const auto& unit = units_[u];
      if (unit.engine != Engine::Gated || static_cast<int>(rules_[unit.rule].cls) != c) continue;
      pats.push_back(unit.gate);
      flags.push_back(hs_flags(rules_[unit.rule]) & ~unsigned(HS_FLAG_SINGLEMATCH));
      ids.push_back(u);
    }
    if (pats.empty()) return {};
    std::vector<const char*> ptrs;
    for (auto& p : pats) ptrs.push_back(p.c_str());
    hs_compile_error_t* err = nullptr;
    hs_database* db = nullptr;
    ++compiles;
    const hs_error_t rc = hs_compile_multi(ptrs.data(), flags.data(), ids.data(), static_cast<unsigned>(ptrs.size()),
                                           HS_MODE_BLOCK, nullptr, &db, &err);
    if (rc == HS_SUCCESS) {
      if (err) hs_free_compile_error(err);
      gate_db_[c] = db;
      return {};
    }
    const long refused = err && err->expression >= 0 ? long(ids[static_cast<std::size_t>(err->expression)]) : -1;
    std::string why = err && err->message ? err->message : "unknown error";
    if (err) hs_free_compile_error(err);
    if (refused < 0) return Error{Errc::Invalid, "hyperscan: skeleton gates: " + why};
    units_[static_cast<std::size_t>(refused)].engine = Engine::Pcre;
  }
}

// One (class, group) database. hs_compile_multi names the first expression
// it refuses; that one is demoted and the database compiled again
// (expression_info does not catch everything). Only this job's units are
// touched, so jobs run in parallel.
Status RuleSet::build_database(int c, int g, std::size_t& compiles) {
  auto mine = [c, g, this](const Unit& u) {
    return static_cast<int>(rules_[u.rule].cls) == c && static_cast<int>(u.group) == g;
  };
  for (;;) {
    HsBuild b = compile_units(mine, HS_MODE_BLOCK);
    compiles += b.ran;
    if (b.error.empty()) {
      db_[c][g] = b.db;
      return {};
    }
    if (b.refused < 0)
      return Error{Errc::Invalid, std::string("hyperscan: ") + std::string(class_name(RuleClass(c))) + " rules: " + b.error};
    auto& unit = units_[static_cast<std::size_t>(b.refused)];
    unit.engine = unit.engine == Engine::Hyperscan ? Engine::Prefilter : Engine::Pcre;
  }
}

// ---- cache file: magic, unit count, one engine byte per unit, then per
// class and group a length and the hs_serialize_database bytes (0: none),
// then the same for the full class's stream database. ----

namespace {

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

bool get_u64(std::string_view& in, std::uint64_t& v) {
  if (in.size() < 8) return false;
  v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t(static_cast<unsigned char>(in[static_cast<std::size_t>(i)])) << (8 * i);
  in.remove_prefix(8);
  return true;
}

}  // namespace

void RuleSet::save_cache(const fs::path& file) const {
  std::string out(kCacheMagic);
  put_u64(out, units_.size());
  for (const auto& u : units_) out += static_cast<char>(u.engine);
  auto put_db = [&out](const hs_database* d) {
    char* bytes = nullptr;
    std::size_t len = 0;
    if (d && hs_serialize_database(d, &bytes, &len) == HS_SUCCESS) {
      put_u64(out, len);
      out.append(bytes, len);
      std::free(bytes);
    } else {
      put_u64(out, 0);
    }
  };
  for (const auto& per_class : db_)
    for (auto* d : per_class) put_db(d);
  put_db(stream_db_);
  for (auto* d : gate_db_) put_db(d);
  // Written beside and renamed, so a reader never sees half a file. A
  // cache that cannot be written only costs the next start a compile.
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  fs::path tmp = file;
  tmp += ".tmp" + std::to_string(::getpid());
  {
    std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
    o.write(out.data(), static_cast<std::streamsize>(out.size()));
    if (!o) {
      fs::remove(tmp, ec);
      return;
    }
  }
  fs::rename(tmp, file, ec);
  if (ec) fs::remove(tmp, ec);
}

bool RuleSet::load_cache(const fs::path& file) {
  std::ifstream f(file, std::ios::binary);
  if (!f) return false;
  std::ostringstream buf;
  buf << f.rdbuf();
  const std::string data = buf.str();
  std::string_view in = data;
  if (!in.starts_with(kCacheMagic)) return false;
  in.remove_prefix(kCacheMagic.size());
  std::uint64_t n = 0;
  if (!get_u64(in, n) || n != units_.size() || in.size() < n) return false;
  std::vector<Engine> engines(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto e = static_cast<unsigned char>(in[i]);
    if (e > static_cast<unsigned char>(Engine::Gated)) return false;
    if (e == static_cast<unsigned char>(Engine::Gated) && units_[i].gate.empty()) return false;
    engines[i] = static_cast<Engine>(e);
  }
  in.remove_prefix(n);
  hs_database* dbs[kClassCount][kGroups] = {};
  hs_database* stream = nullptr;
  hs_database* gates[kClassCount] = {};
  bool ok = true;
  auto get_db = [&in, &ok](hs_database** d) {
    std::uint64_t len = 0;
    if (!get_u64(in, len) || len > in.size()) ok = false;
    else if (len && hs_deserialize_database(in.data(), len, d) != HS_SUCCESS) ok = false;
    if (ok) in.remove_prefix(len);
  };
  for (int c = 0; c < kClassCount && ok; ++c)
    for (int g = 0; g < kGroups && ok; ++g) get_db(&dbs[c][g]);
  if (ok) get_db(&stream);
  for (int c = 0; c < kClassCount && ok; ++c) get_db(&gates[c]);
  if (!ok || !in.empty()) {
    for (auto& per_class : dbs)
      for (auto* d : per_class)
        if (d) hs_free_database(d);
    if (stream) hs_free_database(stream);
    for (auto* d : gates)
      if (d) hs_free_database(d);
    return false;
  }
  for (std::size_t i = 0; i < n; ++i) units_[i].engine = engines[i];
  for (int c = 0; c < kClassCount; ++c)
    for (int g = 0; g < kGroups; ++g) db_[c][g] = dbs[c][g];
  stream_db_ = stream;
  for (int c = 0; c < kClassCount; ++c) gate_db_[c] = gates[c];
  return true;
}

// ---- scanning ----

hs_scratch* RuleSet::take_scratch() const {
  {
    std::lock_guard lk(scratch_mu_);
    if (!scratch_pool_.empty()) {
      auto* s = scratch_pool_.back();
      scratch_pool_.pop_back();
      return s;
    }
  }
  hs_scratch_t* s = nullptr;
  if (proto_scratch_ && hs_clone_scratch(proto_scratch_, &s) != HS_SUCCESS) return nullptr;
  return s;
}

void RuleSet::give_scratch(hs_scratch* s) const {
  if (!s) return;
  std::lock_guard lk(scratch_mu_);
  scratch_pool_.push_back(s);
}

struct RuleSet::State {
  hs_scratch* scratch = nullptr;
  pcre2_match_data* match_data = nullptr;
  std::vector<std::uint8_t> matched;      // by rule
  std::vector<std::uint32_t> candidates;  // prefilter units
  std::string squeezed;                   // skeleton gates: the buffer's letters and digits
  std::vector<std::uint32_t> squeezed_at; // and where each came from
  std::vector<std::uint32_t> gate_end;    // by unit: end of its gate's first match in squeezed (0: none)
  ScanCost* cost = nullptr;
  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() {
    if (match_data) pcre2_match_data_free(match_data);
  }
};

namespace {

// Candidate bookkeeping of one hs_scan call.
struct ScanCtx {
  const std::vector<int>* key_of;
  int key;
  const std::uint32_t* rule_of;  // by unit
  const Engine* engine_of;       // by unit
  std::vector<std::uint8_t>* matched;
  std::vector<std::uint32_t>* candidates;
};

int on_match(unsigned unit, unsigned long long, unsigned long long, unsigned, void* p) {
  auto* c = static_cast<ScanCtx*>(p);
  const auto rule = c->rule_of[unit];
  if (c->key >= 0 && (*c->key_of)[rule] != c->key) return 0;
  if ((*c->matched)[rule]) return 0;
  if (c->engine_of[unit] == Engine::Prefilter) c->candidates->push_back(unit);
  else (*c->matched)[rule] = 1;
  return 0;
}

bool has_high_bytes(std::string_view buf) {
  // Eight bytes at a time: this runs over every buffer before the scan.
  std::size_t i = 0;
  std::uint64_t acc = 0;
  for (; i + 8 <= buf.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, buf.data() + i, 8);
    acc |= w;
  }
  for (; i < buf.size(); ++i) acc |= static_cast<unsigned char>(buf[i]);
  return (acc & 0x8080808080808080ull) != 0;
}

std::uint64_t ns_since(std::chrono::steady_clock::time_point t0) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace

bool RuleSet::pcre_match(std::uint32_t unit, std::string_view buf, State& st, std::size_t start) const {
  pcre2_code* code = units_[unit].code;
  if (!code) return false;
  // One ovector pair is enough to learn "matched"; the block is made once
  // per scan, the context (limits) once per set.
  if (!st.match_data) st.match_data = pcre2_match_data_create(1, nullptr);
  const auto t0 = st.cost ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(buf.data()), buf.size(), start, 0, st.match_data, match_ctx_);
  if (st.cost) {
    auto& c = st.cost->rules[units_[unit].rule];
    ++c.pcre_runs;
    c.pcre_ns += ns_since(t0);
  }
  if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT) limit_hits_.fetch_add(1, std::memory_order_relaxed);
  return rc >= 0;
}

Status RuleSet::scan_group(int c, int g, int key, std::string_view buf, State& st) const {
  st.candidates.clear();
  if (auto* db = db_[c][g]) {
    ScanCtx ctx{&key_of_, key, unit_rule_.data(), unit_engine_.data(), &st.matched, &st.candidates};
    const auto t0 = st.cost ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    hs_error_t rc = hs_scan(db, buf.empty() ? "" : buf.data(), static_cast<unsigned>(buf.size()), 0, st.scratch,
                            on_match, &ctx);
    if (st.cost) {
      st.cost->hs_ns += ns_since(t0);
      st.cost->hs_ns_group[g] += ns_since(t0);
    }
    if (rc != HS_SUCCESS) return Error{Errc::ScanUnavailable, "hs_scan failed: " + std::to_string(rc)};
  }
  confirm_group(c, g, key, buf, st);
  return {};
}

// After the Hyperscan pass over buf: PCRE2 confirms the prefilter candidates
// in st.candidates, then runs the group's PCRE2-only units.
void RuleSet::confirm_group(int c, int g, int key, std::string_view buf, State& st) const {
  for (auto u : st.candidates) {
    const auto rule = units_[u].rule;
    if (st.matched[rule]) continue;
    if (st.cost) ++st.cost->rules[rule].candidates;
    if (pcre_match(u, buf, st)) {
      st.matched[rule] = 1;
      if (st.cost) ++st.cost->rules[rule].confirmed;
    }
  }
  for (auto u : pcre_only_[c][g]) {
    const auto rule = units_[u].rule;
    if (st.matched[rule] || (key >= 0 && key_of_[rule] != key)) continue;
    if (pcre_match(u, buf, st)) st.matched[rule] = 1;
  }
}

Status RuleSet::scan_buffer(RuleClass cls, int key, std::string_view buf, State& st) const {
  const int c = static_cast<int>(cls);
  if (auto s = scan_group(c, static_cast<int>(Group::Any), key, buf, st); !s) return s;
  const Group g = has_high_bytes(buf) ? Group::High : Group::Ascii;
  if (auto s = scan_group(c, static_cast<int>(g), key, buf, st); !s) return s;
  if (g == Group::Ascii && gate_db_[c]) scan_gates(c, buf, st);
  return {};
}

namespace {

struct GateCtx {
  const std::uint32_t* rule_of;
  const std::vector<std::uint8_t>* matched;
  std::vector<std::uint32_t>* gate_end;  // by unit, 0: no hit yet
  std::vector<std::uint32_t>* hit;       // units with a gate hit, in order found
};

int on_gate(unsigned unit, unsigned long long, unsigned long long to, unsigned, void* p) {
  auto* c = static_cast<GateCtx*>(p);
  if ((*c->matched)[c->rule_of[unit]] || to == 0) return 0;
  auto& end = (*c->gate_end)[unit];
  if (end == 0) c->hit->push_back(unit);
  if (end == 0 || to < end) end = static_cast<std::uint32_t>(to);
  return 0;
}

}  // namespace

// The gates of an ASCII buffer: Hyperscan over its letters and digits, then
// PCRE2 for each gated unit whose skeleton matched, from the first place a
// match can start. If the pattern matches at [s, e), the skeleton matches
// the squeezed buffer at some end k+1 with s <= squeezed_at[k] < e, so the
// earliest gate end g gives squeezed_at[g-1] < e <= s + max_width: PCRE2
// starting at squeezed_at[g-1] + 1 - max_width misses nothing (and with
// lookbehinds it still sees the bytes before its start).
void RuleSet::scan_gates(int c, std::string_view buf, State& st) const {
  const auto t0 = st.cost ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  if (st.gate_end.size() != units_.size()) st.gate_end.assign(units_.size(), 0);
  std::vector<std::uint32_t> hit;
  GateCtx ctx{unit_rule_.data(), &st.matched, &st.gate_end, &hit};
  // Buffers past 4 GiB (hs_scan takes an unsigned length, squeezed_at holds
  // 32-bit offsets) count as a failed gate scan.
  hs_error_t rc = HS_INVALID;
  if (buf.size() <= 0xffffffffu) {
    squeeze_alnum(buf, st.squeezed, st.squeezed_at);
    rc = hs_scan(gate_db_[c], st.squeezed.empty() ? "" : st.squeezed.data(), static_cast<unsigned>(st.squeezed.size()),
                 0, st.scratch, on_gate, &ctx);
  }
  if (st.cost) st.cost->gate_ns += ns_since(t0);
  if (rc != HS_SUCCESS) {
    // No verdict from the gates: every gated unit runs on the whole
    // buffer, so no hit is lost.
    for (auto u : hit) st.gate_end[u] = 0;
    hit.clear();
    for (std::uint32_t u = 0; u < units_.size(); ++u)
      if (units_[u].engine == Engine::Gated && static_cast<int>(rules_[units_[u].rule].cls) == c) hit.push_back(u);
  }
  for (auto u : hit) {
    const auto rule = units_[u].rule;
    if (st.matched[rule]) {
      st.gate_end[u] = 0;
      continue;
    }
    std::size_t start = 0;
    const std::uint32_t g = st.gate_end[u];
    st.gate_end[u] = 0;  // ready for the next buffer
    if (g && units_[u].max_width != kUnbounded) {
      const std::size_t last = std::size_t(st.squeezed_at[g - 1]) + 1;
      start = last > units_[u].max_width ? last - units_[u].max_width : 0;
    }
    if (st.cost) ++st.cost->rules[rule].candidates;
    if (pcre_match(u, buf, st, start)) {
      st.matched[rule] = 1;
      if (st.cost) ++st.cost->rules[rule].confirmed;
    }
  }
}

// The full class from a closed stream: its unit hits stand in for the
// Hyperscan pass over buf, for the every-buffer group and the group buf's
// bytes pick (the stream saw the same bytes, so it knows which).
void RuleSet::scan_full_stream(const Stream& s, std::string_view buf, State& st) const {
  const int c = static_cast<int>(RuleClass::Full);
  for (const Group g : {Group::Any, s.high_ ? Group::High : Group::Ascii}) {
    st.candidates.clear();
    for (auto u : s.hits_) {
      const auto& unit = units_[u];
      if (unit.group != g || st.matched[unit.rule]) continue;
      if (unit.engine == Engine::Prefilter) st.candidates.push_back(u);
      else st.matched[unit.rule] = 1;
    }
    confirm_group(c, static_cast<int>(g), -1, buf, st);
  }
}

// ---- streaming ----

std::unique_ptr<RuleSet::Stream> RuleSet::open_stream(std::size_t max_chunks) const {
  if (!stream_db_) return nullptr;
  hs_stream_t* s = nullptr;
  if (hs_open_stream(stream_db_, 0, &s) != HS_SUCCESS) return nullptr;
  return std::unique_ptr<Stream>(new Stream(*this, s, max_chunks));
}

RuleSet::Stream::Stream(const RuleSet& set, hs_stream* s, std::size_t max_chunks)
    : set_(&set), hs_(s), hit_(set.units_.size(), 0), max_chunks_(max_chunks) {}

RuleSet::Stream::~Stream() {
  if (hs_) hs_close_stream(hs_, nullptr, nullptr, nullptr);  // no scratch: frees without reporting
}

int RuleSet::Stream::on_hit(unsigned unit, unsigned long long, unsigned long long, unsigned, void* ctx) {
  auto* self = static_cast<Stream*>(ctx);
  if (unit < self->hit_.size() && !self->hit_[unit]) {
    self->hit_[unit] = 1;
    self->hits_.push_back(unit);
  }
  return 0;
}

void RuleSet::Stream::give_up() {
  failed_ = true;
  if (hs_) hs_close_stream(hs_, nullptr, nullptr, nullptr);
  hs_ = nullptr;
}

void RuleSet::Stream::feed(std::string_view bytes) {
  if (failed_ || closed_ || bytes.empty()) return;
  if (++chunks_ > max_chunks_) return give_up();
  bytes_ += bytes.size();
  high_ = high_ || has_high_bytes(bytes);
  hs_scratch* scratch = set_->take_scratch();
  if (!scratch) return give_up();
  hs_error_t rc = HS_SUCCESS;
  // hs_scan_stream takes an unsigned length.
  constexpr std::size_t kStep = 1u << 30;
  for (std::size_t at = 0; at < bytes.size() && rc == HS_SUCCESS; at += kStep) {
    const auto part = bytes.substr(at, kStep);
    rc = hs_scan_stream(hs_, part.data(), static_cast<unsigned>(part.size()), 0, scratch, &Stream::on_hit, this);
  }
  set_->give_scratch(scratch);
  if (rc != HS_SUCCESS) give_up();
}

void RuleSet::Stream::close() {
  if (closed_ || failed_) {
    closed_ = true;
    return;
  }
  closed_ = true;
  hs_scratch* scratch = set_->take_scratch();
  if (!scratch) return give_up();
  const hs_error_t rc = hs_close_stream(hs_, scratch, &Stream::on_hit, this);
  hs_ = nullptr;
  set_->give_scratch(scratch);
  if (rc != HS_SUCCESS) failed_ = true;
}

namespace {

// The address inside <...>, or the whole value trimmed (SpamAssassin :addr).
std::string addr_of(std::string_view v) {
  auto lt = v.rfind('<');
  auto gt = v.rfind('>');
  if (lt != std::string_view::npos && gt != std::string_view::npos && gt > lt) return std::string(v.substr(lt + 1, gt - lt - 1));
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  return std::string(v);
}

// The display name before <...>, quotes removed (SpamAssassin :name).
std::string name_of(std::string_view v) {
  auto lt = v.find('<');
  if (lt == std::string_view::npos) return {};
  v = v.substr(0, lt);
  while (!v.empty() && (v.front() == ' ' || v.front() == '"')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '"')) v.remove_suffix(1);
  return std::string(v);
}

}  // namespace

Result<std::vector<std::int64_t>> RuleSet::evaluate(const Input& in, ScanCost* cost, const Stream* full_stream) const {
  State st;
  st.cost = cost;
  if (cost && cost->rules.size() != rules_.size()) cost->rules.assign(rules_.size(), RuleCost{});
  st.matched.assign(rules_.size(), 0);
  st.scratch = take_scratch();
  if (proto_scratch_ && !st.scratch) return Error{Errc::ScanUnavailable, "no Hyperscan scratch"};
  struct Give {
    const RuleSet* s;
    hs_scratch* h;
    ~Give() { s->give_scratch(h); }
  } give{this, st.scratch};

  // Headers: one buffer per (name, modifier) the rules ask for; several
  // fields of one name are joined with newlines (as SpamAssassin does).
  std::vector<std::uint8_t> present(header_keys_.size(), 0);
  for (std::size_t k = 0; k < header_keys_.size(); ++k) {
    const auto& [name, mod] = header_keys_[k];
    std::string buf;
    bool found = false;
    for (const auto& h : in.headers) {
      if (name == "all") {
        buf += h.name + ": " + (mod == "raw" ? h.raw : h.value) + "\n";
        found = true;
        continue;
      }
      if (h.name != name) continue;
      if (found) buf += '\n';
      found = true;
      if (mod == "raw") buf += h.raw;
      else if (mod == "addr") buf += addr_of(h.value);
      else if (mod == "name") buf += name_of(h.value);
      else buf += h.value;
    }
    present[k] = found;
    if (!found) continue;
    if (auto s = scan_buffer(RuleClass::Header, static_cast<int>(k), buf, st); !s) return s.error();
  }
  if (auto s = scan_buffer(RuleClass::Body, -1, in.body, st); !s) return s.error();
  if (auto s = scan_buffer(RuleClass::RawBody, -1, in.rawbody, st); !s) return s.error();
  // The stream counts only if it saw exactly this buffer; otherwise (none,
  // another set's, over its limit, failed) the block scan never loses a hit.
  const bool streamed = takes(full_stream, in.full);
  if (cost) cost->full_from_stream = streamed;
  if (streamed) scan_full_stream(*full_stream, in.full, st);
  else if (auto s = scan_buffer(RuleClass::Full, -1, in.full, st); !s) return s.error();
  for (const auto& u : in.uris)
    if (auto s = scan_buffer(RuleClass::Uri, -1, u, st); !s) return s.error();

  std::vector<std::int64_t> values(rules_.size(), 0);
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    const auto& r = rules_[i];
    if (r.cls == RuleClass::Header) {
      const bool has = present[static_cast<std::size_t>(key_of_[i])];
      values[i] = r.exists ? has : r.negate ? !st.matched[i] : st.matched[i];
    } else {
      values[i] = st.matched[i];
    }
  }
  for (auto i : meta_order_) values[i] = meta_[i].eval(values) != 0;
  return values;
}

Result<std::vector<const Rule*>> RuleSet::scan(const Input& in, const Stream* full_stream) const {
  auto v = evaluate(in, nullptr, full_stream);
  if (!v) return v.error();
  std::vector<const Rule*> out;
  for (std::size_t i = 0; i < rules_.size(); ++i)
    if ((*v)[i] && rules_[i].reported()) out.push_back(&rules_[i]);
  return out;
}

}  // namespace moat::rules

// A compiled rule set: Vectorscan/Hyperscan block-mode databases per rule
// class, PCRE2 (JIT) for what Hyperscan cannot run, and meta rules evaluated
// on top. Immutable once built, shared as shared_ptr<const RuleSet> so a
// reload swaps a whole set atomically while scans in flight keep the old one.
//
// Each regex rule is put on one engine at compile time:
//   Hyperscan  the pattern compiles as is: matched in the class database.
//   Prefilter  Hyperscan accepts it only with HS_FLAG_PREFILTER (backrefs,
//              some lookarounds, heavy bounded repeats): a database hit is a
//              candidate that PCRE2 confirms on the same buffer.
//   Pcre       neither: PCRE2 runs it on every buffer of its class.
// A rule whose pattern has alternatives that need bytes >= 0x80 (the UTF-8
// look-alikes of SpamAssassin's obfuscation rules) is compiled twice: as
// written, for buffers holding such bytes, and as its ASCII variant
// (rules/ascii_variant.hpp), for the buffers that do not (most mail). So each
// class has up to three databases: rules that run on every buffer, full forms
// for non-ASCII buffers, ASCII variants for ASCII buffers; they compile in
// parallel.
// The databases are serialized into a cache file named by a hash of the rule
// text and the Hyperscan version, so a restart loads instead of compiling.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "rules/meta.hpp"
#include "rules/rule_file.hpp"

struct hs_database;
struct hs_scratch;
struct pcre2_real_code_8;
struct pcre2_real_match_context_8;

namespace moat::rules {

// What the rules look at, built from the message by filters/rules.
struct HeaderField {
  std::string name;    // lower case
  std::string value;   // unfolded, RFC 2047 words decoded, leading space trimmed
  std::string raw;     // unfolded, undecoded
};

struct Input {
  std::vector<HeaderField> headers;
  std::string body;               // decoded text parts (HTML rendered to text)
  std::string rawbody;            // body parts transfer-decoded, HTML kept
  std::vector<std::string> uris;  // URIs found in text and HTML parts
  std::string_view full;          // the whole message as received
};

enum class Engine : std::uint8_t { None, Hyperscan, Prefilter, Pcre };

// A set of rule classes (bit per RuleClass), e.g. what a rule set reads.
using ClassMask = std::uint32_t;
constexpr ClassMask class_bit(RuleClass c) { return ClassMask(1u) << unsigned(c); }
inline constexpr ClassMask kAllClasses = (ClassMask(1u) << kClassCount) - 1;

struct CompileOptions {
  std::filesystem::path cache_dir;  // empty: no cache
  bool lenient = false;             // drop rules PCRE2 cannot compile (listed in the report) instead of failing
  // Patterns longer than this run on PCRE2 alone (their ASCII variant, if
  // short enough, still goes to Hyperscan); patterns whose bounded repeats
  // multiply past kHeavyRepeat go to the Prefilter engine. Compiled exactly,
  // both blow up Hyperscan's compile time (SpamAssassin's obfuscation rules:
  // measured in docs/rules.md; 1,000-2,000-byte rules take 0.3-2 s each).
  std::size_t heavy_length = 2000;
};

// Where scan time goes, per rule (moatctl rules bench --per-rule). Filled
// only when a caller passes one: timing every PCRE2 call costs.
struct RuleCost {
  std::uint64_t pcre_runs = 0;   // PCRE2 calls (PCRE2-only runs and prefilter confirmations)
  std::uint64_t pcre_ns = 0;     // their wall time
  std::uint64_t candidates = 0;  // prefilter: Hyperscan hits handed to PCRE2
  std::uint64_t confirmed = 0;   // prefilter: of those, PCRE2 agreed
};
struct ScanCost {
  std::vector<RuleCost> rules;   // by rule index
  std::uint64_t hs_ns = 0;       // inside hs_scan (match callbacks included)
  std::uint64_t hs_ns_group[3] = {};  // of which: every buffer, non-ASCII buffers, ASCII buffers
};

struct CompileReport {
  std::size_t hyperscan = 0, prefilter = 0, pcre = 0, meta = 0, other = 0;
  std::size_t ascii_variants = 0;    // rules with a separate ASCII form
  std::size_t hs_compiles = 0;       // hs_compile_multi calls (a refused pattern costs one more)
  std::vector<std::string> dropped;  // "FILE:LINE: rule X: why" (lenient only)
  bool from_cache = false;
  double seconds = 0;                // compile or cache load, wall clock
  std::string cache_file;
};

class RuleSet {
 public:
  static Result<std::shared_ptr<const RuleSet>> compile(std::vector<Rule> rules, const CompileOptions& opts = {},
                                                        CompileReport* report = nullptr);
  ~RuleSet();
  RuleSet(const RuleSet&) = delete;
  RuleSet& operator=(const RuleSet&) = delete;

  // Value of every rule (1/0; meta rules their truth), by rule index.
  Result<std::vector<std::int64_t>> evaluate(const Input& in, ScanCost* cost = nullptr) const;
  // Reported rules (not "__") that hit, in file order.
  Result<std::vector<const Rule*>> scan(const Input& in) const;

  const std::vector<Rule>& rules() const { return rules_; }
  // The classes this set has rules for: what the input needs to hold.
  ClassMask needs() const { return needs_; }
  // The engine of rule i as written, and of its ASCII variant (None: the
  // rule has none and runs as written on every buffer).
  Engine engine(std::size_t i) const { return engines_[i]; }
  Engine ascii_engine(std::size_t i) const { return ascii_engines_[i]; }
  std::string_view hash() const { return hash_; }
  // PCRE2 runs that hit their match limit (counted as no match).
  std::uint64_t limit_hits() const { return limit_hits_; }

 private:
  RuleSet() = default;
  struct State;
  // Which buffers a compiled pattern runs on.
  enum class Group : std::uint8_t { Any, High, Ascii };
  static constexpr int kGroups = 3;
  // One compiled pattern: a rule as written, or its ASCII variant.
  struct Unit {
    std::uint32_t rule = 0;
    Group group = Group::Any;
    Engine engine = Engine::None;
    std::string pattern;
    pcre2_real_code_8* code = nullptr;  // kept only for Prefilter and Pcre
  };
  Status prepare(const CompileOptions& opts, CompileReport& rep);
  Status make_units();
  Status build_databases(const CompileOptions& opts, CompileReport& rep);
  Status build_database(int cls, int group, std::size_t& compiles);
  bool load_cache(const std::filesystem::path& file);
  void save_cache(const std::filesystem::path& file) const;
  Status scan_group(int cls, int group, int key, std::string_view buf, State& st) const;
  Status scan_buffer(RuleClass cls, int key, std::string_view buf, State& st) const;
  bool pcre_match(std::uint32_t unit, std::string_view buf, State& st) const;
  hs_scratch* take_scratch() const;
  void give_scratch(hs_scratch* s) const;

  std::vector<Rule> rules_;
  std::vector<Unit> units_;                        // Hyperscan ids are indexes here
  std::vector<std::uint32_t> unit_rule_;           // units_[u].rule, flat for the match callback
  std::vector<Engine> unit_engine_;                // units_[u].engine, likewise
  std::vector<Engine> engines_, ascii_engines_;    // by rule
  std::vector<int> key_of_;                        // header rules: index into header_keys_
  std::vector<std::pair<std::string, std::string>> header_keys_;  // (name, modifier)
  std::vector<std::uint32_t> pcre_only_[kClassCount][kGroups];    // units (header: all, filtered by key)
  std::vector<std::uint32_t> meta_order_;          // metas, inputs first
  std::vector<MetaExpr> meta_;                     // by rule index (empty for non-meta)
  hs_database* db_[kClassCount][kGroups] = {};
  hs_scratch* proto_scratch_ = nullptr;
  pcre2_real_match_context_8* match_ctx_ = nullptr;  // match limits; read-only while scanning
  mutable std::mutex scratch_mu_;
  mutable std::vector<hs_scratch*> scratch_pool_;
  mutable std::atomic<std::uint64_t> limit_hits_{0};
  std::string hash_;
  ClassMask needs_ = 0;
  friend struct ScanAccess;
};

inline constexpr unsigned kHeavyRepeat = 40;       // product of bounded repeat maxima
inline constexpr std::uint32_t kPcreMatchLimit = 200000;

// PCRE2's verdict on a rule's pattern: nullopt when it compiles, else why not.
std::optional<std::string> check_pattern(const Rule& rule);

// True when a pattern is likely to blow up Hyperscan's compile (see CompileOptions).
bool is_heavy(std::string_view pattern, std::size_t heavy_length);

}  // namespace moat::rules

// A compiled rule set: one Vectorscan/Hyperscan block-mode database per rule
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
  // Patterns longer than this run on PCRE2 alone; patterns whose bounded
  // repeats multiply past kHeavyRepeat go to the Prefilter engine. Compiled
  // exactly, both blow up Hyperscan's compile time (SpamAssassin's
  // obfuscation rules: measured in docs/rules.md).
  std::size_t heavy_length = 1000;
};

struct CompileReport {
  std::size_t hyperscan = 0, prefilter = 0, pcre = 0, meta = 0, other = 0;
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
  Result<std::vector<std::int64_t>> evaluate(const Input& in) const;
  // Reported rules (not "__") that hit, in file order.
  Result<std::vector<const Rule*>> scan(const Input& in) const;

  const std::vector<Rule>& rules() const { return rules_; }
  // The classes this set has rules for: what the input needs to hold.
  ClassMask needs() const { return needs_; }
  Engine engine(std::size_t i) const { return engines_[i]; }
  std::string_view hash() const { return hash_; }
  // PCRE2 runs that hit their match limit (counted as no match).
  std::uint64_t limit_hits() const { return limit_hits_; }

 private:
  RuleSet() = default;
  struct State;
  Status build_databases(const CompileOptions& opts, CompileReport& rep);
  Status prepare(const CompileOptions& opts, CompileReport& rep);
  bool load_cache(const std::filesystem::path& file);
  void save_cache(const std::filesystem::path& file) const;
  Status scan_buffer(RuleClass cls, int key, std::string_view buf, State& st) const;
  bool pcre_match(std::uint32_t id, std::string_view buf, State& st) const;
  hs_scratch* take_scratch() const;
  void give_scratch(hs_scratch* s) const;

  std::vector<Rule> rules_;
  std::vector<Engine> engines_;
  std::vector<pcre2_real_code_8*> pcre_;           // by rule; null unless Prefilter/Pcre
  std::vector<int> key_of_;                        // header rules: index into header_keys_
  std::vector<std::pair<std::string, std::string>> header_keys_;  // (name, modifier)
  std::vector<std::vector<std::uint32_t>> pcre_only_;  // per class (header: all, filtered by key)
  std::vector<std::uint32_t> meta_order_;          // metas, inputs first
  std::vector<MetaExpr> meta_;                     // by rule index (empty for non-meta)
  hs_database* db_[kClassCount] = {};
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

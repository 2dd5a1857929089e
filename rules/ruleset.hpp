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
//   Gated      body and rawbody rules whose letters are split by optional
//              separators (SpamAssassin's obfuscated words), on ASCII
//              buffers: the rule's alphanumeric skeleton (rules/skeleton.hpp)
//              is matched by Hyperscan against the buffer's letters and
//              digits; PCRE2 runs the rule only where a skeleton hit, from
//              just before it. On other buffers the rule runs as written.
// A rule whose pattern has alternatives that need bytes >= 0x80 (the UTF-8
// look-alikes of SpamAssassin's obfuscation rules) is compiled twice: as
// written, for buffers holding such bytes, and as its ASCII variant
// (rules/ascii_variant.hpp), for the buffers that do not (most mail). So each
// class has up to three databases: rules that run on every buffer, full forms
// for non-ASCII buffers, ASCII variants for ASCII buffers; they compile in
// parallel.
// The full class (the message as received, the bytes the SMTP session feeds
// while DATA streams in) also gets a stream-mode database of all its
// Hyperscan and Prefilter units: RuleSet::Stream scans each chunk as it
// arrives, and evaluate() then takes the full class's Hyperscan hits from the
// closed stream instead of scanning the whole message at end of data.
// The databases are serialized into a cache file named by a hash of the rule
// text and the Hyperscan version, so a restart loads instead of compiling.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
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
struct hs_stream;
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

enum class Engine : std::uint8_t { None, Hyperscan, Prefilter, Pcre, Gated };

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
  // Skeleton gates (Engine::Gated) for body and rawbody rules; off: every
  // rule runs as before (the bench compares both).
  bool gates = true;
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
  std::uint64_t gate_ns = 0;     // squeezing ASCII buffers and matching the skeleton gates (not in hs_ns)
  bool full_from_stream = false;  // the full class's Hyperscan hits came from a RuleSet::Stream
};

struct CompileReport {
  std::size_t hyperscan = 0, prefilter = 0, pcre = 0, meta = 0, other = 0;
  std::size_t ascii_variants = 0;    // rules with a separate ASCII form
  std::size_t gated = 0;             // rules behind a skeleton gate on ASCII buffers
  std::size_t hs_compiles = 0;       // hs_compile_multi calls (a refused pattern costs one more)
  bool full_stream = false;          // the full class has a stream-mode database
  std::vector<std::string> dropped;  // "FILE:LINE: rule X: why" (lenient only)
  bool from_cache = false;
  double seconds = 0;                // compile or cache load, wall clock
  std::string cache_file;
};

// A stream scan stops (and end of data block-scans instead) past this many
// chunks: each hs_scan_stream call has a fixed cost, and a client sending a
// byte per packet should not make the scan cost more than the block scan.
inline constexpr std::size_t kStreamMaxChunks = 1u << 16;

class RuleSet {
 public:
  // The full class scanned chunk by chunk while the message arrives. Fed on
  // one thread at a time; holds a raw reference to its set, so the caller
  // keeps the set alive (filters/rules keeps both in its DataTap).
  class Stream {
   public:
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    // Scans the next bytes of the message. Past the chunk limit or on a
    // Hyperscan error the stream gives up (usable() stays false).
    void feed(std::string_view bytes);
    // Ends the scan: reports matches anchored at the end ("\z", "$").
    void close();
    // Closed without giving up: evaluate() may take its hits.
    bool usable() const { return closed_ && !failed_; }
    std::uint64_t bytes() const { return bytes_; }

   private:
    friend class RuleSet;
    Stream(const RuleSet& set, hs_stream* s, std::size_t max_chunks);
    static int on_hit(unsigned unit, unsigned long long from, unsigned long long to, unsigned flags, void* ctx);
    void give_up();
    const RuleSet* set_;
    hs_stream* hs_;
    std::vector<std::uint8_t> hit_;      // by unit
    std::vector<std::uint32_t> hits_;    // units that hit, in order found
    std::uint64_t bytes_ = 0;
    std::size_t chunks_ = 0, max_chunks_;
    bool high_ = false;                  // a byte >= 0x80 was fed
    bool failed_ = false, closed_ = false;
  };

  static Result<std::shared_ptr<const RuleSet>> compile(std::vector<Rule> rules, const CompileOptions& opts = {},
                                                        CompileReport* report = nullptr);
  ~RuleSet();
  RuleSet(const RuleSet&) = delete;
  RuleSet& operator=(const RuleSet&) = delete;

  // Value of every rule (1/0; meta rules their truth), by rule index. With
  // a closed, usable stream of this set over exactly in.full, the full
  // class's Hyperscan hits come from it (prefilter candidates are still
  // confirmed by PCRE2 on in.full, PCRE2-only full rules still run on it);
  // any other stream is ignored and in.full is block-scanned.
  Result<std::vector<std::int64_t>> evaluate(const Input& in, ScanCost* cost = nullptr,
                                             const Stream* full_stream = nullptr) const;
  // Reported rules (not "__") that hit, in file order.
  Result<std::vector<const Rule*>> scan(const Input& in, const Stream* full_stream = nullptr) const;
  // A stream scan of the full class, or nullptr when the set has no
  // stream database (no full rule on Hyperscan) or it cannot be opened.
  std::unique_ptr<Stream> open_stream(std::size_t max_chunks = kStreamMaxChunks) const;
  bool streams() const { return stream_db_ != nullptr; }
  // Whether evaluate() takes the full class from s for this full buffer:
  // s is this set's, closed, not given up, and saw as many bytes.
  bool takes(const Stream* s, std::string_view full) const {
    return s && s->set_ == this && s->usable() && s->bytes_ == full.size();
  }

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
    pcre2_real_code_8* code = nullptr;  // kept only for Prefilter, Pcre and Gated
    std::string gate;                   // Gated: the skeleton Hyperscan matches on the squeezed buffer
    std::size_t max_width = 0;          // Gated: longest match of pattern (kUnbounded: none)
  };
  Status prepare(const CompileOptions& opts, CompileReport& rep);
  Status make_units();
  Status build_databases(const CompileOptions& opts, CompileReport& rep);
  Status build_database(int cls, int group, std::size_t& compiles);
  void build_stream_database(std::size_t& compiles);
  void choose_gates(const CompileOptions& opts);
  Status build_gate_database(int cls, const CompileOptions& opts, std::size_t& compiles);
  void scan_gates(int cls, std::string_view buf, State& st) const;
  // hs_compile_multi of the Hyperscan and Prefilter units `pick` selects:
  // the database (null when none was picked), or an error naming the unit
  // Hyperscan refused (refused = its index, -1 when it named none).
  struct HsBuild {
    hs_database* db = nullptr;
    long refused = -1;
    std::string error;
    bool ran = false;  // something was picked: one hs_compile_multi call
  };
  HsBuild compile_units(const std::function<bool(const Unit&)>& pick, unsigned mode) const;
  bool load_cache(const std::filesystem::path& file);
  void save_cache(const std::filesystem::path& file) const;
  Status scan_group(int cls, int group, int key, std::string_view buf, State& st) const;
  void confirm_group(int cls, int group, int key, std::string_view buf, State& st) const;
  Status scan_buffer(RuleClass cls, int key, std::string_view buf, State& st) const;
  void scan_full_stream(const Stream& s, std::string_view buf, State& st) const;
  bool pcre_match(std::uint32_t unit, std::string_view buf, State& st, std::size_t start = 0) const;
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
  hs_database* stream_db_ = nullptr;               // full class, HS_MODE_STREAM, all groups
  hs_database* gate_db_[kClassCount] = {};         // skeleton gates of Gated units (ASCII buffers)
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

// Rules filter (see rules_filter.hpp): the process-wide set store, the
// streaming tap and the end-of-data scan.
#include "filters/rules/rules_filter.hpp"

#include <boost/asio/post.hpp>

#include "common/blocking.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "rules/load.hpp"

namespace moat::filters::rules {
namespace {

using moat::rules::RuleSet;

// The process-wide store: the newest set and the key it was built from, and
// the CurrentSet of the newest filter generation (a background compile
// updates that one).
struct Store {
  std::mutex mu;
  std::string key;
  std::shared_ptr<const RuleSet> set;
  std::shared_ptr<CurrentSet> current;
};

Store& store() {
  static Store s;
  return s;
}

std::string key_of(const moat::rules::Loaded& loaded, const config::Config& cfg) {
  std::string k = moat::rules::to_text(loaded.rules);
  k += cfg.rules.cache ? "\ncache:" + (cfg.server.data_dir / "rules-cache").string() : "\nnocache";
  return k;
}

moat::rules::CompileOptions options(const config::Config& cfg) {
  moat::rules::CompileOptions o;
  if (cfg.rules.cache) o.cache_dir = cfg.server.data_dir / "rules-cache";
  return o;
}

void log_report(const moat::rules::CompileReport& r, std::size_t files) {
  log::info("rules: " + std::to_string(files) + " files, " + std::to_string(r.hyperscan) + " hyperscan, " +
            std::to_string(r.prefilter) + " prefilter+pcre2, " + std::to_string(r.pcre) + " pcre2, " +
            std::to_string(r.meta) + " meta; " + (r.from_cache ? "loaded from cache" : "compiled") + " in " +
            std::to_string(r.seconds) + "s");
}

// The stream scan of one message. Holds the set it was opened on: a swap
// during DATA leaves this message on the old set, and run() then ignores the
// stream (it is not the set scanning now).
struct RulesTap final : DataTap {
  RulesTap(std::shared_ptr<const RuleSet> s, std::unique_ptr<RuleSet::Stream> st)
      : set(std::move(s)), stream(std::move(st)) {}
  void feed(std::string_view bytes) override { stream->feed(bytes); }
  std::shared_ptr<const RuleSet> set;       // declared first: outlives the stream
  std::unique_ptr<RuleSet::Stream> stream;
};

}  // namespace

Result<std::unique_ptr<Filter>> RulesFilter::make(const config::Config& cfg, const Services& services) {
  auto loaded = moat::rules::load(moat::rules::rule_dirs(cfg.rules));
  if (!loaded) return loaded.error();
  std::string key = key_of(*loaded, cfg);
  auto& st = store();
  std::lock_guard lk(st.mu);
  if (st.set && st.key == key) {
    // Unchanged rules: share the running set (and its pending swap, if any).
    if (!st.current) {
      st.current = std::make_shared<CurrentSet>();
      st.current->set(st.set);
    }
    return std::unique_ptr<Filter>(new RulesFilter(st.current, services.blocking));
  }
  auto current = std::make_shared<CurrentSet>();
  if (st.set && services.blocking) {
    // A reload with new rules: keep scanning with the old set, compile off
    // the I/O threads, swap when done. A set that fails to compile is logged
    // and the old one stays.
    current->set(st.set);
    st.key = key;
    st.current = current;
    auto job = [current, key, rules = std::move(loaded->rules), opts = options(cfg),
                files = loaded->files.size()]() mutable {
      moat::rules::CompileReport rep;
      auto set = RuleSet::compile(std::move(rules), opts, &rep);
      std::lock_guard lk2(store().mu);
      // Jobs may end out of order: only the one for the newest rule text
      // publishes, or an older set would stand under the newer key.
      const bool newest = store().key == key;
      if (!set) {
        log::error("rules: new rule set failed to compile, keeping the old one: " + set.error().detail);
        if (newest) store().key.clear();  // the next reload tries again instead of sharing the old set
        return;
      }
      if (!newest) {
        log::info("rules: a newer reload superseded this compile; its set is dropped");
        return;
      }
      log_report(rep, files);
      store().set = *set;
      current->set(*set);
    };
    boost::asio::post(*services.blocking, std::move(job));
    return std::unique_ptr<Filter>(new RulesFilter(std::move(current), services.blocking));
  }
  moat::rules::CompileReport rep;
  auto set = RuleSet::compile(std::move(loaded->rules), options(cfg), &rep);
  if (!set) return set.error();
  log_report(rep, loaded->files.size());
  current->set(*set);
  st.key = key;
  st.set = *set;
  st.current = current;
  return std::unique_ptr<Filter>(new RulesFilter(std::move(current), services.blocking));
}

Result<std::vector<const moat::rules::Rule*>> scan_message(const RuleSet& set, std::string_view message) {
  return set.scan(make_input(message));
}

std::unique_ptr<DataTap> RulesFilter::open_tap(const ScanContext&) {
  auto set = current_->get();
  if (!set || !set->streams()) return nullptr;
  try {
    auto stream = set->open_stream();
    if (!stream) return nullptr;
    return std::make_unique<RulesTap>(std::move(set), std::move(stream));
  } catch (const std::bad_alloc&) {
    return nullptr;  // the end-of-data block scan covers it
  }
}

asio::awaitable<Status> RulesFilter::run(Phase, ScanContext& ctx) {
  auto set = current_->get();
  if (!set) co_return Status{};
  // The stream, if this message had one on the set scanning now.
  auto* tap = static_cast<RulesTap*>(ctx.tap(this));
  RuleSet::Stream* stream = tap && tap->set == set ? tap->stream.get() : nullptr;
  // The input comes from the parse every content filter shares; it is built
  // here, on the filter's own turn, because ScanContext is not thread-safe.
  // Only the scan itself goes to the pool.
  auto text = [&ctx](std::size_t i) -> const std::string& { return ctx.part_text(i); };
  auto input = make_input(ctx.mime(), ctx.message, text, {}, set->needs());
  Result<std::vector<const moat::rules::Rule*>> hits = Error{Errc::ScanUnavailable, "not run"};
  auto work = [&set, &input, stream]() {
    if (stream) stream->close();  // reports the matches anchored at the end
    return set->scan(input, stream);
  };
  // Scanning a large message takes milliseconds: not on an I/O thread.
  if (pool_) hits = co_await run_blocking(*pool_, work);
  else hits = work();
  if (!hits) co_return hits.error();
  static auto& streamed = metrics::counter("moat_rules_full_streamed_total", {},
                                           "Messages whose full rules were scanned while DATA streamed in");
  if (set->takes(stream, input.full)) streamed.inc();
  for (const auto* r : *hits) ctx.add(r->symbol, r->description);
  co_return Status{};
}

}  // namespace moat::filters::rules

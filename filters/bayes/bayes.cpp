// Bayes classify/learn and the filter (see bayes.hpp).
#include "filters/bayes/bayes.hpp"

#include <boost/asio/post.hpp>

#include <chrono>
#include <cstdio>

#include "common/blocking.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/text.hpp"

namespace moat::filters::bayes {
namespace {

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<std::uint64_t> hashes(const std::vector<std::string>& tokens) {
  std::vector<std::uint64_t> out;
  out.reserve(tokens.size());
  for (const auto& t : tokens) out.push_back(token_hash(t));
  return out;
}

bool enough(Counts learned, const config::Bayes& cfg) {
  return learned.spam >= std::int64_t(cfg.min_spam) && learned.ham >= std::int64_t(cfg.min_ham);
}

metrics::Counter& result_counter(std::string_view result) {
  static auto& untrained = metrics::counter("moat_bayes_total", "result=\"untrained\"", "Bayes classifications");
  static auto& ham = metrics::counter("moat_bayes_total", "result=\"ham\"");
  static auto& unsure = metrics::counter("moat_bayes_total", "result=\"unsure\"");
  static auto& spam = metrics::counter("moat_bayes_total", "result=\"spam\"");
  static auto& learn_spam = metrics::counter("moat_bayes_total", "result=\"autolearn_spam\"");
  static auto& learn_ham = metrics::counter("moat_bayes_total", "result=\"autolearn_ham\"");
  if (result == "ham") return ham;
  if (result == "unsure") return unsure;
  if (result == "spam") return spam;
  if (result == "autolearn_spam") return learn_spam;
  if (result == "autolearn_ham") return learn_ham;
  return untrained;
}

std::string format_probability(double p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", p);
  return buf;
}

}  // namespace

Result<Classification> classify(Store& store, const std::vector<std::string>& tokens, std::string_view user,
                                const config::Bayes& cfg, const Params& params) {
  Classification c;
  if (cfg.per_user && !user.empty()) {
    auto t = store.totals(user);
    if (!t) return t.error();
    if (enough(*t, cfg)) {
      c.user = std::string(user);
      c.learned = *t;
    }
  }
  if (c.user.empty()) {
    auto t = store.totals("");
    if (!t) return t.error();
    c.learned = *t;
  }
  c.trained = enough(c.learned, cfg);
  c.tokens = unsigned(tokens.size());
  if (!c.trained) return c;
  auto counts = store.lookup(c.user, hashes(tokens));
  if (!counts) return counts.error();
  std::vector<double> f;
  f.reserve(counts->size());
  for (const auto& k : *counts)
    if (k.spam + k.ham >= std::int64_t(params.min_count))  // rarer tokens say too little
      f.push_back(token_probability(k, c.learned, params));
  auto combined = combine(std::move(f), params);
  c.probability = combined.probability;
  c.used = combined.used;
  return c;
}

Result<Classification> classify(Store& store, std::string_view message, std::string_view user,
                                const config::Bayes& cfg, const Params& params) {
  return classify(store, tokenize(message), user, cfg, params);
}

Result<LearnResult> learn(Store& store, std::uint64_t digest, const std::vector<std::string>& tokens, Class cls,
                          std::string_view user) {
  return store.learn(user, digest, hashes(tokens), cls, now_seconds());
}

Result<LearnResult> learn(Store& store, std::string_view message, Class cls, std::string_view user) {
  std::string m = as_received(message);
  mime::Message tree = mime::parse(m);
  return learn(store, message_digest(m, tree), tokenize(m), cls, user);
}

Result<bool> unlearn(Store& store, std::string_view message, std::string_view user) {
  std::string m = as_received(message);
  return store.unlearn(user, message_digest(m, mime::parse(m)), hashes(tokenize(m)));
}

Result<LearnResult> learn(const config::Config& cfg, std::string_view message, Class cls, std::string_view user) {
  Store store(cfg.bayes.db);
  return learn(store, message, cls, user);
}

std::string_view band(double p) {
  static constexpr std::pair<double, std::string_view> kBands[] = {
      {0.01, "BAYES_00"}, {0.05, "BAYES_05"}, {0.20, "BAYES_20"}, {0.40, "BAYES_40"}, {0.60, "BAYES_50"},
      {0.80, "BAYES_60"}, {0.95, "BAYES_80"}, {0.99, "BAYES_95"}, {0.999, "BAYES_99"}};
  for (auto [upper, name] : kBands)
    if (p < upper) return name;
  return "BAYES_999";
}

BayesFilter::BayesFilter(const config::Config& cfg, const Services& services)
    : cfg_(cfg.bayes), scores_(cfg), store_(Store::shared(cfg.bayes.db)), pool_(services.blocking) {
  if (!pool_) {
    own_pool_ = std::make_unique<boost::asio::thread_pool>(1);
    pool_ = own_pool_.get();
  }
  // The first read loads the whole token table into memory (~0.6 s for
  // 700,000 tokens): do it now, not while the first message waits.
  boost::asio::post(*pool_, [store = store_] { (void)store->totals(""); });
}

BayesFilter::~BayesFilter() {
  if (own_pool_) own_pool_->join();
}

// Safeguards: never from our own users (outbound mail is not inbound spam or
// ham), only when the other filters alone are decisive, and never against a
// trained classifier that is sure of the opposite (a poisoning or a rule
// false positive should not teach it the wrong lesson).
std::optional<Class> BayesFilter::autolearn_class(const ScanContext& ctx, const Classification& c) const {
  if (!cfg_.autolearn || !ctx.envelope.client.auth_user.empty()) return std::nullopt;
  double others = 0;
  for (const auto& s : ctx.symbols)
    if (!s.name.starts_with("BAYES_")) others += scores_.score(s.name);
  if (others >= cfg_.autolearn_spam && !(c.trained && c.probability < 0.1)) return Class::Spam;
  if (others <= cfg_.autolearn_ham && !(c.trained && c.probability > 0.9)) return Class::Ham;
  return std::nullopt;
}

// The blocking half of a run: tokens from the parse the ScanContext shares
// with the other content filters, then the store. Runs on the pool; reads
// only what run() collected and keeps alive until it resumes.
struct Scan {
  Store* store;
  const config::Bayes* cfg;
  const mime::Message* tree;
  std::string_view message;
  std::vector<std::string_view> texts;  // per part: ScanContext::part_text, filled for text parts
  std::string user;
  std::vector<std::string> tokens;
  std::uint64_t digest = 0;

  Result<Classification> classify() {
    auto text_of = [this](std::size_t i) { return i < texts.size() ? texts[i] : std::string_view{}; };
    tokens = tokenize(message, *tree, text_of);
    digest = message_digest(message, *tree);
    return bayes::classify(*store, tokens, user, *cfg);
  }
};

asio::awaitable<Status> BayesFilter::run(Phase, ScanContext& ctx) {
  if (ctx.message.empty()) co_return Status{};
  Scan scan{store_.get(), &cfg_, &ctx.mime(), ctx.message, {}, {}, {}, 0};
  if (ctx.envelope.recipients.size() == 1) scan.user = lower(ctx.envelope.recipients[0].address);
  // part_text is cached in the context for every content filter; it is
  // filled here, on the session's executor, because the cache is not locked.
  scan.texts.resize(scan.tree->parts.size());
  for (std::size_t i : scan.tree->text_parts()) scan.texts[i] = ctx.part_text(i);
  Scan* s = &scan;
  auto r = co_await run_blocking(*pool_, [s] { return s->classify(); });
  if (!r) co_return r.error();
  const Classification& c = *r;
  if (!c.trained) {
    result_counter("untrained").inc();
  } else {
    result_counter(c.probability < 0.2 ? "ham" : c.probability >= 0.8 ? "spam" : "unsure").inc();
    ctx.add(std::string(band(c.probability)), format_probability(c.probability));
  }
  auto cls = autolearn_class(ctx, c);
  if (!cls) co_return Status{};
  Class k = *cls;
  auto learned = co_await run_blocking(*pool_, [s, k] { return learn(*s->store, s->digest, s->tokens, k); });
  if (!learned) {
    log::warning("bayes autolearn: " + learned.error().detail);  // the verdict stands without it
    co_return Status{};
  }
  result_counter(k == Class::Spam ? "autolearn_spam" : "autolearn_ham").inc();
  ctx.add("BAYES_AUTOLEARN", std::string(class_name(k)));
  co_return Status{};
}

}  // namespace moat::filters::bayes

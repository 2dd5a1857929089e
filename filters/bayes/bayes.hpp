// The Bayesian classifier as a filter and as a library: classify, learn and
// unlearn whole messages against the token store (store.hpp), and the
// EndOfData filter that adds one BAYES_* band symbol (SpamAssassin's bands,
// the probability in the detail) once enough mail of both classes has been
// learned. Autolearn from the other filters' scores is opt-in ([bayes]).
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.hpp"
#include "common/error.hpp"
#include "filters/bayes/classifier.hpp"
#include "filters/bayes/store.hpp"
#include "filters/bayes/tokenizer.hpp"
#include "filters/filter.hpp"
#include "filters/scores.hpp"
#include "filters/services.hpp"

namespace moat::filters::bayes {

struct Classification {
  bool trained = false;      // the store behind it had min_spam and min_ham learned
  double probability = 0.5;  // 0 ham .. 1 spam; 0.5 when untrained
  unsigned tokens = 0;       // distinct tokens of the message
  unsigned used = 0;         // tokens that decided
  std::string user;          // whose counts were used; "" global
  Counts learned;            // learned message counts of that store
};

// All of these block (SQLite): call them on the blocking pool or from a CLI.

// With per_user, the user's counts when that user has enough learned, else
// the global ones. `tokens` from tokenize().
Result<Classification> classify(Store& store, const std::vector<std::string>& tokens, std::string_view user,
                                const config::Bayes& cfg, const Params& params = {});
// The same for a raw message (tokenize(message)).
Result<Classification> classify(Store& store, std::string_view message, std::string_view user,
                                const config::Bayes& cfg, const Params& params = {});

// Learns one message, given by its digest and tokens, as spam or ham for
// `user` ("" global). Learning the same message again is a no-op; learning it
// as the other class moves it.
Result<LearnResult> learn(Store& store, std::uint64_t digest, const std::vector<std::string>& tokens, Class cls,
                          std::string_view user = {});
// The same for a raw message (any line endings, an mbox "From " line allowed).
Result<LearnResult> learn(Store& store, std::string_view message, Class cls, std::string_view user = {});
// False when the message was not learned for `user`.
Result<bool> unlearn(Store& store, std::string_view message, std::string_view user = {});

// The hook for "training from quarantine decisions" (moatctl quarantine
// learn): opens cfg.bayes.db for the one call and learns the message into
// `user`'s counts ("" global).
Result<LearnResult> learn(const config::Config& cfg, std::string_view message, Class cls,
                          std::string_view user = {});

// "BAYES_00" (p < 0.01), BAYES_05, BAYES_20, BAYES_40, BAYES_50, BAYES_60,
// BAYES_80, BAYES_95, BAYES_99, "BAYES_999" (p >= 0.999).
std::string_view band(double probability);

// Symbols: one BAYES_* band with the probability as detail; BAYES_AUTOLEARN
// (detail "spam"/"ham") when autolearn learned the message. Phase EndOfData.
class BayesFilter final : public Filter {
 public:
  BayesFilter(const config::Config& cfg, const Services& services);
  ~BayesFilter() override;
  std::string_view name() const override { return "bayes"; }
  PhaseMask phases() const override { return mask(Phase::EndOfData); }
  asio::awaitable<Status> run(Phase phase, ScanContext& ctx) override;

 private:
  // Autolearn's verdict for a message: learn as spam/ham, or not at all.
  std::optional<Class> autolearn_class(const ScanContext& ctx, const Classification& c) const;

  config::Bayes cfg_;
  Scores scores_;
  std::shared_ptr<Store> store_;  // Store::shared: kept across config reloads
  std::unique_ptr<boost::asio::thread_pool> own_pool_;
  boost::asio::thread_pool* pool_;
};

}  // namespace moat::filters::bayes

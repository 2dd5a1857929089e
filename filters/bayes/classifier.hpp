// The Bayesian arithmetic: Gary Robinson's token probability f(w) ("A
// Statistical Approach to the Spam Problem", Linux Journal 2003) and Fisher's
// inverse chi-square combination of the most significant tokens, the scheme
// SpamAssassin (Bayes.pm), SpamBayes and bogofilter share. Pure functions.
#pragma once

#include <cstdint>
#include <vector>

namespace moat::filters::bayes {

struct Counts {
  std::int64_t spam = 0;  // learned messages of each class holding the token
  std::int64_t ham = 0;
};

// Robinson's s and x and SpamAssassin's MIN_PROB_STRENGTH, with the 30
// strongest tokens rather than its 150 (N_SIGNIFICANT_TOKENS): our features
// overlap (a word, its pairs, its capitalised form), and fewer of them keeps
// one theme from outvoting the rest. s = 0.1 (SpamAssassin: 0.030) trusts a
// rarely seen token less; x = 0.52 (bogofilter's robx) is the probability of
// a token never seen. Chosen by 5-fold cross-validation inside the training
// half of bench/spam-accuracy (see bench/README.md), never on its test half.
struct Params {
  double s = 0.1;                 // strength of the prior x
  double x = 0.52;                // probability of a token never seen
  double min_strength = 0.346;    // |f - 0.5| a token needs to count
  unsigned max_tokens = 30;       // the most significant ones combined
  unsigned min_count = 1;         // learned messages a token needs before it counts
};

// Robinson's f(w) = (s*x + n*p) / (s + n), where p is the token's spam ratio
// normalised by the learned message counts and n = spam + ham.
double token_probability(Counts token, Counts totals, const Params& p = {});

// Upper tail Q(x2 | v) of the chi-square distribution for even v, computed
// in log space so that large sums do not underflow.
double chi2q(double x2, unsigned v);

struct Combined {
  double probability = 0.5;  // (1 + S - H) / 2: 0 hammy, 1 spammy
  unsigned used = 0;         // tokens that counted
};

// Keeps the tokens with |f - 0.5| >= min_strength, the max_tokens strongest
// of them, and combines: H = 1 - Q(-2 sum ln f), S = 1 - Q(-2 sum ln(1-f)).
Combined combine(std::vector<double> probabilities, const Params& p = {});

}  // namespace moat::filters::bayes

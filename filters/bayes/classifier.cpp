// Robinson/Fisher combination (see classifier.hpp).
#include "filters/bayes/classifier.hpp"

#include <algorithm>
#include <cmath>

namespace moat::filters::bayes {

double token_probability(Counts token, Counts totals, const Params& p) {
  const double n = double(token.spam + token.ham);
  if (n <= 0 || totals.spam <= 0 || totals.ham <= 0) return p.x;
  const double spam_ratio = std::min(1.0, double(token.spam) / double(totals.spam));
  const double ham_ratio = std::min(1.0, double(token.ham) / double(totals.ham));
  if (spam_ratio + ham_ratio <= 0) return p.x;
  const double prob = spam_ratio / (spam_ratio + ham_ratio);
  return (p.s * p.x + n * prob) / (p.s + n);
}

// Q(x2|v) = exp(-m) * sum_{i<v/2} m^i / i!, m = x2/2 (v even). Each term is
// formed as exp(i ln m - m - ln i!) so neither m^i nor i! overflows.
double chi2q(double x2, unsigned v) {
  if (x2 <= 0) return 1.0;
  const double m = x2 / 2;
  const unsigned k = std::max(1u, v / 2);
  double sum = 0, lfact = 0;
  for (unsigned i = 0; i < k; ++i) {
    if (i > 0) lfact += std::log(double(i));
    sum += std::exp(double(i) * std::log(m) - m - lfact);
  }
  return std::min(1.0, sum);
}

Combined combine(std::vector<double> f, const Params& p) {
  std::erase_if(f, [&](double v) { return std::fabs(v - 0.5) < p.min_strength; });
  if (f.size() > p.max_tokens) {
    std::nth_element(f.begin(), f.begin() + p.max_tokens, f.end(),
                     [](double a, double b) { return std::fabs(a - 0.5) > std::fabs(b - 0.5); });
    f.resize(p.max_tokens);
  }
  Combined out;
  out.used = unsigned(f.size());
  if (f.empty()) return out;
  double ln_f = 0, ln_1f = 0;
  for (double v : f) {
    v = std::clamp(v, 1e-9, 1 - 1e-9);
    ln_f += std::log(v);
    ln_1f += std::log(1 - v);
  }
  const unsigned dof = 2 * out.used;
  const double ham = 1 - chi2q(-2 * ln_f, dof);    // near 1 when the f are small
  const double spam = 1 - chi2q(-2 * ln_1f, dof);  // near 1 when the f are large
  out.probability = (1 + spam - ham) / 2;
  return out;
}

}  // namespace moat::filters::bayes

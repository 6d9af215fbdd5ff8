#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace pice {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  auto bad = [](const char* field, const std::string& want) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must be ", want));
  };
  if (!(p.temperature >= 0.0f && p.temperature <= 100.0f)) return bad("temperature", "in [0, 100]");
  if (p.top_k < 0) return bad("top_k", ">= 0");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return bad("top_p", "in (0, 1]");
  if (!(p.min_p >= 0.0f && p.min_p < 1.0f)) return bad("min_p", "in [0, 1)");
  if (!(p.repeat_penalty > 0.0f && p.repeat_penalty <= 10.0f)) return bad("repeat_penalty", "in (0, 10]");
  if (p.repeat_last_n < 0) return bad("repeat_last_n", ">= 0");
  return absl::OkStatus();
}

float LogSoftmaxAt(std::span<const float> logits, Token id) {
  float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(double(l) - mx);
  return float(double(logits[id]) - mx - std::log(sum));
}

Sampler::Sampler(const SamplingParams& params) : p_(params), rng_(params.seed) {}

Token Sampler::Sample(std::span<const float> logits, std::span<const Token> history, float* logprob) {
  const int n = int(logits.size());
  if (p_.temperature <= 0.0f && (p_.repeat_penalty == 1.0f || p_.repeat_last_n <= 0 || history.empty())) {
    // Greedy with nothing to adjust: the first maximal logit, no copy.
    const Token chosen = Token(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (logprob) *logprob = LogSoftmaxAt(logits, chosen);
    return chosen;
  }
  work_.assign(logits.begin(), logits.end());
  if (p_.repeat_penalty != 1.0f && p_.repeat_last_n > 0) {
    absl::flat_hash_set<Token> seen;
    const size_t from = history.size() > size_t(p_.repeat_last_n) ? history.size() - p_.repeat_last_n : 0;
    for (size_t i = from; i < history.size(); ++i) {
      Token t = history[i];
      if (t < 0 || t >= n || !seen.insert(t).second) continue;
      work_[t] = work_[t] > 0 ? work_[t] / p_.repeat_penalty : work_[t] * p_.repeat_penalty;
    }
  }
  Token chosen;
  if (p_.temperature <= 0.0f) {
    chosen = Token(std::max_element(work_.begin(), work_.end()) - work_.begin());
  } else {
    // Candidates sorted by logit, descending.
    idx_.resize(n);
    std::iota(idx_.begin(), idx_.end(), 0);
    int keep = n;
    if (p_.top_k > 0 && p_.top_k < n) {
      keep = p_.top_k;
      std::partial_sort(idx_.begin(), idx_.begin() + keep, idx_.end(),
                        [&](int a, int b) { return work_[a] > work_[b] || (work_[a] == work_[b] && a < b); });
    } else {
      std::sort(idx_.begin(), idx_.end(),
                [&](int a, int b) { return work_[a] > work_[b] || (work_[a] == work_[b] && a < b); });
    }
    // Probabilities at temperature 1 for top-p / min-p (llama.cpp applies them before
    // temperature), then at the requested temperature for the draw.
    std::vector<double> prob(keep);
    const double mx = work_[idx_[0]];
    double sum = 0;
    for (int i = 0; i < keep; ++i) sum += prob[i] = std::exp(double(work_[idx_[i]]) - mx);
    if (p_.top_p < 1.0f) {
      double cum = 0;
      for (int i = 0; i < keep; ++i) {
        cum += prob[i] / sum;
        if (cum >= p_.top_p) { keep = i + 1; break; }
      }
    }
    if (p_.min_p > 0.0f) {
      int k = 1;
      while (k < keep && prob[k] >= p_.min_p * prob[0]) ++k;
      keep = k;
    }
    std::vector<double> w(keep);
    double wsum = 0;
    for (int i = 0; i < keep; ++i) wsum += w[i] = std::exp((double(work_[idx_[i]]) - mx) / p_.temperature);
    std::uniform_real_distribution<double> uni(0.0, wsum);
    double r = uni(rng_), acc = 0;
    chosen = idx_[keep - 1];
    for (int i = 0; i < keep; ++i) {
      acc += w[i];
      if (r < acc) { chosen = idx_[i]; break; }
    }
  }
  if (logprob) *logprob = LogSoftmaxAt(logits, chosen);
  return chosen;
}

}  // namespace pice

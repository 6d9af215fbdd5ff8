// Token sampling: greedy, temperature, top-k, top-p, min-p, repetition penalty, seeded.
#ifndef PICE_ENGINE_SAMPLER_H_
#define PICE_ENGINE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "engine/tokenizer/tokenizer.h"

namespace pice {

struct SamplingParams {
  float temperature = 0.0f;    // <= 0: greedy (argmax, ties to the lowest id)
  int top_k = 0;               // keep the k most likely tokens; 0 = all
  float top_p = 1.0f;          // keep the smallest set whose probability reaches p; 1 = all
  float min_p = 0.0f;          // drop tokens below min_p * p(most likely); 0 = off
  float repeat_penalty = 1.0f; // llama.cpp-style: positive logits / r, negative * r
  int repeat_last_n = 64;      // how many recent tokens the penalty looks at
  uint64_t seed = 0;           // same seed, same logits => same tokens
};

// Returns INVALID_ARGUMENT naming the field when a value is out of range.
absl::Status ValidateSamplingParams(const SamplingParams& p);

// Thread safety: one Sampler per sequence.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Picks the next token from `logits` ([n_vocab]). `history` holds the tokens so far
  // (prompt + generated) for the repetition penalty. *logprob receives the chosen
  // token's log-probability under the model's own distribution (log-softmax of the raw
  // logits, before penalty, temperature and truncation): the score the edge ensemble
  // votes with.
  Token Sample(std::span<const float> logits, std::span<const Token> history, float* logprob);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<int> idx_;
};

// log-softmax of logits[id], computed in double.
float LogSoftmaxAt(std::span<const float> logits, Token id);

}  // namespace pice

#endif  // PICE_ENGINE_SAMPLER_H_

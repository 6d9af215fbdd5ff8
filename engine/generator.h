// Text generation on top of Context: prompt prefill, sampling loop, stop conditions,
// per-token callbacks and timings. GenerateBatch decodes several sequences in lockstep,
// one batched forward pass per step.
#ifndef PICE_ENGINE_GENERATOR_H_
#define PICE_ENGINE_GENERATOR_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/context.h"
#include "engine/sampler.h"

namespace pice {

enum class FinishReason { kStop, kLength, kCancelled, kError };
const char* FinishReasonName(FinishReason r);  // "stop", "length", "cancelled", "error"

struct GenerateOptions {
  SamplingParams sampling;
  int max_tokens = 128;              // new tokens at most (>= 0)
  std::vector<std::string> stop;     // stop strings; the text ends before the first match
  bool stop_at_eog = true;           // end on an end-of-generation token (not included)
  int n_ctx = 0;                     // KV positions; 0 = prompt + max_tokens
};

// Returns INVALID_ARGUMENT naming the field.
absl::Status ValidateGenerateOptions(const GenerateOptions& o);

struct GenerateResult {
  std::vector<Token> prompt_tokens;
  std::vector<Token> tokens;     // generated, without the EOG token
  std::vector<float> logprobs;   // one per generated token
  std::string text;              // decoded tokens, cut at a stop string
  FinishReason finish = FinishReason::kLength;
  double prefill_seconds = 0, decode_seconds = 0;
  int decode_steps = 0;          // forward passes after the prompt
  double MeanLogprob() const;
};

// Called after each sampled token; return false to cancel the sequence.
using TokenCallback = std::function<bool(int seq, Token token, float logprob)>;

// Generates a continuation of `prompt` (already tokenized; must not be empty).
absl::StatusOr<GenerateResult> Generate(Context& ctx, const std::vector<Token>& prompt,
                                        const GenerateOptions& opts,
                                        const TokenCallback& on_token = nullptr);

// Generates continuations of several prompts together: one batched prefill, then one
// forward pass per step for all live sequences. Greedy results equal Generate's.
absl::StatusOr<std::vector<GenerateResult>> GenerateBatch(
    Context& ctx, const std::vector<std::vector<Token>>& prompts,
    const std::vector<GenerateOptions>& opts, const TokenCallback& on_token = nullptr);

}  // namespace pice

#endif  // PICE_ENGINE_GENERATOR_H_

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
  bool stopped_at_eog = false;   // generation ended on an end-of-generation token
  float eog_logprob = 0;         // that token's log-probability
  std::string text;              // decoded tokens, cut at a stop string
  FinishReason finish = FinishReason::kLength;
  double prefill_seconds = 0, decode_seconds = 0;
  int decode_steps = 0;          // forward passes after the prompt
  // Mean log-probability of the generated tokens, the closing end-of-generation token
  // included (as llama.cpp's reference counts it): the model's confidence that the
  // answer is complete is part of its confidence in the answer.
  double MeanLogprob() const;
};

// The sampling state of one sequence between forward passes: shared by GenerateBatch
// and the Engine's continuous batching so both stop, sample and record alike.
class SequenceState {
 public:
  SequenceState(std::vector<Token> prompt, const GenerateOptions& options);
  // Samples the next token from `logits` and applies the stop conditions. Returns true
  // when the sequence goes on (then next_token() is the token to feed), false when it
  // finished (result().finish says why). `on_token` may cancel.
  bool Advance(const float* logits, const Tokenizer& tok, int n_vocab,
               const std::function<bool(Token, float)>& on_token);
  // Advance in two steps, so that a batch can sample its sequences in parallel (Sample
  // touches only this sequence's state) and then take them in order:
  //   if (s.WantsToken()) t = s.Sample(logits, n_vocab, &lp);   // any thread
  //   go_on = s.Accept(t, lp, tok, on_token);                     // in order
  // REQUIRES for Accept: Sample ran when WantsToken() was true.
  bool WantsToken() const { return int(result_.tokens.size()) < options_.max_tokens; }
  Token Sample(const float* logits, int n_vocab, float* logprob);
  bool Accept(Token t, float logprob, const Tokenizer& tok,
              const std::function<bool(Token, float)>& on_token);
  Token next_token() const { return result_.tokens.back(); }
  // Ends the sequence early (e.g. cancelled from outside).
  void Finish(FinishReason why) { result_.finish = why; }
  // Fills `text` (decoded, cut at a stop string) and returns the result.
  GenerateResult TakeResult(const Tokenizer& tok);
  const GenerateOptions& options() const { return options_; }
  const std::vector<Token>& prompt() const { return result_.prompt_tokens; }
  GenerateResult& result() { return result_; }
  // Positions this sequence needs at most: prompt + max_tokens, at least 1.
  int MaxPositions() const;

 private:
  GenerateOptions options_;
  Sampler sampler_;
  std::vector<Token> history_;
  GenerateResult result_;
  std::string text_;  // the output decoded so far, kept while stop strings are set
};

// Where the earliest stop string that a text's newest part completes starts: the text's
// first `old_size` bytes were searched before, so only matches ending past them are new
// (each search starts len - 1 bytes back: linear over a whole generation). npos: none.
size_t FindNewStop(std::string_view text, size_t old_size, const std::vector<std::string>& stop);

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

// The engine's public face for the serving nodes (cloud and edge include only this).
//
// An Engine owns one loaded model and a worker thread that runs continuous batching:
// requests submitted from any thread join the running batch at the next step (their
// prompts are prefilled in the same forward pass as the other sequences' decode
// tokens), stream tokens through callbacks, and leave the batch as soon as they finish
// or are cancelled. The batch size and the KV memory are bounded; a full engine answers
// RESOURCE_EXHAUSTED instead of queueing without bound.
//
// A long prompt is prefilled in chunks (EngineOptions::step_tokens) so that the running
// decodes go on every step while it joins.
//
// KV memory is paged (KvCache blocks); a request whose prompt starts like a running
// sequence's or a cached prefix forks those blocks and prefills only the rest, and
// requests admitted together that share a prefix are staggered by one step so the
// prefix is computed once. Admission commits each sequence's worst case (prompt +
// max_tokens) against max_kv_bytes, so a running sequence never runs out of KV.
#ifndef PICE_ENGINE_ENGINE_H_
#define PICE_ENGINE_ENGINE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/generator.h"
#include "engine/model.h"

namespace pice {

struct EngineOptions {
  std::string model_path;
  std::string name;             // display name; default: the model's general.name
  int n_threads = 2;            // threads for the forward pass
  int max_batch = 16;           // sequences decoded together at most
  int max_queue = 64;           // requests waiting to join the batch at most
  int n_ctx = 0;                // per-sequence context; 0 = the model's training context
  size_t max_kv_bytes = size_t{2} << 30;  // KV memory (live sequences + prefix cache); 0 = unbounded
  int kv_block_size = 32;       // positions per KV block (a power of two)
  int prefix_cache_entries = 16;  // prompt prefixes kept for reuse; 0 = off
  int min_shared_prefix = 8;    // shorter common prefixes are recomputed
  // Tokens fed per forward pass at most (chunked prefill, as vLLM's token budget): the
  // running decodes first, prompts in chunks of the rest (at least 32). 0 = whole
  // prompts at once.
  int step_tokens = 64;
};

// One generation request. Callbacks run on the engine's worker thread and must not
// block; they may be called after Submit returns.
struct EngineRequest {
  std::vector<Token> prompt;    // non-empty
  GenerateOptions options;
  // Per generated token; return false to cancel the request.
  std::function<bool(Token token, float logprob)> on_token;
  // Exactly once, at the end (also on cancellation: finish == kCancelled).
  std::function<void(absl::StatusOr<GenerateResult>)> on_done;
  // Optional: when set and true, the request is cancelled at the next step.
  std::shared_ptr<std::atomic<bool>> cancelled;
};

struct EngineStats {
  int queued = 0;               // waiting to join
  int active = 0;               // in the running batch
  int max_batch = 0;
  size_t kv_bytes = 0;          // KV memory allocated (blocks in use, shared counted once)
  size_t kv_committed_bytes = 0;  // worst case the live sequences may still grow to
  size_t max_kv_bytes = 0;
  uint64_t prefix_hits = 0;     // requests that forked a shared prefix
  uint64_t prefix_tokens_reused = 0;  // prompt tokens not recomputed thanks to sharing
  double tokens_per_s = 0;      // generated tokens per second, recent average
  uint64_t completed = 0;
  uint64_t rejected = 0;
  uint64_t prompt_tokens = 0;     // prompt tokens of the requests admitted so far
  uint64_t generated_tokens = 0;  // tokens generated so far
  int peak_batch = 0;           // most sequences decoded together in one step so far
  uint64_t steps = 0;           // forward passes run
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  ~Engine();  // Stop()

  // Cancels what runs, answers what waits with UNAVAILABLE, and joins the worker: every
  // on_done of an accepted request has returned when Stop returns, and later Submits
  // are UNAVAILABLE. Owners whose callbacks touch their own members call it before
  // destroying them (the engine may be shared and outlive them). Idempotent; must not
  // be called from an engine callback.
  void Stop();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. INVALID_ARGUMENT for bad options or an empty/too long prompt,
  // RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE when shutting down. On error
  // no callback is called.
  absl::Status Submit(EngineRequest request);

  // Blocking convenience: submits and waits. `cancelled` may be null.
  absl::StatusOr<GenerateResult> Run(std::vector<Token> prompt, const GenerateOptions& options,
                                     std::function<bool(Token, float)> on_token = nullptr,
                                     std::shared_ptr<std::atomic<bool>> cancelled = nullptr);
  // Submits several requests at once (they decode together) and waits for all.
  absl::StatusOr<std::vector<GenerateResult>> RunBatch(
      const std::vector<std::vector<Token>>& prompts, const std::vector<GenerateOptions>& options,
      std::shared_ptr<std::atomic<bool>> cancelled = nullptr);

  const Model& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return model_->tokenizer(); }
  const std::string& name() const { return name_; }
  int n_ctx() const { return n_ctx_; }
  EngineStats stats() const;

 private:
  struct Impl;
  Engine() = default;
  std::unique_ptr<Model> model_;
  std::string name_;
  int n_ctx_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pice

#endif  // PICE_ENGINE_ENGINE_H_

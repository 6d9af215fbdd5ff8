// Mutable inference state over a shared Model: per-sequence KV caches and a Context
// that runs the forward pass for a batch of sequences in one go.
//
// A batch may mix sequences at different positions and with different numbers of new
// tokens (a prompt for one, a single decode token for another): the weight matrices
// are multiplied with the activations of all tokens together, attention runs per
// sequence over its own cache.
#ifndef PICE_ENGINE_CONTEXT_H_
#define PICE_ENGINE_CONTEXT_H_

#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/threadpool.h"

namespace pice {

// One sequence's part of a batch: `n_tokens` new tokens appended at kv->n_past().
struct SeqInput {
  KvCache* kv = nullptr;
  const Token* tokens = nullptr;
  int n_tokens = 0;
  bool all_logits = false;  // logits for every new token, else only for the last one
};

class Context {
 public:
  // n_threads >= 1 (the caller's thread included).
  Context(const Model& model, int n_threads);
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Runs the forward pass over all entries' tokens and advances each kv->n_past.
  // Errors: INVALID_ARGUMENT for a token id outside the vocabulary or an empty entry,
  // OUT_OF_RANGE when a sequence would pass its cache's n_ctx, RESOURCE_EXHAUSTED when
  // the KV pool is full. On error no cache's contents or n_past change.
  absl::Status Decode(std::span<const SeqInput> batch);

  // Logits ([n_vocab]) of entry `entry` of the last Decode: its last token, or its
  // token `i` when the entry asked for all logits. Valid until the next Decode.
  const float* Logits(int entry, int i = -1) const;

  const Model& model() const { return model_; }
  ThreadPool& pool() { return pool_; }

 private:
  void EnsureCapacity(int n_tokens, int n_out);

  const Model& model_;
  ThreadPool pool_;
  // Scratch, sized for the largest batch seen.
  int cap_tokens_ = 0, cap_out_ = 0;
  std::vector<float> x_, xn_, q_, k_, v_, att_, ffn_a_, ffn_b_, tmp_, logits_;
  std::vector<float> rope_cos_, rope_sin_;  // [n_tokens][n_rot/2]
  std::vector<int> out_offset_;             // first logits row of each entry
  std::vector<int> out_count_;
};

}  // namespace pice

#endif  // PICE_ENGINE_CONTEXT_H_

// Writes GGUF models with random weights and a small working byte-level BPE vocabulary,
// in the exact tensor layout of the `llama` or `qwen2` architecture, for tests and
// benchmarks of any shape (e.g. that of Qwen2.5-0.5B).
#ifndef PICE_ENGINE_MODEL_GEN_H_
#define PICE_ENGINE_MODEL_GEN_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "engine/gguf/gguf.h"

namespace pice {

struct GenModelOptions {
  std::string arch = "llama";   // "llama" or "qwen2" (QKV biases, tied embeddings, NEOX RoPE)
  int n_embd = 256;
  int n_layer = 2;
  int n_head = 4;
  int n_head_kv = 2;
  int n_ff = 512;
  int n_vocab = 1024;           // >= 300: 256 bytes, merges, control tokens, fillers
  int n_ctx = 2048;
  gguf::GgmlType type = gguf::GgmlType::kF32;  // matrices; norms and biases stay F32.
                                               // For q4_0 the token embedding is q8_0,
                                               // as llama-quantize's default mix does.
  uint64_t seed = 1;
  float stddev = 0.02f;         // weights ~ N(0, stddev^2)
};

// Returns INVALID_ARGUMENT naming the option when a value is out of range.
absl::Status ValidateGenModelOptions(const GenModelOptions& o);
absl::Status WriteRandomModel(const GenModelOptions& o, const std::string& path);

}  // namespace pice

#endif  // PICE_ENGINE_MODEL_GEN_H_

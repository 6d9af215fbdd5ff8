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
  // The quantization mix, as llama-quantize's TYPE (quant_mix.h): "f32", "f16", "bf16",
  // "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q4_k_s", "q5_k_m", "q5_k_s",
  // "q6_k". Each matrix gets the type llama-quantize would give it (e.g. q4_k_m: Q4_K,
  // Q6_K for output and some attn_v / ffn_down, fallbacks for rows not / 256) and the
  // same bytes; norms and biases stay F32.
  std::string type = "f32";
  uint64_t seed = 1;
  float stddev = 0.02f;         // weights ~ N(0, stddev^2)
};

// Returns INVALID_ARGUMENT naming the option when a value is out of range.
absl::Status ValidateGenModelOptions(const GenModelOptions& o);
absl::Status WriteRandomModel(const GenModelOptions& o, const std::string& path);

}  // namespace pice

#endif  // PICE_ENGINE_MODEL_GEN_H_

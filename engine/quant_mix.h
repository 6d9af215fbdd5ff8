// llama-quantize's quantization mixes: which type each tensor of a model gets for a
// target such as "q4_k_m", exactly as llama.cpp's llama_tensor_get_type (b4748) chooses
// for dense (non-MoE) llama and qwen2 models without an importance matrix or overrides.
//
// The rules, in short: only tensors whose name ends in "weight", with two or more
// dimensions, that are not norms (and not MoE routers, Mamba conv, RWKV time-mix or
// T5 relative-bias tensors) are quantized; the others keep their type. In the quantized
// mixes (all but f32/f16/bf16), output.weight (or token_embd.weight when the model has no
// output tensor) gets Q6_K, or Q8_0 when its rows do not fit; the K mixes bump attn_v and
// ffn_down in some layers (use_more_bits: the first and last eighth of the layers and
// every third between); and a K-quant whose row length is not a multiple of 256 falls back
// to Q5_0 (Q4_K), Q5_1 (Q5_K) or Q8_0 (Q6_K), or F16 when not a multiple of 32 either.
#ifndef PICE_ENGINE_QUANT_MIX_H_
#define PICE_ENGINE_QUANT_MIX_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/gguf/gguf.h"

namespace pice {

struct MixTensor {
  std::string name;
  std::vector<int64_t> ne;                       // ne[0] is the row length
  gguf::GgmlType type = gguf::GgmlType::kF32;    // its type now: kept when not quantized
};

struct MixOptions {
  // llama-quantize --pure: every quantized tensor gets the mix's base type, no
  // per-tensor rules (and no fallbacks: a row length that does not fit is an error).
  bool pure = false;
  // llama.cpp classes the model as a 70B (LLM_TYPE_70B; see IsLlamaType70B), which
  // bumps Q3_K/Q4_K attn_v tensors to Q5_K.
  bool is_70b = false;
};

// The mix names, lower case: "q4_k_m", "q4_k_s", "q5_k_m", "q5_k_s", "q6_k", "q8_0",
// "q4_0", "q4_1", "q5_0", "q5_1", "bf16", "f16", "f32". Mix names are matched without
// regard to case ("Q4_K_M" as llama-quantize spells them).
const std::vector<std::string>& MixNames();
// "q4_k_m, q4_k_s, ..." for messages.
std::string MixNameList();
// llama.cpp's llama_ftype number of a mix (general.file_type): q4_k_m 15, q8_0 7, ...;
// INVALID_ARGUMENT naming the mix when it is unknown.
absl::StatusOr<uint32_t> MixFileType(const std::string& mix);
// The mix's base type (Q4_K for q4_k_m, ...).
absl::StatusOr<gguf::GgmlType> MixBaseType(const std::string& mix);

// Whether llama.cpp gives a model of this architecture and shape the type LLM_TYPE_70B:
// llama with 80 layers and grouped-query attention (n_head_kv != n_head), qwen2 with 80.
bool IsLlamaType70B(const std::string& arch, int n_layer, int n_head, int n_head_kv);

// The order in which llama-quantize visits (and writes) tensors: by layer number
// ("blk.N."; tensors outside the blocks first), then by name. Indexes into `tensors`.
std::vector<size_t> LlamaTensorOrder(const std::vector<MixTensor>& tensors);

// The type each tensor of `tensors` gets (same order as `tensors`) in `mix`, for a
// model of n_layer blocks (`<arch>.block_count`). *n_fallback (if set) receives how many
// tensors needed a fallback type. INVALID_ARGUMENT naming the mix for an unknown mix, or
// naming the tensor when its rows cannot be stored in the type chosen (llama-quantize
// fails there too: e.g. q8_0 on rows of 100 values).
absl::StatusOr<std::vector<gguf::GgmlType>> ChooseTensorTypes(const std::string& mix,
                                                               const std::vector<MixTensor>& tensors,
                                                               int n_layer,
                                                               int* n_fallback = nullptr,
                                                               const MixOptions& options = {});

}  // namespace pice

#endif  // PICE_ENGINE_QUANT_MIX_H_

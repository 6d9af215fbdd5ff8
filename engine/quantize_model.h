// `pice quantize`: converts an F32/F16/BF16 GGUF model into a quantization mix (q4_k_m,
// q8_0, bf16, ... see quant_mix.h), as `llama-quantize IN OUT TYPE` does: the same
// tensor types, the same quantized bytes (ggml's reference quantizers, quantize_k.h),
// and the same file layout: the input's metadata in its order with
// general.quantization_version = 2 and general.file_type = the mix's llama_ftype moved to
// the end, tensors in llama.cpp's order (by layer, then name). For llama.cpp b4748 the
// output is byte-identical to llama-quantize's (tests/engine/quantize_k_test.cc).
#ifndef PICE_ENGINE_QUANTIZE_MODEL_H_
#define PICE_ENGINE_QUANTIZE_MODEL_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "engine/gguf/gguf.h"

namespace pice {

struct QuantizeModelOptions {
  std::string mix = "q8_0";  // a name of MixNames()
  int n_threads = 1;         // rows of a tensor are split over this many threads
  bool pure = false;         // llama-quantize --pure: the mix's base type everywhere
};

struct QuantizeModelReport {
  int n_tensors = 0;
  int n_converted = 0;  // tensors whose type changed
  int n_fallback = 0;   // K-quant tensors stored in a fallback type (rows not / 256)
  std::map<gguf::GgmlType, int> type_counts;  // of the output tensors
  uint64_t in_bytes = 0;   // tensor data, input
  uint64_t out_bytes = 0;  // tensor data, output
};

// Reads `in`, writes `out` (through a temporary file renamed at the end, so `out` may be
// `in`). Errors name the file, the tensor or the mix: INVALID_ARGUMENT for an unknown mix
// or a tensor whose rows the mix cannot store; FAILED_PRECONDITION for an input tensor
// that is not F32, F16 or BF16 (requantizing is not supported) or a model without
// `<arch>.block_count`; NOT_FOUND / INVALID_ARGUMENT from opening `in`; others for
// failed writes.
absl::Status QuantizeModel(const std::string& in, const std::string& out,
                           const QuantizeModelOptions& options,
                           QuantizeModelReport* report = nullptr);

}  // namespace pice

#endif  // PICE_ENGINE_QUANTIZE_MODEL_H_

// Weight quantizers for the formats llama-quantize writes: Q4_1, Q5_0, Q5_1 and the
// K-quants Q4_K, Q5_K, Q6_K, each a faithful port of ggml's reference quantizer
// (quantize_row_<type>_ref, the path llama-quantize takes without an importance
// matrix), producing the same bytes. QuantizeRowRef dispatches over every type the
// engine reads, F32/F16/BF16/Q8_0/Q4_0 included.
//
// k is the number of elements; it must be a multiple of the type's block size (32, or
// 256 for the K-quants). Rows are independent: quantizing n rows of k elements in one
// call or n calls gives the same bytes.
#ifndef PICE_ENGINE_KERNELS_QUANTIZE_K_H_
#define PICE_ENGINE_KERNELS_QUANTIZE_K_H_

#include <cstdint>

#include "engine/gguf/gguf.h"
#include "engine/kernels/kernels.h"

namespace pice::kernels {

void QuantizeRowQ4_1Ref(const float* x, BlockQ4_1* y, int64_t k);
void QuantizeRowQ5_0Ref(const float* x, BlockQ5_0* y, int64_t k);
void QuantizeRowQ5_1Ref(const float* x, BlockQ5_1* y, int64_t k);
void QuantizeRowQ4_KRef(const float* x, BlockQ4_K* y, int64_t k);
void QuantizeRowQ5_KRef(const float* x, BlockQ5_K* y, int64_t k);
void QuantizeRowQ6_KRef(const float* x, BlockQ6_K* y, int64_t k);

// Writes k elements of `x` to `dst` (gguf::RowBytes(type, k) bytes) in `type`: F32
// (copied), F16 and BF16 (rounded to nearest even), Q8_0 and Q4_0 (QuantizeRowQ8_0Ref /
// QuantizeRowQ4_0Ref) and the quantizers above. False, writing nothing, for any other
// type or when k is not a multiple of the type's block size.
bool QuantizeRowRef(gguf::GgmlType type, const float* x, void* dst, int64_t k);

}  // namespace pice::kernels

#endif  // PICE_ENGINE_KERNELS_QUANTIZE_K_H_

// Numeric kernels of the engine: FP16/BF16 conversion, the block formats of llama.cpp
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants Q4_K, Q5_K, Q6_K, in its layouts),
// quantization, dot products and the matrix multiply the forward pass runs on.
//
// Each weight type is multiplied with activations rounded to its companion type first,
// as llama.cpp's CPU backend does (../shared/models/quants/README.md): Q4_0/Q5_0/Q8_0
// with Q8_0, Q4_1/Q5_1 with Q8_1, the K-quants with Q8_K, BF16 with BF16, F16 with F16.
//
// Every SIMD path has a scalar reference in namespace `ref`; tests check each against
// it. Activations multiplied with Q8_0/Q4_0 weights are first rounded to Q8_0 blocks
// exactly as llama.cpp's x86 path does (scale = max|x|/127 stored as FP16, values
// x*127/max rounded half-to-even), so quantized models follow llama.cpp's outputs.
// F16 weights are multiplied with activations rounded to FP16, as ggml does.
#ifndef PICE_ENGINE_KERNELS_KERNELS_H_
#define PICE_ENGINE_KERNELS_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "engine/gguf/gguf.h"

namespace pice {
class ThreadPool;
}

namespace pice::kernels {

constexpr int kQK = 32;  // elements per Q8_0 / Q4_0 block

#pragma pack(push, 1)
struct BlockQ8_0 {
  uint16_t d;        // FP16 scale
  int8_t qs[kQK];    // value = d * qs[i]
};
struct BlockQ4_0 {
  uint16_t d;            // FP16 scale
  uint8_t qs[kQK / 2];   // low nibbles hold elements 0..15, high nibbles 16..31;
                         // value = d * (nibble - 8)
};
#pragma pack(pop)
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_0) == 18);

constexpr int kQKK = 256;  // elements per K-quant super-block

#pragma pack(push, 1)
struct BlockQ4_1 {
  uint16_t d, m;         // FP16 scale and minimum
  uint8_t qs[kQK / 2];   // as Q4_0; value = d * nibble + m
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];         // bit j: the 5th bit of element j
  uint8_t qs[kQK / 2];   // low 4 bits as Q4_0; value = d * (q5 - 16)
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];   // value = d * q5 + m
};
struct BlockQ8_1 {       // activations for Q4_1/Q5_1
  uint16_t d;            // FP16 scale
  uint16_t s;            // FP16 of d * sum(qs)
  int8_t qs[kQK];
};
struct BlockQ4_K {       // 8 sub-blocks of 32; value = d * sc_j * q - dmin * m_j
  uint16_t d, dmin;
  uint8_t scales[12];    // 6-bit scales and mins, packed (GetScaleMinK4)
  uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kQKK / 8];  // the 5th bits
  uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {       // 16 sub-blocks of 16; value = d * scales_j * (q6 - 32)
  uint8_t ql[kQKK / 2];  // low 4 bits
  uint8_t qh[kQKK / 4];  // high 2 bits
  int8_t scales[kQKK / 16];
  uint16_t d;
};
#pragma pack(pop)
struct BlockQ8_K {       // activations for the K-quants
  float d;               // -max/127 (signed, as llama.cpp)
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];  // sums of 16
};
static_assert(sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_1) == 36 && sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);

float Fp16ToFp32(uint16_t h);
uint16_t Fp32ToFp16(float f);  // round to nearest even, as F16C does
inline float Bf16ToFp32(uint16_t h) {
  const uint32_t u = uint32_t{h} << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
uint16_t Fp32ToBf16(float f);  // round to nearest even; NaN stays a quiet NaN (ggml's)

// Activations for Q4_1/Q5_1: Q8_0's x86 rounding plus s = FP16(d * sum). k % 32 == 0.
void QuantizeRowQ8_1(const float* x, BlockQ8_1* y, int64_t k);
// Activations for the K-quants (llama.cpp's quantize_row_q8_K_ref). k % 256 == 0.
void QuantizeRowQ8_K(const float* x, BlockQ8_K* y, int64_t k);

// Activation quantization (llama.cpp x86 rounding, see above). k % 32 == 0.
void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t k);
// Weight quantization as ggml's reference quantizers do (for gen-model). k % 32 == 0.
void QuantizeRowQ8_0Ref(const float* x, BlockQ8_0* y, int64_t k);
void QuantizeRowQ4_0Ref(const float* x, BlockQ4_0* y, int64_t k);
// Any supported type to float; k elements.
void DequantizeRow(gguf::GgmlType type, const void* src, float* dst, int64_t k);

// Dot products over n elements (n % 32 == 0 for the block formats).
float DotQ8_0Q8_0(const BlockQ8_0* w, const BlockQ8_0* x, int64_t n);
float DotQ4_0Q8_0(const BlockQ4_0* w, const BlockQ8_0* x, int64_t n);
float DotF16F16(const uint16_t* w, const uint16_t* x, int64_t n);
float DotF32(const float* a, const float* b, int64_t n);
float DotQ4_1Q8_1(const BlockQ4_1* w, const BlockQ8_1* x, int64_t n);
float DotQ5_0Q8_0(const BlockQ5_0* w, const BlockQ8_0* x, int64_t n);
float DotQ5_1Q8_1(const BlockQ5_1* w, const BlockQ8_1* x, int64_t n);
float DotQ4_KQ8_K(const BlockQ4_K* w, const BlockQ8_K* x, int64_t n);
float DotQ5_KQ8_K(const BlockQ5_K* w, const BlockQ8_K* x, int64_t n);
float DotQ6_KQ8_K(const BlockQ6_K* w, const BlockQ8_K* x, int64_t n);
float DotBf16Bf16(const uint16_t* w, const uint16_t* x, int64_t n);

// How MatMul multiplies a weight type: its activations are converted once per token row
// with `quantize` (act_bytes(k) bytes for k elements) and each weight row is dotted
// with them by `dot`. Null for a type without such a kernel (F32/F16/Q8_0/Q4_0 have their
// own paths). `reference`: the scalar references (for MatMulRef and tests).
struct DotKernel {
  void (*quantize)(const float* x, void* y, int64_t k);
  int64_t (*act_bytes)(int64_t k);
  float (*dot)(const void* w, const void* x, int64_t n);
  // Optional: one weight row with n_tok <= 16 tokens' activations (token t at x + t *
  // x_stride), out[t] bit-identical to dot(w, x + t * x_stride, n).
  void (*dot_n)(const void* w, const void* x, int64_t x_stride, int n_tok, int64_t n,
                float* out) = nullptr;
};
const DotKernel* KernelFor(gguf::GgmlType type, bool reference = false);

namespace ref {
void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t k);
float DotQ8_0Q8_0(const BlockQ8_0* w, const BlockQ8_0* x, int64_t n);
float DotQ4_0Q8_0(const BlockQ4_0* w, const BlockQ8_0* x, int64_t n);
float DotF16F16(const uint16_t* w, const uint16_t* x, int64_t n);
float DotF32(const float* a, const float* b, int64_t n);
float DotQ4_1Q8_1(const BlockQ4_1* w, const BlockQ8_1* x, int64_t n);
float DotQ5_0Q8_0(const BlockQ5_0* w, const BlockQ8_0* x, int64_t n);
float DotQ5_1Q8_1(const BlockQ5_1* w, const BlockQ8_1* x, int64_t n);
float DotQ4_KQ8_K(const BlockQ4_K* w, const BlockQ8_K* x, int64_t n);
float DotQ5_KQ8_K(const BlockQ5_K* w, const BlockQ8_K* x, int64_t n);
float DotQ6_KQ8_K(const BlockQ6_K* w, const BlockQ8_K* x, int64_t n);
float DotBf16Bf16(const uint16_t* w, const uint16_t* x, int64_t n);
}  // namespace ref

struct PackedWeights;

// A weight matrix of `rows` rows of `cols` elements each (GGUF ne0 = cols), stored
// row-major in `type`. Points into a mapped model file. `packed`, when set, is the same
// matrix repacked by PackWeights (which MatMul then reads instead of `data`).
struct Matrix {
  gguf::GgmlType type = gguf::GgmlType::kF32;
  const void* data = nullptr;
  int64_t cols = 0;
  int64_t rows = 0;
  int64_t row_bytes = 0;
  const PackedWeights* packed = nullptr;
};

// A quantized matrix repacked once (at model load) into the tile layout that the
// compiled MatMul path streams (see matmul_avx512.cc). Self-contained: does not point
// into the source matrix. Immutable, shareable between threads.
struct PackedWeights {
  gguf::GgmlType type = gguf::GgmlType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t tile_bytes = 0;  // bytes per tile of 16 rows
  size_t bytes = 0;        // of `data`
  uint8_t* data = nullptr;

  PackedWeights() = default;
  ~PackedWeights();
  PackedWeights(const PackedWeights&) = delete;
  PackedWeights& operator=(const PackedWeights&) = delete;
};

// The packed form of `w` for this build's MatMul, or nullptr when the compiled path
// reads `w` in place (F16/F32 weights; the AVX2, NEON and scalar builds).
std::unique_ptr<PackedWeights> PackWeights(const Matrix& w);

// Packs every matrix of `ms` that PackWeights would, over up to `n_threads` threads;
// sets each one's `packed` and appends the owners to `owners`. `release`, when set, is
// called with each source range once it is packed (the model hands the mapped pages
// back, so a packed model is not resident twice).
void PackMatrices(const std::vector<Matrix*>& ms, int n_threads,
                  std::vector<std::unique_ptr<PackedWeights>>* owners,
                  const std::function<void(const void*, size_t)>& release = nullptr);

// y[t, r] = dot(W row r, x[t, :]) for t < n_tokens, r < W.rows.
// x is [n_tokens, W.cols] row-major, y is [n_tokens, W.rows] row-major.
// Converts x to the weight's dot type once (Q8_0 / F16 / F32), then splits the rows
// over the pool. `pool` may be null (runs on the caller). Not reentrant for the same
// pool.
// Batch invariant: y[t, r] is computed by the same sequence of float operations for
// any n_tokens, position of t in the batch, thread count and pool, and whether or not
// w.packed is set.
void MatMul(const Matrix& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool);

// Scalar reference of MatMul (same activation rounding), for tests.
void MatMulRef(const Matrix& w, const float* x, int64_t n_tokens, float* y);

// Names of the SIMD paths compiled in, e.g. "avx512vnni", "avx2", "neon", "scalar".
const char* SimdPath();

}  // namespace pice::kernels

#endif  // PICE_ENGINE_KERNELS_KERNELS_H_

// Numeric kernels of the engine: FP16 conversion, Q8_0/Q4_0 block formats (the
// layouts llama.cpp uses), quantization, dot products and the matrix multiply the
// forward pass runs on.
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

float Fp16ToFp32(uint16_t h);
uint16_t Fp32ToFp16(float f);  // round to nearest even, as F16C does

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

namespace ref {
void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t k);
float DotQ8_0Q8_0(const BlockQ8_0* w, const BlockQ8_0* x, int64_t n);
float DotQ4_0Q8_0(const BlockQ4_0* w, const BlockQ8_0* x, int64_t n);
float DotF16F16(const uint16_t* w, const uint16_t* x, int64_t n);
float DotF32(const float* a, const float* b, int64_t n);
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
// sets each one's `packed` and appends the owners to `owners`.
void PackMatrices(const std::vector<Matrix*>& ms, int n_threads,
                  std::vector<std::unique_ptr<PackedWeights>>* owners);

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

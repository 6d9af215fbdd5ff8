// Internals of the kernels shared between their .cc files and the tests: which SIMD
// path is compiled, scalar FP16 conversion, the one-block activation quantizer, and the
// architecture-specific MatMul entry point.
#ifndef PICE_ENGINE_KERNELS_KERNELS_INTERNAL_H_
#define PICE_ENGINE_KERNELS_KERNELS_INTERNAL_H_

#include <cstdint>
#include <cstring>

#include "engine/kernels/kernels.h"

// GCC 12 reports false -W(maybe-)uninitialized warnings inside the AVX-512 intrinsic
// headers (their `__Y = __Y` placeholders) wherever they are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#if defined(__F16C__) || defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON)
#include <arm_neon.h>
#endif

// Exactly one of these is 1: the path the Dot*/MatMul/QuantizeRowQ8_0 entry points use.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__FMA__) && defined(__F16C__)
#define PICE_KERNELS_AVX512VNNI 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define PICE_KERNELS_AVX2 1
#elif defined(__ARM_NEON) && defined(__aarch64__)
#define PICE_KERNELS_NEON 1
#else
#define PICE_KERNELS_SCALAR 1
#endif

namespace pice::kernels::internal {

// Portable FP16 conversions (integer arithmetic only, immune to FP contraction and the
// FP environment). Fp32ToFp16Scalar rounds to nearest even; both map NaN to a quiet NaN
// keeping the sign and the top payload bits, as F16C does.
float Fp16ToFp32Scalar(uint16_t h);
uint16_t Fp32ToFp16Scalar(float f);

inline float Fp16ToFp32Fast(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  return Fp16ToFp32Scalar(h);
#endif
}

// Quantizes 32 floats to one Q8_0 block with llama.cpp's x86 rounding (see
// QuantizeRowQ8_0); returns the sum of the 32 quantized values.
int32_t QuantizeBlockQ8_0(const float* x, BlockQ8_0* y);

#if defined(PICE_KERNELS_AVX512VNNI)
// The AVX-512 VNNI MatMul (matmul_avx512.cc). Same contract as MatMul.
void MatMulAvx512(const Matrix& w, const float* x, int64_t n_tokens, float* y,
                  ThreadPool* pool);
// Rows per packed tile, and bytes per tile of a `cols`-column matrix of `type` (0 when
// the AVX-512 path does not pack that type).
constexpr int64_t kPackTileRows = 16;
int64_t PackedTileBytes(gguf::GgmlType type, int64_t cols);
// Packs tiles [tile_begin, tile_end) of `w` (rows 16 * tile_begin ...) to `dst`, which
// receives tile `tile_begin`.
void PackTiles(const Matrix& w, int64_t tile_begin, int64_t tile_end, uint8_t* dst);
#endif

// A growable, 64-byte aligned byte buffer; keeps its memory between uses.
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ~ScratchBuffer();
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  // Returns at least `bytes` bytes, 64-byte aligned; contents unspecified.
  void* Get(size_t bytes);

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

inline size_t AlignUp(size_t n, size_t a) { return (n + a - 1) / a * a; }

}  // namespace pice::kernels::internal

#endif  // PICE_ENGINE_KERNELS_KERNELS_INTERNAL_H_

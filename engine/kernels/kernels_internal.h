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

// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K super-block (llama.cpp's
// get_scale_min_k4).
void GetScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m);
// Dequantizes the types of quant_k.cc; false for any other type.
bool DequantizeRowK(gguf::GgmlType type, const void* src, float* dst, int64_t k);

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

#if defined(PICE_KERNELS_AVX512VNNI) || defined(PICE_KERNELS_AVX2)
inline float HsumPs256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Sum over 4-byte groups of u8(a) * s8(b) into 8 int32 lanes. The AVX2 fallback
// (maddubs) saturates 16-bit pair sums, so callers keep |a| <= 128 and |b| <= 127.
inline __m256i DotBytes(__m256i a_u8, __m256i b_s8) {
#if defined(PICE_KERNELS_AVX512VNNI)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), a_u8, b_s8);
#elif defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), a_u8, b_s8);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(a_u8, b_s8), _mm256_set1_epi16(1));
#endif
}

// 32 Q4_0 nibbles as bytes 0..15: low nibbles (elements 0..15) then high (16..31).
inline __m256i UnpackNibbles(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}
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

// Dot products: Q8_0·Q8_0, Q4_0·Q8_0, F16·F16, F32·F32, SIMD and scalar reference.
//
// Quantized dots compute each block's integer dot exactly, then accumulate
// float(isum) * (d_w * d_x) in float, as ggml does; only the order of the float sums
// differs between paths.
#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_internal.h"

namespace pice::kernels {
namespace {

using internal::Fp16ToFp32Fast;

#if defined(PICE_KERNELS_AVX512VNNI) || defined(PICE_KERNELS_AVX2)
using internal::DotBytes;
using internal::HsumPs256;

using internal::UnpackNibbles;
#endif

}  // namespace

float DotQ8_0Q8_0(const BlockQ8_0* w, const BlockQ8_0* x, int64_t n) {
  const int64_t nb = n / kQK;
#if defined(PICE_KERNELS_AVX512VNNI) || defined(PICE_KERNELS_AVX2)
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs));
    const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs));
    // Sign trick as llama.cpp: |w| (unsigned) times x with w's sign (|x| <= 127).
    const __m256i dp = DotBytes(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
    const __m256 d = _mm256_set1_ps(Fp16ToFp32Fast(w[i].d) * Fp16ToFp32Fast(x[i].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), d, acc);
  }
  return HsumPs256(acc);
#elif defined(PICE_KERNELS_NEON)
  float32x4_t acc = vdupq_n_f32(0.0f);
  for (int64_t i = 0; i < nb; ++i) {
    const int8x16_t w0 = vld1q_s8(w[i].qs), w1 = vld1q_s8(w[i].qs + 16);
    const int8x16_t x0 = vld1q_s8(x[i].qs), x1 = vld1q_s8(x[i].qs + 16);
#if defined(__ARM_FEATURE_DOTPROD)
    int32x4_t s = vdotq_s32(vdupq_n_s32(0), w0, x0);
    s = vdotq_s32(s, w1, x1);
#else
    int16x8_t p0 = vmull_s8(vget_low_s8(w0), vget_low_s8(x0));
    p0 = vmlal_s8(p0, vget_high_s8(w0), vget_high_s8(x0));
    int16x8_t p1 = vmull_s8(vget_low_s8(w1), vget_low_s8(x1));
    p1 = vmlal_s8(p1, vget_high_s8(w1), vget_high_s8(x1));
    const int32x4_t s = vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1));
#endif
    acc = vmlaq_n_f32(acc, vcvtq_f32_s32(s), Fp16ToFp32Fast(w[i].d) * Fp16ToFp32Fast(x[i].d));
  }
  return vaddvq_f32(acc);
#else
  return ref::DotQ8_0Q8_0(w, x, n);
#endif
}

float DotQ4_0Q8_0(const BlockQ4_0* w, const BlockQ8_0* x, int64_t n) {
  const int64_t nb = n / kQK;
#if defined(PICE_KERNELS_AVX512VNNI)
  __m256 acc = _mm256_setzero_ps();
  const __m256i eights = _mm256_set1_epi8(8);
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i qw = UnpackNibbles(w[i].qs);
    const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs));
    // sum (nib - 8) * x = sum nib * x - sum 8 * x, both exact in int32.
    const __m256i dp = _mm256_sub_epi32(DotBytes(qw, qx), DotBytes(eights, qx));
    const __m256 d = _mm256_set1_ps(Fp16ToFp32Fast(w[i].d) * Fp16ToFp32Fast(x[i].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), d, acc);
  }
  return HsumPs256(acc);
#elif defined(PICE_KERNELS_AVX2)
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i qw = _mm256_sub_epi8(UnpackNibbles(w[i].qs), _mm256_set1_epi8(8));
    const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs));
    const __m256i dp = DotBytes(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
    const __m256 d = _mm256_set1_ps(Fp16ToFp32Fast(w[i].d) * Fp16ToFp32Fast(x[i].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), d, acc);
  }
  return HsumPs256(acc);
#elif defined(PICE_KERNELS_NEON)
  float32x4_t acc = vdupq_n_f32(0.0f);
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  for (int64_t i = 0; i < nb; ++i) {
    const uint8x16_t q = vld1q_u8(w[i].qs);
    const int8x16_t w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), vdupq_n_s8(8));
    const int8x16_t w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
    const int8x16_t x0 = vld1q_s8(x[i].qs), x1 = vld1q_s8(x[i].qs + 16);
#if defined(__ARM_FEATURE_DOTPROD)
    int32x4_t s = vdotq_s32(vdupq_n_s32(0), w0, x0);
    s = vdotq_s32(s, w1, x1);
#else
    int16x8_t p0 = vmull_s8(vget_low_s8(w0), vget_low_s8(x0));
    p0 = vmlal_s8(p0, vget_high_s8(w0), vget_high_s8(x0));
    int16x8_t p1 = vmull_s8(vget_low_s8(w1), vget_low_s8(x1));
    p1 = vmlal_s8(p1, vget_high_s8(w1), vget_high_s8(x1));
    const int32x4_t s = vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1));
#endif
    acc = vmlaq_n_f32(acc, vcvtq_f32_s32(s), Fp16ToFp32Fast(w[i].d) * Fp16ToFp32Fast(x[i].d));
  }
  return vaddvq_f32(acc);
#else
  return ref::DotQ4_0Q8_0(w, x, n);
#endif
}

float DotF16F16(const uint16_t* w, const uint16_t* x, int64_t n) {
  int64_t i = 0;
  float sum = 0.0f;
#if defined(PICE_KERNELS_AVX512VNNI)
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    const __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i)));
    const __m512 x0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
    const __m512 w1 =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i + 16)));
    const __m512 x1 =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 16)));
    acc0 = _mm512_fmadd_ps(w0, x0, acc0);
    acc1 = _mm512_fmadd_ps(w1, x1, acc1);
  }
  if (i < n) {
    const int64_t rem = n - i;
    const __mmask16 m0 = rem >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << rem) - 1);
    const __mmask16 m1 = rem > 16 ? static_cast<__mmask16>((1u << (rem - 16)) - 1) : 0;
    acc0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m0, w + i)),
                           _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m0, x + i)), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m1, w + i + 16)),
                           _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m1, x + i + 16)), acc1);
    i = n;
  }
  sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#elif defined(PICE_KERNELS_AVX2)
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i))),
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))), acc0);
    acc1 = _mm256_fmadd_ps(
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i + 8))),
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8))), acc1);
  }
  sum = HsumPs256(_mm256_add_ps(acc0, acc1));
#elif defined(PICE_KERNELS_NEON)
  float32x4_t acc = vdupq_n_f32(0.0f);
  for (; i + 4 <= n; i += 4) {
    const float32x4_t a = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(w + i)));
    const float32x4_t b = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i)));
    acc = vfmaq_f32(acc, a, b);
  }
  sum = vaddvq_f32(acc);
#endif
  for (; i < n; ++i) sum += Fp16ToFp32Fast(w[i]) * Fp16ToFp32Fast(x[i]);
  return sum;
}

float DotF32(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float sum = 0.0f;
#if defined(PICE_KERNELS_AVX512VNNI)
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i < n; i += 16) {
    const int64_t rem = n - i;
    const __mmask16 m = rem >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << rem) - 1);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
  }
  i = n;
  sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#elif defined(PICE_KERNELS_AVX2)
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  sum = HsumPs256(_mm256_add_ps(acc0, acc1));
#elif defined(PICE_KERNELS_NEON)
  float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
  for (; i + 8 <= n; i += 8) {
    acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
    acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
  }
  sum = vaddvq_f32(vaddq_f32(acc0, acc1));
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

namespace ref {

float DotQ8_0Q8_0(const BlockQ8_0* w, const BlockQ8_0* x, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int32_t isum = 0;
    for (int j = 0; j < kQK; ++j) isum += w[i].qs[j] * x[i].qs[j];
    sum += static_cast<float>(isum) *
           (internal::Fp16ToFp32Scalar(w[i].d) * internal::Fp16ToFp32Scalar(x[i].d));
  }
  return sum;
}

float DotQ4_0Q8_0(const BlockQ4_0* w, const BlockQ8_0* x, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int32_t isum = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      isum += ((w[i].qs[j] & 0x0F) - 8) * x[i].qs[j];
      isum += ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + kQK / 2];
    }
    sum += static_cast<float>(isum) *
           (internal::Fp16ToFp32Scalar(w[i].d) * internal::Fp16ToFp32Scalar(x[i].d));
  }
  return sum;
}

float DotF16F16(const uint16_t* w, const uint16_t* x, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    sum += internal::Fp16ToFp32Scalar(w[i]) * internal::Fp16ToFp32Scalar(x[i]);
  }
  return sum;
}

float DotF32(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

}  // namespace ref

const char* SimdPath() {
#if defined(PICE_KERNELS_AVX512VNNI)
  return "avx512vnni";
#elif defined(PICE_KERNELS_AVX2)
  return "avx2";
#elif defined(PICE_KERNELS_NEON)
  return "neon";
#else
  return "scalar";
#endif
}

}  // namespace pice::kernels

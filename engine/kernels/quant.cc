// FP16 conversion, Q8_0/Q4_0 quantization and dequantization.
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_internal.h"

namespace pice::kernels {
namespace internal {
namespace {

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Keeps the compiler from fusing `v` into a following add (FMA contraction), so the
// reference quantizers round the product exactly as their C source reads.
inline float Rounded(float v) {
  volatile float t = v;
  return t;
}

// cvtps_epi32 semantics: NaN or out of int32 range gives INT32_MIN; then the
// saturating packs of llama.cpp's path clamp to int8.
inline int8_t RoundToInt8Sat(float v) {
  const float r = std::nearbyint(v);  // current rounding mode: nearest even
  int32_t i;
  if (!(r >= -2147483648.0f && r < 2147483648.0f)) {
    i = INT32_MIN;
  } else {
    i = static_cast<int32_t>(r);
  }
  if (i > 127) i = 127;
  if (i < -128) i = -128;
  return static_cast<int8_t>(i);
}

}  // namespace

float Fp16ToFp32Scalar(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t e = (h >> 10) & 0x1F;
  uint32_t m = h & 0x3FF;
  uint32_t bits;
  if (e == 0) {
    if (m == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      e = 113;
      while (!(m & 0x400)) {
        m <<= 1;
        --e;
      }
      bits = sign | (e << 23) | ((m & 0x3FF) << 13);
    }
  } else if (e == 31) {
    bits = sign | 0x7F800000 | (m << 13) | (m ? 0x400000u : 0u);
  } else {
    bits = sign | ((e + 112) << 23) | (m << 13);
  }
  return BitsFloat(bits);
}

uint16_t Fp32ToFp16Scalar(float f) {
  const uint32_t x = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7FFFFFFF;
  if (ax > 0x7F800000) {  // NaN: quiet, keep the top payload bits
    return sign | 0x7E00 | ((ax >> 13) & 0x3FF);
  }
  if (ax >= 0x47800000) return sign | 0x7C00;  // >= 2^16 (and inf): infinity
  if (ax < 0x38800000) {                       // below 2^-14: subnormal half or zero
    if (ax < 0x33000000) return sign;          // <= 2^-25 rounds to zero
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7FFFFF) | 0x800000;
    const uint32_t shift = 126 - e;  // value in units of 2^-24 is m >> shift
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;
    return sign | static_cast<uint16_t>(q);
  }
  const uint32_t e = ax >> 23;
  const uint32_t mant = ax & 0x7FFFFF;
  uint32_t h = ((e - 112) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // carries into exponent / inf
  return sign | static_cast<uint16_t>(h);
}

int32_t QuantizeBlockQ8_0(const float* x, BlockQ8_0* y) {
#if defined(__AVX2__)
  // llama.cpp quantize_row_q8_0, __AVX2__ || __AVX__ branch.
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  __m256 v0 = _mm256_loadu_ps(x);
  __m256 v1 = _mm256_loadu_ps(x + 8);
  __m256 v2 = _mm256_loadu_ps(x + 16);
  __m256 v3 = _mm256_loadu_ps(x + 24);
  __m256 max_abs = _mm256_andnot_ps(sign_bit, v0);
  max_abs = _mm256_max_ps(max_abs, _mm256_andnot_ps(sign_bit, v1));
  max_abs = _mm256_max_ps(max_abs, _mm256_andnot_ps(sign_bit, v2));
  max_abs = _mm256_max_ps(max_abs, _mm256_andnot_ps(sign_bit, v3));
  __m128 max4 = _mm_max_ps(_mm256_extractf128_ps(max_abs, 1), _mm256_castps256_ps128(max_abs));
  max4 = _mm_max_ps(max4, _mm_movehl_ps(max4, max4));
  max4 = _mm_max_ss(max4, _mm_movehdup_ps(max4));
  const float amax = _mm_cvtss_f32(max4);
  const float d = amax / 127.f;
  y->d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
  const float id = amax != 0.0f ? 127.f / amax : 0.0f;
  const __m256 mul = _mm256_set1_ps(id);
  v0 = _mm256_round_ps(_mm256_mul_ps(v0, mul), _MM_ROUND_NEAREST);
  v1 = _mm256_round_ps(_mm256_mul_ps(v1, mul), _MM_ROUND_NEAREST);
  v2 = _mm256_round_ps(_mm256_mul_ps(v2, mul), _MM_ROUND_NEAREST);
  v3 = _mm256_round_ps(_mm256_mul_ps(v3, mul), _MM_ROUND_NEAREST);
  __m256i i0 = _mm256_cvtps_epi32(v0);
  __m256i i1 = _mm256_cvtps_epi32(v1);
  __m256i i2 = _mm256_cvtps_epi32(v2);
  __m256i i3 = _mm256_cvtps_epi32(v3);
  // Sum before packing (|q| <= 127 except for NaN input, which is unsupported).
  __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
  i0 = _mm256_packs_epi32(i0, i1);
  i2 = _mm256_packs_epi32(i2, i3);
  i0 = _mm256_packs_epi16(i0, i2);
  // packs interleave 128-bit lanes; restore the order.
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  i0 = _mm256_permutevar8x32_epi32(i0, perm);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y->qs), i0);
  return _mm_cvtsi128_si32(s4);
#elif defined(PICE_KERNELS_NEON)
  // llama.cpp's NEON branch: vmaxvq of |x|, vcvtnq (round to nearest even).
  float32x4_t v[8];
  for (int j = 0; j < 8; ++j) v[j] = vld1q_f32(x + 4 * j);
  float32x4_t m = vabsq_f32(v[0]);
  for (int j = 1; j < 8; ++j) m = vmaxq_f32(m, vabsq_f32(v[j]));
  const float amax = vmaxvq_f32(m);
  const float d = amax / 127.f;
  const float id = amax != 0.0f ? 127.f / amax : 0.0f;
  y->d = Fp32ToFp16(d);
  int32_t sum = 0;
  for (int j = 0; j < 8; ++j) {
    const int32x4_t vi = vcvtnq_s32_f32(vmulq_n_f32(v[j], id));
    sum += vaddvq_s32(vi);
    y->qs[4 * j + 0] = static_cast<int8_t>(vgetq_lane_s32(vi, 0));
    y->qs[4 * j + 1] = static_cast<int8_t>(vgetq_lane_s32(vi, 1));
    y->qs[4 * j + 2] = static_cast<int8_t>(vgetq_lane_s32(vi, 2));
    y->qs[4 * j + 3] = static_cast<int8_t>(vgetq_lane_s32(vi, 3));
  }
  return sum;
#else
  ref::QuantizeRowQ8_0(x, y, kQK);
  int32_t sum = 0;
  for (int j = 0; j < kQK; ++j) sum += y->qs[j];
  return sum;
#endif
}

}  // namespace internal

float Fp16ToFp32(uint16_t h) { return internal::Fp16ToFp32Fast(h); }

uint16_t Fp32ToFp16(float f) {
#if defined(__F16C__)
  return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
  return internal::Fp32ToFp16Scalar(f);
#endif
}

void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t k) {
  const int64_t nb = k / kQK;
  for (int64_t i = 0; i < nb; ++i) internal::QuantizeBlockQ8_0(x + i * kQK, y + i);
}

namespace ref {

void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t k) {
  const int64_t nb = k / kQK;
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float d = amax / 127.f;
    y[i].d = internal::Fp32ToFp16Scalar(d);
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = internal::RoundToInt8Sat(internal::Rounded(xb[j] * id));
  }
}

}  // namespace ref

void QuantizeRowQ8_0Ref(const float* x, BlockQ8_0* y, int64_t k) {
  const int64_t nb = k / kQK;
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float d = amax / 127.f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = Fp32ToFp16(d);
    for (int j = 0; j < kQK; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::round(internal::Rounded(xb[j] * id)));
    }
  }
}

void QuantizeRowQ4_0Ref(const float* x, BlockQ4_0* y, int64_t k) {
  const int64_t nb = k / kQK;
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK;
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < kQK; ++j) {
      const float v = xb[j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = Fp32ToFp16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = internal::Rounded(xb[j] * id);
      const float x1 = internal::Rounded(xb[kQK / 2 + j] * id);
      const int xi0 = static_cast<int8_t>(x0 + 8.5f);
      const int xi1 = static_cast<int8_t>(x1 + 8.5f);
      const uint8_t q0 = static_cast<uint8_t>(xi0 < 15 ? xi0 : 15);
      const uint8_t q1 = static_cast<uint8_t>(xi1 < 15 ? xi1 : 15);
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void DequantizeRow(gguf::GgmlType type, const void* src, float* dst, int64_t k) {
  switch (type) {
    case gguf::GgmlType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(k) * sizeof(float));
      return;
    case gguf::GgmlType::kF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      int64_t i = 0;
#if defined(__AVX512F__)
      for (; i + 16 <= k; i += 16) {
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(
                                      reinterpret_cast<const __m256i*>(s + i))));
      }
#elif defined(__F16C__)
      for (; i + 8 <= k; i += 8) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(
                                      reinterpret_cast<const __m128i*>(s + i))));
      }
#endif
      for (; i < k; ++i) dst[i] = internal::Fp16ToFp32Fast(s[i]);
      return;
    }
    case gguf::GgmlType::kQ8_0: {
      const BlockQ8_0* b = static_cast<const BlockQ8_0*>(src);
      for (int64_t i = 0; i < k / kQK; ++i) {
        const float d = internal::Fp16ToFp32Fast(b[i].d);
        for (int j = 0; j < kQK; ++j) dst[i * kQK + j] = d * b[i].qs[j];
      }
      return;
    }
    case gguf::GgmlType::kQ4_0: {
      const BlockQ4_0* b = static_cast<const BlockQ4_0*>(src);
      for (int64_t i = 0; i < k / kQK; ++i) {
        const float d = internal::Fp16ToFp32Fast(b[i].d);
        for (int j = 0; j < kQK / 2; ++j) {
          dst[i * kQK + j] = d * ((b[i].qs[j] & 0x0F) - 8);
          dst[i * kQK + j + kQK / 2] = d * ((b[i].qs[j] >> 4) - 8);
        }
      }
      return;
    }
    default:
      if (internal::DequantizeRowK(type, src, dst, k)) return;
  }
  // Unsupported type: the loader rejects these; crash loudly rather than guess.
  std::abort();
}

}  // namespace pice::kernels

// Dot products of the formats in quant_k.cc with their activation types: Q4_1·Q8_1,
// Q5_0·Q8_0, Q5_1·Q8_1, Q4_K/Q5_K/Q6_K·Q8_K and BF16·BF16, each as a scalar reference
// (namespace ref) and a SIMD kernel (AVX2 and AVX-512 builds) that is equal to it bit
// for bit: the integer part of each block (or super-block) is summed exactly in int32 in
// any order, and the float steps (the block's scales times that sum, added to the
// running total in block order) are the same expressions in the same order in both,
// compiled in this one file without FP contraction (CMakeLists.txt: -ffp-contract=off).
// BF16 products are exact in float and are summed in double over 8 lanes (i % 8), then
// the lanes in a fixed tree, in both paths.
//
// Formulas as llama.cpp's scalar vec_dot_* (ggml-cpu-quants.c): Q4_1/Q5_1 add
// m_w * s_x per block (s_x = FP16(d_x * sum(q_x))); the K-quants subtract
// d_x * dmin * sum_j(min_j * (bsum of sub-block j)); Q6_K's values are q - 32.
#include <cstring>

#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_internal.h"

namespace pice::kernels {
namespace {

using internal::Fp16ToFp32Fast;
using internal::GetScaleMinK4;

// ---- the float steps, shared by both paths --------------------------------------------

inline float AddBlock(float sumf, float dw, float dx, int32_t isum) {
  return sumf + (dw * dx) * static_cast<float>(isum);
}
inline float AddBlockMin(float sumf, float dw, float dx, int32_t isum, float m, float s) {
  return sumf + ((dw * dx) * static_cast<float>(isum) + m * s);
}
inline float AddSuperBlock(float sumf, float dx, float dw, float dmin, int32_t isum, int32_t msum) {
  return sumf + ((dx * dw) * static_cast<float>(isum) - (dx * dmin) * static_cast<float>(msum));
}
// Q5_0 sums each block's products in 8 lanes (lane l: elements 4l..4l+3, the grouping of
// the SIMD byte dot), accumulates each lane in float, and adds the lanes at the end in the
// order of HsumPs256.
inline float ReduceLanesF(const float* a) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}
inline float ReduceLanes(const double* a) {
  return static_cast<float>(((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])));
}

// Q4_K/Q5_K: the scales and mins of the 8 sub-blocks; the mins' integer sum.
struct KScales {
  uint8_t sc[8], m[8];
};
// GetScaleMinK4 for all 8 at once, on 32-bit words (llama.cpp's utmp trick).
inline KScales ScalesK(const uint8_t* scales) {
  constexpr uint32_t kMask1 = 0x3f3f3f3f, kMask2 = 0x0f0f0f0f, kMask3 = 0x03030303;
  uint32_t u[4];
  std::memcpy(u, scales, 12);
  u[3] = ((u[2] >> 4) & kMask2) | (((u[1] >> 6) & kMask3) << 4);
  const uint32_t aux = u[1] & kMask1;
  u[1] = (u[2] & kMask2) | (((u[0] >> 6) & kMask3) << 4);
  u[2] = aux;
  u[0] &= kMask1;
  KScales k;
  std::memcpy(k.sc, u, 8);
  std::memcpy(k.m, u + 2, 8);
  return k;
}
inline int32_t MinSum(const KScales& k, const int16_t* bsums) {
  int32_t s = 0;
  for (int j = 0; j < 8; ++j) s += k.m[j] * (bsums[2 * j] + bsums[2 * j + 1]);
  return s;
}
// The qh of a Q5_K super-block; none for Q4_K.
inline const uint8_t* QhOf(const BlockQ4_K&) { return nullptr; }
inline const uint8_t* QhOf(const BlockQ5_K& b) { return b.qh; }

// Q4_K / Q5_K · Q8_K, one super-block after the other; `Sum` is the integer part
// (QKSum or QKSumSimd), so the reference and the SIMD kernel share every float step.
using QKSumFn = int32_t (*)(const KScales&, const uint8_t* qs, const uint8_t* qh, const int8_t* y);
template <typename W, QKSumFn Sum>
float DotQK(const W* w, const BlockQ8_K* x, int64_t n) {
  float sumf = 0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const KScales k = ScalesK(w[i].scales);
    sumf = AddSuperBlock(sumf, x[i].d, Fp16ToFp32Fast(w[i].d), Fp16ToFp32Fast(w[i].dmin),
                         Sum(k, w[i].qs, QhOf(w[i]), x[i].qs), MinSum(k, x[i].bsums));
  }
  return sumf;
}

inline int32_t Q6ScaledBsums(const int8_t* sc, const int16_t* bsums) {
  int32_t s = 0;
  for (int j = 0; j < 16; ++j) s += sc[j] * bsums[j];
  return s;
}

// The 5th bit of element e (0..31) of a Q5_0/Q5_1 block.
inline int Bit5(uint32_t qh, int e) { return ((qh >> e) & 1) << 4; }

}  // namespace

// ---- scalar references ------------------------------------------------------------------

namespace ref {

float DotQ4_1Q8_1(const BlockQ4_1* w, const BlockQ8_1* x, int64_t n) {
  float sumf = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int32_t isum = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      isum += (w[i].qs[j] & 0x0F) * x[i].qs[j] + (w[i].qs[j] >> 4) * x[i].qs[j + kQK / 2];
    }
    sumf = AddBlockMin(sumf, Fp16ToFp32Fast(w[i].d), Fp16ToFp32Fast(x[i].d), isum,
                       Fp16ToFp32Fast(w[i].m), Fp16ToFp32Fast(x[i].s));
  }
  return sumf;
}

namespace {
template <typename Block, bool kMin>
int32_t Q5BlockSum(const Block& b, const int8_t* y) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  int32_t isum = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    const int x0 = ((b.qs[j] & 0x0F) | Bit5(qh, j)) - (kMin ? 0 : 16);
    const int x1 = ((b.qs[j] >> 4) | Bit5(qh, j + 16)) - (kMin ? 0 : 16);
    isum += x0 * y[j] + x1 * y[j + kQK / 2];
  }
  return isum;
}
}  // namespace

float DotQ5_0Q8_0(const BlockQ5_0* w, const BlockQ8_0* x, int64_t n) {
  float acc[8] = {};
  for (int64_t i = 0; i < n / kQK; ++i) {
    uint32_t qh;
    std::memcpy(&qh, w[i].qh, 4);
    const float d = Fp16ToFp32Fast(w[i].d) * Fp16ToFp32Fast(x[i].d);
    for (int l = 0; l < 8; ++l) {
      int32_t isum = 0;
      for (int e = 4 * l; e < 4 * l + 4; ++e) {
        const int nib = e < 16 ? (w[i].qs[e] & 0x0F) : (w[i].qs[e - 16] >> 4);
        isum += ((nib | Bit5(qh, e)) - 16) * x[i].qs[e];
      }
      acc[l] = acc[l] + d * static_cast<float>(isum);
    }
  }
  return ReduceLanesF(acc);
}

float DotQ5_1Q8_1(const BlockQ5_1* w, const BlockQ8_1* x, int64_t n) {
  float sumf = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    sumf = AddBlockMin(sumf, Fp16ToFp32Fast(w[i].d), Fp16ToFp32Fast(x[i].d),
                       Q5BlockSum<BlockQ5_1, true>(w[i], x[i].qs), Fp16ToFp32Fast(w[i].m),
                       Fp16ToFp32Fast(x[i].s));
  }
  return sumf;
}

namespace {
// Q4_K (qh null) or Q5_K: sum_j sc_j * sum over sub-block j of q * y.
int32_t QKSum(const KScales& k, const uint8_t* qs, const uint8_t* qh, const int8_t* y) {
  int32_t isum = 0;
  for (int c = 0; c < 4; ++c) {  // 64 elements: sub-blocks 2c (low nibbles), 2c+1 (high)
    int32_t lo = 0, hi = 0;
    for (int l = 0; l < 32; ++l) {
      const int q0 = (qs[32 * c + l] & 0xF) | (qh ? ((qh[l] >> (2 * c)) & 1) << 4 : 0);
      const int q1 = (qs[32 * c + l] >> 4) | (qh ? ((qh[l] >> (2 * c + 1)) & 1) << 4 : 0);
      lo += q0 * y[64 * c + l];
      hi += q1 * y[64 * c + 32 + l];
    }
    isum += k.sc[2 * c] * lo + k.sc[2 * c + 1] * hi;
  }
  return isum;
}
}  // namespace

float DotQ4_KQ8_K(const BlockQ4_K* w, const BlockQ8_K* x, int64_t n) {
  return DotQK<BlockQ4_K, QKSum>(w, x, n);
}
float DotQ5_KQ8_K(const BlockQ5_K* w, const BlockQ8_K* x, int64_t n) {
  return DotQK<BlockQ5_K, QKSum>(w, x, n);
}

float DotQ6_KQ8_K(const BlockQ6_K* w, const BlockQ8_K* x, int64_t n) {
  float sumf = 0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const uint8_t* ql = w[i].ql;
    const uint8_t* qh = w[i].qh;
    const int8_t* y = x[i].qs;
    int32_t isum = 0;
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, y += 128) {
      const int8_t* sc = w[i].scales + 8 * half;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        isum += sc[is] * q1 * y[l] + sc[is + 2] * q2 * y[l + 32] + sc[is + 4] * q3 * y[l + 64] +
                sc[is + 6] * q4 * y[l + 96];
      }
    }
    sumf = AddBlock(sumf, x[i].d, Fp16ToFp32Fast(w[i].d), isum);
  }
  return sumf;
}

float DotBf16Bf16(const uint16_t* w, const uint16_t* x, int64_t n) {
  double acc[8] = {};
  for (int64_t i = 0; i < n; ++i) {
    acc[i % 8] += static_cast<double>(Bf16ToFp32(w[i]) * Bf16ToFp32(x[i]));
  }
  return ReduceLanes(acc);
}

}  // namespace ref

// ---- SIMD ---------------------------------------------------------------------------------

#if defined(PICE_KERNELS_AVX512VNNI) || defined(PICE_KERNELS_AVX2)
namespace {

using internal::DotBytes;
using internal::HsumPs256;
using internal::UnpackNibbles;

inline int32_t HsumEpi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// 0x10 in byte e where bit e of the 32-bit word at `qh` is set (llama.cpp's
// bytes_from_bits_32, masked to the 5th-bit value).
inline __m256i Bits5(const uint8_t* qh) {
  uint32_t x32;
  std::memcpy(&x32, qh, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                         0x0101010101010101, 0x0000000000000000);
  __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(x32)), shuf);
  bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_and_si256(_mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10));
}

inline __m256i Load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// acc += per int32 lane sum over its 4 bytes of q * y * s16 (s16: one int16 scale per
// byte pair). Exact: |q * y| pair sums stay within int16 for q <= 63, |y| <= 127.
inline __m256i MulAddScaled(__m256i acc, __m256i q_u8, __m256i y_s8, __m256i s16) {
  const __m256i p = _mm256_maddubs_epi16(q_u8, y_s8);
#if defined(PICE_KERNELS_AVX512VNNI)
  return _mm256_dpwssd_epi32(acc, p, s16);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, s16));
#endif
}

// sum of y over 32 bytes.
inline int32_t SumBytes(__m256i y) { return HsumEpi32(DotBytes(_mm256_set1_epi8(1), y)); }

}  // namespace

float DotQ4_1Q8_1(const BlockQ4_1* w, const BlockQ8_1* x, int64_t n) {
  float sumf = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const int32_t isum = HsumEpi32(DotBytes(UnpackNibbles(w[i].qs), Load32(x[i].qs)));
    sumf = AddBlockMin(sumf, Fp16ToFp32Fast(w[i].d), Fp16ToFp32Fast(x[i].d), isum,
                       Fp16ToFp32Fast(w[i].m), Fp16ToFp32Fast(x[i].s));
  }
  return sumf;
}

float DotQ5_0Q8_0(const BlockQ5_0* w, const BlockQ8_0* x, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i q = _mm256_or_si256(UnpackNibbles(w[i].qs), Bits5(w[i].qh));
    const __m256i y = Load32(x[i].qs);
    const __m256i l = _mm256_sub_epi32(DotBytes(q, y), _mm256_slli_epi32(DotBytes(ones, y), 4));
    const __m256 d = _mm256_set1_ps(Fp16ToFp32Fast(w[i].d) * Fp16ToFp32Fast(x[i].d));
    acc = _mm256_add_ps(acc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(l)));
  }
  return HsumPs256(acc);
}

float DotQ5_1Q8_1(const BlockQ5_1* w, const BlockQ8_1* x, int64_t n) {
  float sumf = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i q = _mm256_or_si256(UnpackNibbles(w[i].qs), Bits5(w[i].qh));
    const int32_t isum = HsumEpi32(DotBytes(q, Load32(x[i].qs)));
    sumf = AddBlockMin(sumf, Fp16ToFp32Fast(w[i].d), Fp16ToFp32Fast(x[i].d), isum,
                       Fp16ToFp32Fast(w[i].m), Fp16ToFp32Fast(x[i].s));
  }
  return sumf;
}

namespace {
// The 256 values of a Q4_K (qh null) or Q5_K super-block as 8 vectors of unsigned bytes,
// vector j = sub-block j.
inline void DecodeQK(const uint8_t* qs, const uint8_t* qh, __m256i v[8]) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  const __m256i h = qh ? Load32(qh) : _mm256_setzero_si256();
  for (int c = 0; c < 4; ++c) {
    const __m256i q = Load32(qs + 32 * c);
    v[2 * c] = _mm256_and_si256(q, m4);
    v[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    if (qh) {
      const __m128i s0 = _mm_cvtsi32_si128(2 * c), s1 = _mm_cvtsi32_si128(2 * c + 1);
      v[2 * c] = _mm256_or_si256(v[2 * c], _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(h, s0), one), 4));
      v[2 * c + 1] =
          _mm256_or_si256(v[2 * c + 1], _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(h, s1), one), 4));
    }
  }
}

// Word j of each 128-bit lane of `v` in every word of that lane (a shuffle control).
inline __m256i WordCtrl(int lo, int hi) {
  return _mm256_setr_m128i(_mm_set1_epi16(static_cast<short>((2 * lo) | ((2 * lo + 1) << 8))),
                           _mm_set1_epi16(static_cast<short>((2 * hi) | ((2 * hi + 1) << 8))));
}

// The 256 unsigned values (q + 32) of a Q6_K super-block as 8 vectors (vector 4 * half + g
// = elements 128 * half + 32 * g ...), and each vector's two scales as int16 lanes (scale
// 8 * half + 2 * g for its first 16 bytes, the next for the other 16), taken from the 16
// scales widened once instead of built from two scalars each.
inline void DecodeQ6(const BlockQ6_K& w, __m256i v[8], __m256i sv[8]) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
  const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales));
  const __m256i sc16[2] = {_mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc8)),
                           _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(sc8, 8)))};
  const uint8_t* ql = w.ql;
  const uint8_t* qh = w.qh;
  for (int half = 0; half < 2; ++half, ql += 64, qh += 32) {
    const __m256i l0 = Load32(ql), l1 = Load32(ql + 32), h = Load32(qh);
    __m256i* q = v + 4 * half;
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
    for (int g = 0; g < 4; ++g) sv[4 * half + g] = _mm256_shuffle_epi8(sc16[half], WordCtrl(2 * g, 2 * g + 1));
  }
}

// Two int32 vectors' lane sums at once.
inline void HsumEpi32x2(__m256i a, __m256i b, int32_t* sa, int32_t* sb) {
  const __m256i h = _mm256_hadd_epi32(a, b);  // a01 a23 b01 b23 | a45 a67 b45 b67
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  s = _mm_hadd_epi32(s, s);
  *sa = _mm_cvtsi128_si32(s);
  *sb = _mm_extract_epi32(s, 1);
}

// Q4_K / Q5_K: ScalesK's 8 scales (bytes 0..7) and 8 mins (bytes 8..15) in a register.
// Built from the four 32-bit words directly: a KScales written to the stack as words and
// read back as 8-byte vectors stalls store forwarding twice per super-block.
inline __m128i ScalesKVec(const uint8_t* scales) {
  constexpr uint32_t kMask1 = 0x3f3f3f3f, kMask2 = 0x0f0f0f0f, kMask3 = 0x03030303;
  uint32_t u0, u1, u2;
  std::memcpy(&u0, scales, 4);
  std::memcpy(&u1, scales + 4, 4);
  std::memcpy(&u2, scales + 8, 4);
  const uint32_t m1 = (u2 >> 4 & kMask2) | ((u1 >> 6 & kMask3) << 4);
  const uint32_t s1 = (u2 & kMask2) | ((u0 >> 6 & kMask3) << 4);
  return _mm_setr_epi32(static_cast<int>(u0 & kMask1), static_cast<int>(s1),
                        static_cast<int>(u1 & kMask1), static_cast<int>(m1));
}

// Q4_K / Q5_K integer parts of one super-block: the scaled products and the mins' sum
// m_j * (bsum 2j + bsum 2j+1). `k` is ScalesKVec's.
inline void QKSumsSimd(__m128i k, const __m256i v[8], const BlockQ8_K& x, int32_t* isum,
                       int32_t* msum) {
  const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(k));  // WordCtrl(j, j): scale j
  __m256i acc = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    acc = MulAddScaled(acc, v[j], Load32(x.qs + 32 * j), _mm256_shuffle_epi8(sc, WordCtrl(j, j)));
  }
  const __m128i m = _mm_cvtepu8_epi16(_mm_srli_si128(k, 8));
  const __m256i mins = _mm256_madd_epi16(
      _mm256_setr_m128i(_mm_unpacklo_epi16(m, m), _mm_unpackhi_epi16(m, m)), Load32(x.bsums));
  HsumEpi32x2(acc, mins, isum, msum);
}

// Q6_K integer part of one super-block, with its offset of 32 (sum_j sc_j * bsum_j * 32
// subtracted in the lanes, before the one horizontal sum).
inline int32_t Q6SumSimd(const __m256i v[8], const __m256i sv[8], const BlockQ6_K& w, const BlockQ8_K& x) {
  __m256i acc = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) acc = MulAddScaled(acc, v[j], Load32(x.qs + 32 * j), sv[j]);
  const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales)));
  const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(sc16, Load32(x.bsums)), 5);
  return HsumEpi32(_mm256_sub_epi32(acc, off));
}

// The lines of a weight block kPrefetchAhead bytes ahead. A row dot streams its weights
// once (single-sequence decode: every row of every matrix per token) and waits on each
// block's first load without this; rows follow each other in memory, so reading past a
// row's end fetches the next row's start.
#ifndef PICE_PREFETCH_AHEAD
#define PICE_PREFETCH_AHEAD 2048
#endif
constexpr int kPrefetchAhead = PICE_PREFETCH_AHEAD;
template <typename W>
inline void PrefetchAhead(const W* w) {
  const char* p = reinterpret_cast<const char*>(w) + kPrefetchAhead;
  for (size_t o = 0; o < sizeof(W); o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

// Q4_K / Q5_K · Q8_K with every integer step in vectors; the float steps are DotQK's.
template <typename W>
float DotQKSimd(const W* w, const BlockQ8_K* x, int64_t n) {
  float sumf = 0;
  __m256i v[8];
  for (int64_t i = 0; i < n / kQKK; ++i) {
    PrefetchAhead(w + i);
    const __m128i k = ScalesKVec(w[i].scales);
    DecodeQK(w[i].qs, QhOf(w[i]), v);
    int32_t isum, msum;
    QKSumsSimd(k, v, x[i], &isum, &msum);
    sumf = AddSuperBlock(sumf, x[i].d, Fp16ToFp32Fast(w[i].d), Fp16ToFp32Fast(w[i].dmin), isum, msum);
  }
  return sumf;
}
}  // namespace

float DotQ4_KQ8_K(const BlockQ4_K* w, const BlockQ8_K* x, int64_t n) {
  return DotQKSimd<BlockQ4_K>(w, x, n);
}
float DotQ5_KQ8_K(const BlockQ5_K* w, const BlockQ8_K* x, int64_t n) {
  return DotQKSimd<BlockQ5_K>(w, x, n);
}

float DotQ6_KQ8_K(const BlockQ6_K* w, const BlockQ8_K* x, int64_t n) {
  float sumf = 0;
  __m256i v[8], sv[8];
  for (int64_t i = 0; i < n / kQKK; ++i) {
    PrefetchAhead(w + i);
    DecodeQ6(w[i], v, sv);
    sumf = AddBlock(sumf, x[i].d, Fp16ToFp32Fast(w[i].d), Q6SumSimd(v, sv, w[i], x[i]));
  }
  return sumf;
}

float DotBf16Bf16(const uint16_t* w, const uint16_t* x, int64_t n) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i))), 16));
    const __m256 b = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))), 16));
    const __m256 p = _mm256_mul_ps(a, b);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
  }
  double acc[8];
  _mm256_storeu_pd(acc, lo);
  _mm256_storeu_pd(acc + 4, hi);
  for (; i < n; ++i) acc[i % 8] += static_cast<double>(Bf16ToFp32(w[i]) * Bf16ToFp32(x[i]));
  return ReduceLanes(acc);
}


// ---- several tokens per weight row (MatMul) -----------------------------------------------
// Each weight block is decoded once and dotted with every token's block; each token's
// total is updated by the same float steps, in the same block order, as the one-token
// dot above, so the results are bit-identical to it (and to the references).

namespace {

constexpr int kTok = 16;  // tokens per call at most

template <typename X>
inline const X& XBlock(const uint8_t* x, int64_t xs, int t, int64_t i) {
  return reinterpret_cast<const X*>(x + t * xs)[i];
}

void DotNQ5_0(const void* wv, const void* xv, int64_t xs, int T, int64_t n, float* out) {
  const BlockQ5_0* w = static_cast<const BlockQ5_0*>(wv);
  const uint8_t* x = static_cast<const uint8_t*>(xv);
  __m256 acc[kTok];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i q = _mm256_or_si256(UnpackNibbles(w[i].qs), Bits5(w[i].qh));
    const float dw = Fp16ToFp32Fast(w[i].d);
    for (int t = 0; t < T; ++t) {
      const BlockQ8_0& b = XBlock<BlockQ8_0>(x, xs, t, i);
      const __m256i y = Load32(b.qs);
      const __m256i l = _mm256_sub_epi32(DotBytes(q, y), _mm256_slli_epi32(DotBytes(ones, y), 4));
      const __m256 d = _mm256_set1_ps(dw * Fp16ToFp32Fast(b.d));
      acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(d, _mm256_cvtepi32_ps(l)));
    }
  }
  for (int t = 0; t < T; ++t) out[t] = HsumPs256(acc[t]);
}

template <typename W, bool kFive>
void DotNQx_1(const void* wv, const void* xv, int64_t xs, int T, int64_t n, float* out) {
  const W* w = static_cast<const W*>(wv);
  const uint8_t* x = static_cast<const uint8_t*>(xv);
  float sum[kTok] = {};
  for (int64_t i = 0; i < n / kQK; ++i) {
    __m256i q = UnpackNibbles(w[i].qs);
    if constexpr (kFive) q = _mm256_or_si256(q, Bits5(w[i].qh));
    const float dw = Fp16ToFp32Fast(w[i].d), mw = Fp16ToFp32Fast(w[i].m);
    for (int t = 0; t < T; ++t) {
      const BlockQ8_1& b = XBlock<BlockQ8_1>(x, xs, t, i);
      sum[t] = AddBlockMin(sum[t], dw, Fp16ToFp32Fast(b.d), HsumEpi32(DotBytes(q, Load32(b.qs))), mw,
                           Fp16ToFp32Fast(b.s));
    }
  }
  for (int t = 0; t < T; ++t) out[t] = sum[t];
}

template <typename W>
void DotNQK(const void* wv, const void* xv, int64_t xs, int T, int64_t n, float* out) {
  const W* w = static_cast<const W*>(wv);
  const uint8_t* x = static_cast<const uint8_t*>(xv);
  float sum[kTok] = {};
  __m256i v[8];
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const __m128i k = ScalesKVec(w[i].scales);
    DecodeQK(w[i].qs, QhOf(w[i]), v);
    const float dw = Fp16ToFp32Fast(w[i].d), dmin = Fp16ToFp32Fast(w[i].dmin);
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& b = XBlock<BlockQ8_K>(x, xs, t, i);
      int32_t isum, msum;
      QKSumsSimd(k, v, b, &isum, &msum);
      sum[t] = AddSuperBlock(sum[t], b.d, dw, dmin, isum, msum);
    }
  }
  for (int t = 0; t < T; ++t) out[t] = sum[t];
}

void DotNQ6_K(const void* wv, const void* xv, int64_t xs, int T, int64_t n, float* out) {
  const BlockQ6_K* w = static_cast<const BlockQ6_K*>(wv);
  const uint8_t* x = static_cast<const uint8_t*>(xv);
  float sum[kTok] = {};
  __m256i v[8], sv[8];
  for (int64_t i = 0; i < n / kQKK; ++i) {
    DecodeQ6(w[i], v, sv);
    const float dw = Fp16ToFp32Fast(w[i].d);
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& b = XBlock<BlockQ8_K>(x, xs, t, i);
      sum[t] = AddBlock(sum[t], b.d, dw, Q6SumSimd(v, sv, w[i], b));
    }
  }
  for (int t = 0; t < T; ++t) out[t] = sum[t];
}

}  // namespace

#define PICE_DOT_N(f) f
#else
#define PICE_DOT_N(f) nullptr
#endif  // SIMD

#if !defined(PICE_KERNELS_AVX512VNNI) && !defined(PICE_KERNELS_AVX2)  // no SIMD kernel: the references

float DotQ4_1Q8_1(const BlockQ4_1* w, const BlockQ8_1* x, int64_t n) { return ref::DotQ4_1Q8_1(w, x, n); }
float DotQ5_0Q8_0(const BlockQ5_0* w, const BlockQ8_0* x, int64_t n) { return ref::DotQ5_0Q8_0(w, x, n); }
float DotQ5_1Q8_1(const BlockQ5_1* w, const BlockQ8_1* x, int64_t n) { return ref::DotQ5_1Q8_1(w, x, n); }
float DotQ4_KQ8_K(const BlockQ4_K* w, const BlockQ8_K* x, int64_t n) { return ref::DotQ4_KQ8_K(w, x, n); }
float DotQ5_KQ8_K(const BlockQ5_K* w, const BlockQ8_K* x, int64_t n) { return ref::DotQ5_KQ8_K(w, x, n); }
float DotQ6_KQ8_K(const BlockQ6_K* w, const BlockQ8_K* x, int64_t n) { return ref::DotQ6_KQ8_K(w, x, n); }
float DotBf16Bf16(const uint16_t* w, const uint16_t* x, int64_t n) { return ref::DotBf16Bf16(w, x, n); }

#endif

// ---- the table MatMul uses ----------------------------------------------------------------

namespace {

template <typename Block, void (*Q)(const float*, Block*, int64_t)>
void QuantizeAs(const float* x, void* y, int64_t k) {
  Q(x, static_cast<Block*>(y), k);
}
void QuantizeBf16(const float* x, void* y, int64_t k) {
  uint16_t* o = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < k; ++i) o[i] = Fp32ToBf16(x[i]);
}
template <int kElems, int kBytes>
int64_t ActBytes(int64_t k) {
  return k / kElems * kBytes;
}
template <typename W, typename X, float (*F)(const W*, const X*, int64_t)>
float DotAs(const void* w, const void* x, int64_t n) {
  return F(static_cast<const W*>(w), static_cast<const X*>(x), n);
}

constexpr auto kQ8_0 = &QuantizeAs<BlockQ8_0, QuantizeRowQ8_0>;
constexpr auto kQ8_1 = &QuantizeAs<BlockQ8_1, QuantizeRowQ8_1>;
constexpr auto kQ8_K = &QuantizeAs<BlockQ8_K, QuantizeRowQ8_K>;
constexpr auto kQ8_0Bytes = &ActBytes<kQK, sizeof(BlockQ8_0)>;
constexpr auto kQ8_1Bytes = &ActBytes<kQK, sizeof(BlockQ8_1)>;
constexpr auto kQ8_KBytes = &ActBytes<kQKK, sizeof(BlockQ8_K)>;
constexpr auto kBf16Bytes = &ActBytes<1, 2>;

}  // namespace

const DotKernel* KernelFor(gguf::GgmlType type, bool reference) {
  using gguf::GgmlType;
  static const DotKernel kFast[] = {
      {kQ8_1, kQ8_1Bytes, &DotAs<BlockQ4_1, BlockQ8_1, DotQ4_1Q8_1>,
       PICE_DOT_N((&DotNQx_1<BlockQ4_1, false>))},
      {kQ8_0, kQ8_0Bytes, &DotAs<BlockQ5_0, BlockQ8_0, DotQ5_0Q8_0>, PICE_DOT_N(&DotNQ5_0)},
      {kQ8_1, kQ8_1Bytes, &DotAs<BlockQ5_1, BlockQ8_1, DotQ5_1Q8_1>,
       PICE_DOT_N((&DotNQx_1<BlockQ5_1, true>))},
      {kQ8_K, kQ8_KBytes, &DotAs<BlockQ4_K, BlockQ8_K, DotQ4_KQ8_K>, PICE_DOT_N(&DotNQK<BlockQ4_K>)},
      {kQ8_K, kQ8_KBytes, &DotAs<BlockQ5_K, BlockQ8_K, DotQ5_KQ8_K>, PICE_DOT_N(&DotNQK<BlockQ5_K>)},
      {kQ8_K, kQ8_KBytes, &DotAs<BlockQ6_K, BlockQ8_K, DotQ6_KQ8_K>, PICE_DOT_N(&DotNQ6_K)},
      {QuantizeBf16, kBf16Bytes, &DotAs<uint16_t, uint16_t, DotBf16Bf16>, nullptr},
  };
  static const DotKernel kRef[] = {
      {kQ8_1, kQ8_1Bytes, &DotAs<BlockQ4_1, BlockQ8_1, ref::DotQ4_1Q8_1>},
      {kQ8_0, kQ8_0Bytes, &DotAs<BlockQ5_0, BlockQ8_0, ref::DotQ5_0Q8_0>},
      {kQ8_1, kQ8_1Bytes, &DotAs<BlockQ5_1, BlockQ8_1, ref::DotQ5_1Q8_1>},
      {kQ8_K, kQ8_KBytes, &DotAs<BlockQ4_K, BlockQ8_K, ref::DotQ4_KQ8_K>},
      {kQ8_K, kQ8_KBytes, &DotAs<BlockQ5_K, BlockQ8_K, ref::DotQ5_KQ8_K>},
      {kQ8_K, kQ8_KBytes, &DotAs<BlockQ6_K, BlockQ8_K, ref::DotQ6_KQ8_K>},
      {QuantizeBf16, kBf16Bytes, &DotAs<uint16_t, uint16_t, ref::DotBf16Bf16>},
  };
  const DotKernel* table = reference ? kRef : kFast;
  switch (type) {
    case GgmlType::kQ4_1: return &table[0];
    case GgmlType::kQ5_0: return &table[1];
    case GgmlType::kQ5_1: return &table[2];
    case GgmlType::kQ4_K: return &table[3];
    case GgmlType::kQ5_K: return &table[4];
    case GgmlType::kQ6_K: return &table[5];
    case GgmlType::kBF16: return &table[6];
    default: return nullptr;
  }
}

}  // namespace pice::kernels

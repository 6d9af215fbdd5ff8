// The formats llama-quantize writes beside Q8_0/Q4_0: Q4_1, Q5_0, Q5_1, the K-quants
// Q4_K, Q5_K, Q6_K, and BF16 — their dequantization (to float, as llama.cpp's
// dequantize_row_* compute it, checked element by element against llama.cpp's own
// dequantized files in the tests) and the activation formats they are multiplied with
// (Q8_1, Q8_K, BF16).
#include <cmath>
#include <cstring>

#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_internal.h"

namespace pice::kernels {
namespace internal {

void GetScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

bool DequantizeRowK(gguf::GgmlType type, const void* src, float* y, int64_t k) {
  using gguf::GgmlType;
  switch (type) {
    case GgmlType::kQ4_1: {
      const BlockQ4_1* x = static_cast<const BlockQ4_1*>(src);
      for (int64_t i = 0; i < k / kQK; ++i) {
        const float d = Fp16ToFp32Fast(x[i].d), m = Fp16ToFp32Fast(x[i].m);
        for (int j = 0; j < kQK / 2; ++j) {
          y[i * kQK + j] = (x[i].qs[j] & 0x0F) * d + m;
          y[i * kQK + j + kQK / 2] = (x[i].qs[j] >> 4) * d + m;
        }
      }
      return true;
    }
    case GgmlType::kQ5_0:
    case GgmlType::kQ5_1: {
      const bool one = type == GgmlType::kQ5_1;
      const uint8_t* b = static_cast<const uint8_t*>(src);
      const size_t bytes = one ? sizeof(BlockQ5_1) : sizeof(BlockQ5_0);
      for (int64_t i = 0; i < k / kQK; ++i, b += bytes) {
        const float d = Fp16ToFp32Fast(*reinterpret_cast<const uint16_t*>(b));
        const float m = one ? Fp16ToFp32Fast(*reinterpret_cast<const uint16_t*>(b + 2)) : 0.f;
        const uint8_t* qhp = b + (one ? 4 : 2);
        const uint8_t* qs = qhp + 4;
        uint32_t qh;
        std::memcpy(&qh, qhp, 4);
        for (int j = 0; j < kQK / 2; ++j) {
          const int x0 = (qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
          const int x1 = (qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
          if (one) {
            y[i * kQK + j] = x0 * d + m;
            y[i * kQK + j + kQK / 2] = x1 * d + m;
          } else {
            y[i * kQK + j] = (x0 - 16) * d;
            y[i * kQK + j + kQK / 2] = (x1 - 16) * d;
          }
        }
      }
      return true;
    }
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K: {
      const bool five = type == GgmlType::kQ5_K;
      const uint8_t* b = static_cast<const uint8_t*>(src);
      const size_t bytes = five ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
      for (int64_t i = 0; i < k / kQKK; ++i, b += bytes) {
        const BlockQ4_K* x4 = reinterpret_cast<const BlockQ4_K*>(b);  // same head for Q5_K
        const uint8_t* qh = five ? reinterpret_cast<const BlockQ5_K*>(b)->qh : nullptr;
        const uint8_t* q = five ? reinterpret_cast<const BlockQ5_K*>(b)->qs : x4->qs;
        const float d = Fp16ToFp32Fast(x4->d), min = Fp16ToFp32Fast(x4->dmin);
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < kQKK; j += 64, is += 2, q += 32) {
          uint8_t sc, m;
          GetScaleMinK4(is, x4->scales, &sc, &m);
          const float d1 = d * sc, m1 = min * m;
          GetScaleMinK4(is + 1, x4->scales, &sc, &m);
          const float d2 = d * sc, m2 = min * m;
          for (int l = 0; l < 32; ++l) {
            *y++ = d1 * ((q[l] & 0xF) + (qh && (qh[l] & u1) ? 16 : 0)) - m1;
          }
          for (int l = 0; l < 32; ++l) {
            *y++ = d2 * ((q[l] >> 4) + (qh && (qh[l] & u2) ? 16 : 0)) - m2;
          }
          u1 <<= 2;
          u2 <<= 2;
        }
      }
      return true;
    }
    case GgmlType::kQ6_K: {
      const BlockQ6_K* x = static_cast<const BlockQ6_K*>(src);
      for (int64_t i = 0; i < k / kQKK; ++i) {
        const float d = Fp16ToFp32Fast(x[i].d);
        const uint8_t* ql = x[i].ql;
        const uint8_t* qh = x[i].qh;
        const int8_t* sc = x[i].scales;
        for (int n = 0; n < kQKK; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
          }
        }
      }
      return true;
    }
    case GgmlType::kBF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < k; ++i) y[i] = Bf16ToFp32(s[i]);
      return true;
    }
    default:
      return false;
  }
}

}  // namespace internal

uint16_t Fp32ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 64);  // quiet NaN
  return static_cast<uint16_t>((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

void QuantizeRowQ8_1(const float* x, BlockQ8_1* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK; ++i, x += kQK) {
    BlockQ8_0 b;
    const int32_t sum = internal::QuantizeBlockQ8_0(x, &b);
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    y[i].d = b.d;
    y[i].s = internal::Fp32ToFp16Scalar(d * static_cast<float>(sum));
    std::memcpy(y[i].qs, b.qs, kQK);
  }
}

void QuantizeRowQ8_K(const float* x, BlockQ8_K* y, int64_t k) {
  for (int64_t i = 0; i < k / kQKK; ++i, x += kQKK) {
    float max = 0, amax = 0;
    for (int j = 0; j < kQKK; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0) {
      y[i].d = 0;
      std::memset(y[i].qs, 0, sizeof y[i].qs);
      std::memset(y[i].bsums, 0, sizeof y[i].bsums);
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < kQKK; ++j) {
      // llama.cpp's nearest_int: round half to even (the FPU's default mode).
      const int v = static_cast<int>(std::nearbyint(iscale * x[j]));
      y[i].qs[j] = static_cast<int8_t>(v < 127 ? v : 127);
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[i].qs[j * 16 + l];
      y[i].bsums[j] = static_cast<int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

}  // namespace pice::kernels

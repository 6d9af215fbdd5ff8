// Ports of ggml's reference weight quantizers (ggml/src/ggml-quants.c, llama.cpp b4748):
// quantize_row_q4_1_ref, q5_0_ref, q5_1_ref, q4_K_ref, q5_K_ref, q6_K_ref and their
// helpers nearest_int, make_qkx2_quants and make_qx_quants. Every float operation is the
// C source's, in its order, so the bytes equal llama-quantize's.
//
// FMA contraction. GCC contracts `a*b + c` into one fused multiply-add when the target
// has FMA (-march=native here), even across statements (nearest_int's `x + 1.5*2^23`
// after a product, the sums of make_qkx2_quants, `x*id + 16.5f`...), which rounds once
// instead of twice and changes a quantized value now and then. Built that way (tried:
// GCC, -O3 -march=native on AVX-512), these functions no longer reproduce llama.cpp's
// files: 1-30% of the K-quant blocks and one Q5_0 block of models/quants/ differ. Without
// contraction every byte of all twelve reference files matches
// (tests/engine/quantize_k_test.cc), so llama.cpp's build did not contract here. Hence
// this file turns contraction off, whatever the build's flags (GCC: the pragma below;
// clang: its pragma, which clang honors unless built with -ffp-contract=fast).

#include "engine/kernels/quantize_k.h"

#include <cfloat>
#include <cmath>
#include <cstring>

#include "engine/kernels/kernels_internal.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace pice::kernels {
namespace {

constexpr float kGroupMaxEps = 1e-15f;

// ggml's nearest_int: adding 1.5 * 2^23 rounds to the nearest integer (ties to even)
// in the mantissa's low bits. Valid for |fval| <= 4194303.
inline int NearestInt(float fval) {
  const float val = fval + 12582912.f;
  int i;
  std::memcpy(&i, &val, sizeof(int));
  return (i & 0x007fffff) - 0x00400000;
}

template <typename T>
inline T Min(T a, T b) { return a < b ? a : b; }
template <typename T>
inline T Max(T a, T b) { return a > b ? a : b; }

// make_qkx2_quants: a scale and a (non-positive) minimum for n values quantized to
// [0, nmax], the weighted squared (use_mad: absolute) error minimized over nstep + 1
// trial scales. Returns the scale; *the_min = -min.
float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                     float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                     bool use_mad) {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_mad = 0;
  for (int i = 0; i < n; ++i) {
    const int l = NearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(Max(0, Min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    const float w = weights[i];
    best_mad += w * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * (x[i] - min));
      l = Max(0, Min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float mad = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        const float w = weights[i];
        mad += w * diff;
      }
      if (mad < best_mad) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_mad = mad;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// make_qx_quants with qw == NULL: a signed scale for n values quantized to
// [-nmax, nmax - 1] (stored in L offset by nmax). rmse_type 1 weighs by x^2 and tries
// 18 scales around nmax / max; the only use here (Q6_K) passes 1.
float MakeQxQuants(int n, int nmax, const float* x, int8_t* L, int rmse_type) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {  // all zero
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) {
      const int l = NearestInt(iscale * x[i]);
      L[i] = static_cast<int8_t>(nmax + Max(-nmax, Min(nmax - 1, l)));
    }
    return 1 / iscale;
  }
  bool return_early = false;
  if (rmse_type < 0) {
    rmse_type = -rmse_type;
    return_early = true;
  }
  auto weight = [rmse_type](float v) {
    return rmse_type == 1 ? v * v : rmse_type == 2 ? 1 : rmse_type == 3 ? std::fabs(v)
                                                                          : std::sqrt(std::fabs(v));
  };
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = Max(-nmax, Min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = weight(x[i]);
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * x[i]);
      l = Max(-nmax, Min(nmax - 1, l));
      const float w = weight(x[i]);
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = NearestInt(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + Max(-nmax, Min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// The common part of quantize_row_q4_K_ref and quantize_row_q5_K_ref: per super-block,
// 8 sub-block scales and minimums (make_qkx2_quants with weights sqrt(mean(x^2)) + |x|),
// quantized to 6 bits against the super-block's d and dmin, then the values L[256] in
// [0, nmax] against those rounded scales.
void QuantizeSuperBlockK(const float* x, int nmax, float rmin, float rdelta, int nstep,
                         uint16_t* out_d, uint16_t* out_dmin, uint8_t* out_scales,
                         uint8_t* L) {
  uint8_t Laux[32];
  float weights[32];
  float mins[kQKK / 32];
  float scales[kQKK / 32];
  float max_scale = 0;  // as we are deducting the min, scales are always positive
  float max_min = 0;
  for (int j = 0; j < kQKK / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = MakeQkx2Quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin,
                               rdelta, nstep, false);
    const float scale = scales[j];
    if (scale > max_scale) max_scale = scale;
    const float min = mins[j];
    if (min > max_min) max_min = min;
  }

  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < kQKK / 32; ++j) {
    uint8_t ls = static_cast<uint8_t>(NearestInt(inv_scale * scales[j]));
    uint8_t lm = static_cast<uint8_t>(NearestInt(inv_min * mins[j]));
    ls = Min<uint8_t>(63, ls);
    lm = Min<uint8_t>(63, lm);
    if (j < 4) {
      out_scales[j] = ls;
      out_scales[j + 4] = lm;
    } else {
      out_scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      out_scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      out_scales[j - 0] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  *out_d = Fp32ToFp16(max_scale / 63.f);
  *out_dmin = Fp32ToFp16(max_min / 63.f);

  for (int j = 0; j < kQKK / 32; ++j) {
    uint8_t sc, m;
    internal::GetScaleMinK4(j, out_scales, &sc, &m);
    const float d = Fp16ToFp32(*out_d) * sc;
    if (!d) continue;
    const float dm = Fp16ToFp32(*out_dmin) * m;
    for (int ii = 0; ii < 32; ++ii) {
      int l = NearestInt((x[32 * j + ii] + dm) / d);
      l = Max(0, Min(nmax, l));
      L[32 * j + ii] = static_cast<uint8_t>(l);
    }
  }
}

// The smallest and largest of a 32-block (Q4_1, Q5_1: value = d * q + min).
void BlockMinMax(const float* x, float* min, float* max) {
  *min = FLT_MAX;
  *max = -FLT_MAX;
  for (int j = 0; j < kQK; ++j) {
    if (x[j] < *min) *min = x[j];
    if (x[j] > *max) *max = x[j];
  }
}

}  // namespace

void QuantizeRowQ4_1Ref(const float* x, BlockQ4_1* y, int64_t k) {
  constexpr int qk = kQK;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; ++i) {
    float min, max;
    BlockMinMax(x + i * qk, &min, &max);
    const float d = (max - min) / ((1 << 4) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = Fp32ToFp16(d);
    y[i].m = Fp32ToFp16(min);
    for (int j = 0; j < qk / 2; ++j) {
      const float x0 = (x[i * qk + 0 + j] - min) * id;
      const float x1 = (x[i * qk + qk / 2 + j] - min) * id;
      const uint8_t xi0 = static_cast<uint8_t>(Min(15, int{static_cast<int8_t>(x0 + 0.5f)}));
      const uint8_t xi1 = static_cast<uint8_t>(Min(15, int{static_cast<int8_t>(x1 + 0.5f)}));
      y[i].qs[j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
  }
}

void QuantizeRowQ5_0Ref(const float* x, BlockQ5_0* y, int64_t k) {
  constexpr int qk = kQK;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; ++i) {
    float amax = 0.0f;  // absolute max
    float max = 0.0f;
    for (int j = 0; j < qk; ++j) {
      const float v = x[i * qk + j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = Fp32ToFp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < qk / 2; ++j) {
      const float x0 = x[i * qk + 0 + j] * id;
      const float x1 = x[i * qk + qk / 2 + j] * id;
      const uint8_t xi0 = static_cast<uint8_t>(Min(31, int{static_cast<int8_t>(x0 + 16.5f)}));
      const uint8_t xi1 = static_cast<uint8_t>(Min(31, int{static_cast<int8_t>(x1 + 16.5f)}));
      y[i].qs[j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      // the 5th bit of each value, at its position in qh
      qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
      qh |= ((xi1 & 0x10u) >> 4) << (j + qk / 2);
    }
    std::memcpy(y[i].qh, &qh, sizeof(qh));
  }
}

void QuantizeRowQ5_1Ref(const float* x, BlockQ5_1* y, int64_t k) {
  constexpr int qk = kQK;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; ++i) {
    float min, max;
    BlockMinMax(x + i * qk, &min, &max);
    const float d = (max - min) / ((1 << 5) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = Fp32ToFp16(d);
    y[i].m = Fp32ToFp16(min);
    uint32_t qh = 0;
    for (int j = 0; j < qk / 2; ++j) {
      const float x0 = (x[i * qk + 0 + j] - min) * id;
      const float x1 = (x[i * qk + qk / 2 + j] - min) * id;
      // ggml converts to uint8_t directly (no clamp); x86 converts through int32.
      const uint8_t xi0 = static_cast<uint8_t>(static_cast<int32_t>(x0 + 0.5f));
      const uint8_t xi1 = static_cast<uint8_t>(static_cast<int32_t>(x1 + 0.5f));
      y[i].qs[j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
      qh |= ((xi1 & 0x10u) >> 4) << (j + qk / 2);
    }
    std::memcpy(y[i].qh, &qh, sizeof(qh));
  }
}

void QuantizeRowQ4_KRef(const float* x, BlockQ4_K* y, int64_t k) {
  const int64_t nb = k / kQKK;
  uint8_t L[kQKK];
  for (int64_t i = 0; i < nb; ++i) {
    QuantizeSuperBlockK(x, 15, -1.f, 0.1f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
    uint8_t* q = y[i].qs;
    for (int j = 0; j < kQKK; j += 64) {
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
      q += 32;
    }
    x += kQKK;
  }
}

void QuantizeRowQ5_KRef(const float* x, BlockQ5_K* y, int64_t k) {
  const int64_t nb = k / kQKK;
  uint8_t L[kQKK];
  for (int64_t i = 0; i < nb; ++i) {
    QuantizeSuperBlockK(x, 31, -0.5f, 0.1f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
    uint8_t* qh = y[i].qh;
    uint8_t* ql = y[i].qs;
    std::memset(qh, 0, kQKK / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < kQKK; n += 64) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[n + j];
        if (l1 > 15) {
          l1 -= 16;
          qh[j] |= m1;
        }
        int l2 = L[n + j + 32];
        if (l2 > 15) {
          l2 -= 16;
          qh[j] |= m2;
        }
        ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
      m1 = static_cast<uint8_t>(m1 << 2);
      m2 = static_cast<uint8_t>(m2 << 2);
      ql += 32;
    }
    x += kQKK;
  }
}

void QuantizeRowQ6_KRef(const float* x, BlockQ6_K* y, int64_t k) {
  const int64_t nb = k / kQKK;
  int8_t L[kQKK];
  float scales[kQKK / 16];
  for (int64_t i = 0; i < nb; ++i) {
    float max_scale = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < kQKK / 16; ++ib) {
      const float scale = MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib, 1);
      scales[ib] = scale;
      const float abs_scale = std::fabs(scale);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scale;
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(BlockQ6_K));
      y[i].d = Fp32ToFp16(0.f);
      x += kQKK;
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[i].d = Fp32ToFp16(1 / iscale);
    for (int ib = 0; ib < kQKK / 16; ++ib) {
      y[i].scales[ib] = static_cast<int8_t>(Min(127, NearestInt(iscale * scales[ib])));
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      const float d = Fp16ToFp32(y[i].d) * y[i].scales[j];
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) {
        int l = NearestInt(x[16 * j + ii] / d);
        l = Max(-32, Min(31, l));
        L[16 * j + ii] = static_cast<int8_t>(l + 32);
      }
    }
    uint8_t* ql = y[i].ql;
    uint8_t* qh = y[i].qh;
    for (int j = 0; j < kQKK; j += 128) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = L[j + l + 0] & 0xF;
        const uint8_t q2 = L[j + l + 32] & 0xF;
        const uint8_t q3 = L[j + l + 64] & 0xF;
        const uint8_t q4 = L[j + l + 96] & 0xF;
        ql[l + 0] = static_cast<uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                     ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
      ql += 64;
      qh += 32;
    }
    x += kQKK;
  }
}

bool QuantizeRowRef(gguf::GgmlType type, const float* x, void* dst, int64_t k) {
  using gguf::GgmlType;
  switch (type) {
    case GgmlType::kF32: case GgmlType::kF16: case GgmlType::kBF16: case GgmlType::kQ4_0:
    case GgmlType::kQ4_1: case GgmlType::kQ5_0: case GgmlType::kQ5_1: case GgmlType::kQ8_0:
    case GgmlType::kQ4_K: case GgmlType::kQ5_K: case GgmlType::kQ6_K:
      break;
    default:
      return false;
  }
  if (k < 0 || k % gguf::BlockSize(type) != 0) return false;
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, x, static_cast<size_t>(k) * sizeof(float));
      return true;
    case GgmlType::kF16: {
      uint16_t* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < k; ++i) h[i] = Fp32ToFp16(x[i]);
      return true;
    }
    case GgmlType::kBF16: {
      uint16_t* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < k; ++i) h[i] = Fp32ToBf16(x[i]);
      return true;
    }
    case GgmlType::kQ8_0: QuantizeRowQ8_0Ref(x, static_cast<BlockQ8_0*>(dst), k); return true;
    case GgmlType::kQ4_0: QuantizeRowQ4_0Ref(x, static_cast<BlockQ4_0*>(dst), k); return true;
    case GgmlType::kQ4_1: QuantizeRowQ4_1Ref(x, static_cast<BlockQ4_1*>(dst), k); return true;
    case GgmlType::kQ5_0: QuantizeRowQ5_0Ref(x, static_cast<BlockQ5_0*>(dst), k); return true;
    case GgmlType::kQ5_1: QuantizeRowQ5_1Ref(x, static_cast<BlockQ5_1*>(dst), k); return true;
    case GgmlType::kQ4_K: QuantizeRowQ4_KRef(x, static_cast<BlockQ4_K*>(dst), k); return true;
    case GgmlType::kQ5_K: QuantizeRowQ5_KRef(x, static_cast<BlockQ5_K*>(dst), k); return true;
    case GgmlType::kQ6_K: QuantizeRowQ6_KRef(x, static_cast<BlockQ6_K*>(dst), k); return true;
    default: return false;
  }
}

}  // namespace pice::kernels

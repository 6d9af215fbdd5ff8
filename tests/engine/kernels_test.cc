#include "engine/kernels/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/kernels_internal.h"
#include "engine/threadpool.h"

namespace pice::kernels {
namespace {

using gguf::GgmlType;

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::vector<float> RandomFloats(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// ---- FP16 --------------------------------------------------------------------------

TEST(KernelFp16, KnownValues) {
  struct Case {
    float f;
    uint16_t h;
  };
  const Case cases[] = {
      {0.0f, 0x0000},          {-0.0f, 0x8000},
      {1.0f, 0x3C00},          {-2.0f, 0xC000},
      {0.5f, 0x3800},          {65504.0f, 0x7BFF},
      {65519.0f, 0x7BFF},      {65520.0f, 0x7C00},  // ties to even -> infinity
      {1e10f, 0x7C00},         {-std::numeric_limits<float>::infinity(), 0xFC00},
      {0x1p-14f, 0x0400},      {0x1p-24f, 0x0001},  // smallest normal / subnormal
      {0x1p-25f, 0x0000},      {0x1.8p-25f, 0x0001},  // tie to even 0; above the tie
      {0x1.8p-24f, 0x0002},    {0.1f, 0x2E66},
      {1.0f + 0x1p-11f, 0x3C00},  // tie between 0x3C00 and 0x3C01 -> even
      {1.0f + 0x1.8p-10f, 0x3C02},  // tie between 0x3C01 and 0x3C02 -> even
      {1.0f + 0x1p-10f + 0x1p-20f, 0x3C01},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Fp32ToFp16(c.f), c.h) << c.f;
    EXPECT_EQ(internal::Fp32ToFp16Scalar(c.f), c.h) << c.f;
  }
  EXPECT_EQ(Fp16ToFp32(0x3C00), 1.0f);
  EXPECT_EQ(Fp16ToFp32(0x7BFF), 65504.0f);
  EXPECT_EQ(Fp16ToFp32(0x0001), 0x1p-24f);
  EXPECT_EQ(Fp16ToFp32(0x03FF), 0x1.ff8p-15f);
  EXPECT_TRUE(std::isinf(Fp16ToFp32(0x7C00)));
  EXPECT_TRUE(std::isnan(Fp16ToFp32(0x7E00)));
  EXPECT_TRUE(std::isnan(internal::Fp16ToFp32Scalar(0x7C01)));
}

TEST(KernelFp16, RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = internal::Fp16ToFp32Scalar(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(internal::Fp32ToFp16Scalar(f), h);
    ASSERT_EQ(Fp32ToFp16(Fp16ToFp32(static_cast<uint16_t>(h))), h);
  }
}

TEST(KernelFp16, ScalarMatchesHardware) {
  // Fp16ToFp32 / Fp32ToFp16 use F16C when compiled in; the scalar versions must agree
  // bit for bit, NaNs included.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    ASSERT_EQ(Bits(internal::Fp16ToFp32Scalar(static_cast<uint16_t>(h))),
              Bits(Fp16ToFp32(static_cast<uint16_t>(h))))
        << std::hex << h;
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 2'000'000; ++i) {
    uint32_t u = rng();
    if (i % 4 == 1) u = (u & 0x83FFFFFF) | 0x38000000;  // dense near the half range
    if (i % 4 == 2) u = (u & 0x8FFFFFFF) | 0x30000000;  // subnormal halves
    if (i % 4 == 3) u &= 0xFFFFE000 | (rng() & 0x1000);  // exact ties
    const float f = FromBits(u);
    ASSERT_EQ(internal::Fp32ToFp16Scalar(f), Fp32ToFp16(f)) << std::hex << u;
  }
}

// ---- Quantization ------------------------------------------------------------------

// Blocks that exercise the edge cases: zeros, huge, tiny, subnormal, ties.
std::vector<float> QuantizationInputs() {
  std::vector<float> x = RandomFloats(32 * 64, 1.0f, 1);
  auto block = [&](int b) { return x.data() + 32 * b; };
  std::fill(block(0), block(1), 0.0f);
  for (int j = 0; j < 32; ++j) block(1)[j] = (j % 2 ? -1.0f : 1.0f) * 1e30f * (j + 1);
  for (int j = 0; j < 32; ++j) block(2)[j] = 1e-30f * (j - 16);
  for (int j = 0; j < 32; ++j) block(3)[j] = FromBits(static_cast<uint32_t>(j * 1000));  // subnormal
  // amax = 127 makes id exactly 1, so x * id hits .5 ties: 2.5 -> 2, 3.5 -> 4, -0.5 -> -0.
  for (int j = 0; j < 32; ++j) block(4)[j] = (j - 16) + 0.5f;
  block(4)[31] = 127.0f;
  for (int j = 0; j < 32; ++j) block(5)[j] = 1.0f;  // all equal
  block(6)[7] = -1000.0f;                             // one outlier
  for (int j = 0; j < 32; ++j) block(7)[j] = 65504.0f * 2 * (j - 16);  // d overflows FP16?
  for (int b = 8; b < 64; ++b) {
    const float scale = std::pow(10.0f, static_cast<float>(b % 12) - 6.0f);
    for (int j = 0; j < 32; ++j) block(b)[j] *= scale;
  }
  return x;
}

TEST(KernelQuantize, Q8_0SimdMatchesRefBitExact) {
  const std::vector<float> x = QuantizationInputs();
  const int64_t nb = static_cast<int64_t>(x.size()) / kQK;
  std::vector<BlockQ8_0> a(nb), b(nb);
  QuantizeRowQ8_0(x.data(), a.data(), static_cast<int64_t>(x.size()));
  ref::QuantizeRowQ8_0(x.data(), b.data(), static_cast<int64_t>(x.size()));
  for (int64_t i = 0; i < nb; ++i) {
    ASSERT_EQ(a[i].d, b[i].d) << "block " << i;
    for (int j = 0; j < kQK; ++j) ASSERT_EQ(a[i].qs[j], b[i].qs[j]) << "block " << i << " j " << j;
  }
  // The tie block: d = 1, values rounded half to even.
  EXPECT_EQ(b[4].d, 0x3C00);
  EXPECT_EQ(b[4].qs[0], -16);  // -15.5
  EXPECT_EQ(b[4].qs[1], -14);  // -14.5
  EXPECT_EQ(b[4].qs[15], 0);   // -0.5
  EXPECT_EQ(b[4].qs[16], 0);   // 0.5
  EXPECT_EQ(b[4].qs[17], 2);   // 1.5
  EXPECT_EQ(b[4].qs[18], 2);   // 2.5
  EXPECT_EQ(b[4].qs[31], 127);
  EXPECT_EQ(b[0].d, 0);
  for (int j = 0; j < kQK; ++j) EXPECT_EQ(b[0].qs[j], 0);
  for (int j = 0; j < kQK; ++j) EXPECT_EQ(b[5].qs[j], 127);
}

TEST(KernelQuantize, RandomRowsBitExact) {
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> x = RandomFloats(32 * 100, 0.01f + seed, seed + 100);
    std::vector<BlockQ8_0> a(100), b(100);
    QuantizeRowQ8_0(x.data(), a.data(), 3200);
    ref::QuantizeRowQ8_0(x.data(), b.data(), 3200);
    ASSERT_EQ(std::memcmp(a.data(), b.data(), sizeof(BlockQ8_0) * 100), 0) << seed;
  }
}

TEST(KernelQuantize, ReferenceWeightQuantizers) {
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 8);  // max |x| = 23
  BlockQ8_0 q8;
  QuantizeRowQ8_0Ref(x, &q8, 32);
  EXPECT_EQ(q8.d, Fp32ToFp16(23.0f / 127.0f));
  EXPECT_EQ(q8.qs[31], 127);
  EXPECT_EQ(q8.qs[8], 0);
  EXPECT_EQ(q8.qs[0], static_cast<int8_t>(std::round(-8.0f * (127.0f / 23.0f))));
  BlockQ4_0 q4;
  QuantizeRowQ4_0Ref(x, &q4, 32);
  // max (largest |x|, keeping sign) = 23 -> d = -23/8; x = 23 maps to nibble 0.
  EXPECT_EQ(q4.d, Fp32ToFp16(23.0f / -8.0f));
  EXPECT_EQ(q4.qs[15] >> 4, 0);     // element 31 = 23
  EXPECT_EQ(q4.qs[8] & 0x0F, 8);    // element 8 = 0
  EXPECT_EQ(q4.qs[0] & 0x0F, 11);   // element 0 = -8: -8 * (-8/23) + 8.5 = 11.28
  float zeros[32] = {};
  QuantizeRowQ4_0Ref(zeros, &q4, 32);
  EXPECT_EQ(q4.d, 0x8000);  // d = 0 / -8 = -0.0, as ggml stores it
  for (int j = 0; j < 16; ++j) EXPECT_EQ(q4.qs[j], 0x88);
}

TEST(KernelQuantize, DequantizeRoundTrip) {
  const std::vector<float> x = RandomFloats(32 * 50, 2.0f, 3);
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<BlockQ8_0> q8(n / 32), a8(n / 32);
  std::vector<BlockQ4_0> q4(n / 32);
  std::vector<uint16_t> h(n);
  QuantizeRowQ8_0Ref(x.data(), q8.data(), n);
  QuantizeRowQ8_0(x.data(), a8.data(), n);
  QuantizeRowQ4_0Ref(x.data(), q4.data(), n);
  for (int64_t i = 0; i < n; ++i) h[i] = Fp32ToFp16(x[i]);
  std::vector<float> y8(n), ya(n), y4(n), yh(n), yf(n);
  DequantizeRow(GgmlType::kQ8_0, q8.data(), y8.data(), n);
  DequantizeRow(GgmlType::kQ8_0, a8.data(), ya.data(), n);
  DequantizeRow(GgmlType::kQ4_0, q4.data(), y4.data(), n);
  DequantizeRow(GgmlType::kF16, h.data(), yh.data(), n);
  DequantizeRow(GgmlType::kF32, x.data(), yf.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const float d8 = Fp16ToFp32(q8[i / 32].d), d4 = std::fabs(Fp16ToFp32(q4[i / 32].d));
    // Half a step, plus the FP16 rounding of the scale (|q| <= 127 steps of rel. 2^-11).
    EXPECT_LE(std::fabs(y8[i] - x[i]), 0.5f * d8 + 127 * d8 * 0x1p-11f) << i;
    EXPECT_LE(std::fabs(ya[i] - x[i]), 0.5f * d8 + 127 * d8 * 0x1p-11f) << i;
    // Q4_0 clamps the top code, so the error can reach one step.
    EXPECT_LE(std::fabs(y4[i] - x[i]), d4 + 8 * d4 * 0x1p-11f) << i;
    EXPECT_LE(std::fabs(yh[i] - x[i]), std::fabs(x[i]) * 0x1p-11f + 1e-7f) << i;
    EXPECT_EQ(yf[i], x[i]);
  }
}

// ---- Dot products --------------------------------------------------------------------
//
// Tolerance: SIMD and reference sum the same exactly-computed per-block (or per-element)
// products in different orders, so they may differ by float rounding only. We allow
// 1e-5 * sum(|term|) + 1e-30, far above the ~n * 2^-24 * sum(|term|) that reordering
// can cost for these lengths, and far below any real error (a wrong block or element).

std::vector<BlockQ8_0> RandomQ8(int64_t n, uint32_t seed, bool extreme) {
  const std::vector<float> x = RandomFloats(n, 1.0f, seed);
  std::vector<BlockQ8_0> q(n / 32);
  QuantizeRowQ8_0Ref(x.data(), q.data(), n);
  if (extreme) {  // -128 is a valid Q8_0 weight byte even if ggml never writes it
    std::mt19937 rng(seed);
    for (auto& b : q) b.qs[rng() % 32] = -128;
  }
  return q;
}

std::vector<BlockQ4_0> RandomQ4(int64_t n, uint32_t seed) {
  const std::vector<float> x = RandomFloats(n, 1.0f, seed);
  std::vector<BlockQ4_0> q(n / 32);
  QuantizeRowQ4_0Ref(x.data(), q.data(), n);
  return q;
}

std::vector<BlockQ8_0> Activations(int64_t n, uint32_t seed) {
  const std::vector<float> x = RandomFloats(n, 3.0f, seed);
  std::vector<BlockQ8_0> q(n / 32);
  QuantizeRowQ8_0(x.data(), q.data(), n);
  return q;
}

TEST(KernelDot, Q8_0Q8_0MatchesRef) {
  for (int64_t n : {32, 64, 96, 896, 4864}) {
    for (bool extreme : {false, true}) {
      const auto w = RandomQ8(n, static_cast<uint32_t>(n), extreme);
      const auto x = Activations(n, static_cast<uint32_t>(n + 1));
      double abs_sum = 0;
      for (int64_t i = 0; i < n / 32; ++i)
        for (int j = 0; j < 32; ++j)
          abs_sum += std::fabs(Fp16ToFp32(w[i].d) * Fp16ToFp32(x[i].d) * w[i].qs[j] * x[i].qs[j]);
      const float got = DotQ8_0Q8_0(w.data(), x.data(), n);
      const float want = ref::DotQ8_0Q8_0(w.data(), x.data(), n);
      EXPECT_NEAR(got, want, 1e-5 * abs_sum + 1e-30) << n;
    }
  }
}

TEST(KernelDot, Q4_0Q8_0MatchesRef) {
  for (int64_t n : {32, 64, 96, 896, 4864}) {
    const auto w = RandomQ4(n, static_cast<uint32_t>(n));
    const auto x = Activations(n, static_cast<uint32_t>(n + 1));
    double abs_sum = 0;
    for (int64_t i = 0; i < n / 32; ++i)
      for (int j = 0; j < 16; ++j)
        abs_sum += std::fabs(Fp16ToFp32(w[i].d) * Fp16ToFp32(x[i].d)) *
                   (std::abs((w[i].qs[j] & 15) - 8) * std::abs(x[i].qs[j]) +
                    std::abs((w[i].qs[j] >> 4) - 8) * std::abs(x[i].qs[j + 16]));
    const float got = DotQ4_0Q8_0(w.data(), x.data(), n);
    const float want = ref::DotQ4_0Q8_0(w.data(), x.data(), n);
    EXPECT_NEAR(got, want, 1e-5 * abs_sum + 1e-30) << n;
  }
}

TEST(KernelDot, F16AndF32MatchRef) {
  for (int64_t n : {1, 7, 16, 31, 33, 100, 896, 4864}) {
    const auto a = RandomFloats(n, 1.0f, static_cast<uint32_t>(n));
    const auto b = RandomFloats(n, 1.0f, static_cast<uint32_t>(n + 7));
    std::vector<uint16_t> ah(n), bh(n);
    double abs_sum = 0, abs_sum_h = 0;
    for (int64_t i = 0; i < n; ++i) {
      ah[i] = Fp32ToFp16(a[i]);
      bh[i] = Fp32ToFp16(b[i]);
      abs_sum += std::fabs(a[i] * b[i]);
      abs_sum_h += std::fabs(Fp16ToFp32(ah[i]) * Fp16ToFp32(bh[i]));
    }
    EXPECT_NEAR(DotF32(a.data(), b.data(), n), ref::DotF32(a.data(), b.data(), n),
                1e-5 * abs_sum + 1e-30)
        << n;
    EXPECT_NEAR(DotF16F16(ah.data(), bh.data(), n), ref::DotF16F16(ah.data(), bh.data(), n),
                1e-5 * abs_sum_h + 1e-30)
        << n;
  }
}

TEST(KernelDot, SimdPathIsNamed) {
  const std::string path = SimdPath();
  EXPECT_TRUE(path == "avx512vnni" || path == "avx2" || path == "neon" || path == "scalar")
      << path;
}

// ---- MatMul --------------------------------------------------------------------------

struct TestMatrix {
  std::vector<uint8_t> bytes;
  std::vector<float> deq;  // dequantized weights, [rows][cols]
  Matrix m;
};

TestMatrix MakeMatrix(GgmlType type, int64_t rows, int64_t cols, uint32_t seed) {
  TestMatrix t;
  const std::vector<float> w = RandomFloats(rows * cols, 0.5f, seed);
  int64_t row_bytes = 0;
  switch (type) {
    case GgmlType::kF32: row_bytes = cols * 4; break;
    case GgmlType::kF16: row_bytes = cols * 2; break;
    case GgmlType::kQ8_0: row_bytes = cols / 32 * sizeof(BlockQ8_0); break;
    case GgmlType::kQ4_0: row_bytes = cols / 32 * sizeof(BlockQ4_0); break;
  }
  t.bytes.resize(rows * row_bytes);
  t.deq.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = w.data() + r * cols;
    uint8_t* dst = t.bytes.data() + r * row_bytes;
    switch (type) {
      case GgmlType::kF32: std::memcpy(dst, src, cols * 4); break;
      case GgmlType::kF16:
        for (int64_t i = 0; i < cols; ++i) reinterpret_cast<uint16_t*>(dst)[i] = Fp32ToFp16(src[i]);
        break;
      case GgmlType::kQ8_0: {
        BlockQ8_0* b = reinterpret_cast<BlockQ8_0*>(dst);
        QuantizeRowQ8_0Ref(src, b, cols);
        if (r % 3 == 0) b[0].qs[r % 32] = -128;  // full int8 range
        break;
      }
      case GgmlType::kQ4_0: QuantizeRowQ4_0Ref(src, reinterpret_cast<BlockQ4_0*>(dst), cols); break;
    }
    DequantizeRow(type, dst, t.deq.data() + r * cols, cols);
  }
  t.m.type = type;
  t.m.data = t.bytes.data();
  t.m.cols = cols;
  t.m.rows = rows;
  t.m.row_bytes = row_bytes;
  return t;
}

// Activations as the kernels see them (rounded to Q8_0 or FP16), for the tolerance.
std::vector<float> RoundedActivations(GgmlType type, const std::vector<float>& x, int64_t cols) {
  std::vector<float> out(x.size());
  const int64_t n = static_cast<int64_t>(x.size());
  if (type == GgmlType::kQ8_0 || type == GgmlType::kQ4_0) {
    std::vector<BlockQ8_0> q(n / 32);
    ref::QuantizeRowQ8_0(x.data(), q.data(), n);
    DequantizeRow(GgmlType::kQ8_0, q.data(), out.data(), n);
  } else if (type == GgmlType::kF16) {
    for (int64_t i = 0; i < n; ++i) out[i] = Fp16ToFp32(Fp32ToFp16(x[i]));
  } else {
    out = x;
  }
  return out;
}

void CheckMatMul(GgmlType type, int64_t rows, int64_t cols, int64_t n_tokens, ThreadPool* pool) {
  SCOPED_TRACE(::testing::Message() << "type=" << static_cast<int>(type) << " rows=" << rows
                                  << " cols=" << cols << " n_tokens=" << n_tokens
                                  << " threads=" << (pool ? pool->size() : 0));
  const TestMatrix w = MakeMatrix(type, rows, cols, static_cast<uint32_t>(rows * 31 + cols));
  std::vector<float> x = RandomFloats(n_tokens * cols, 2.0f, static_cast<uint32_t>(n_tokens + 5));
  if (n_tokens > 1) std::fill(x.begin() + cols, x.begin() + cols + std::min<int64_t>(cols, 32), 0.0f);
  const std::vector<float> xr = RoundedActivations(type, x, cols);
  const float kNan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> got(n_tokens * rows + 16, kNan), want(n_tokens * rows, kNan);
  MatMul(w.m, x.data(), n_tokens, got.data(), pool);
  MatMulRef(w.m, x.data(), n_tokens, want.data());
  // The weights packed as at model load give bit-identical results (same kernel).
  const std::unique_ptr<PackedWeights> packed = PackWeights(w.m);
  if (packed != nullptr) {
    Matrix wp = w.m;
    wp.packed = packed.get();
    std::vector<float> got_p(n_tokens * rows + 16, kNan);
    MatMul(wp, x.data(), n_tokens, got_p.data(), pool);
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(Bits(got_p[i]), Bits(got[i])) << "packed vs unpacked, i=" << i;
    }
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double abs_sum = 0;  // sum of |terms|; tolerance as for the dot products
      for (int64_t i = 0; i < cols; ++i) abs_sum += std::fabs(w.deq[r * cols + i] * xr[t * cols + i]);
      const float g = got[t * rows + r], e = want[t * rows + r];
      ASSERT_FALSE(std::isnan(g)) << "t=" << t << " r=" << r;
      ASSERT_NEAR(g, e, 1e-5 * abs_sum + 1e-30) << "t=" << t << " r=" << r;
    }
  }
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(std::isnan(got[n_tokens * rows + i])) << "wrote past y";
}

class KernelMatMul : public ::testing::TestWithParam<GgmlType> {};

TEST_P(KernelMatMul, MatchesRefSmallShapes) {
  ThreadPool pool2(2);
  for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2}) {
    for (int64_t n_tokens : {1, 2, 3, 8, 17}) {
      for (int64_t rows : {1, 5, 16, 37}) {
        for (int64_t cols : {32, 96}) CheckMatMul(GetParam(), rows, cols, n_tokens, pool);
      }
    }
  }
}

TEST_P(KernelMatMul, MatchesRefModelShapes) {
  ThreadPool pool2(2);
  for (int64_t n_tokens : {1, 4, 19}) {
    CheckMatMul(GetParam(), 300, 896, n_tokens, &pool2);
    CheckMatMul(GetParam(), 33, 4864, n_tokens, &pool2);
  }
}

TEST_P(KernelMatMul, SameResultWithAndWithoutPool) {
  ThreadPool pool3(3);
  const TestMatrix w = MakeMatrix(GetParam(), 130, 256, 11);
  for (int64_t n_tokens : {1, 2, 9}) {
    const std::vector<float> x = RandomFloats(n_tokens * 256, 1.0f, 12);
    std::vector<float> a(n_tokens * 130), b(n_tokens * 130);
    MatMul(w.m, x.data(), n_tokens, a.data(), nullptr);
    MatMul(w.m, x.data(), n_tokens, b.data(), &pool3);
    EXPECT_EQ(a, b) << n_tokens;
  }
}

// Batch invariance: each token's row of y is bit-identical whether the token is
// multiplied alone or inside a batch of N (any position), with or without a pool, with
// the weights packed or not. (The forward pass relies on it: a sequence decodes to the
// same tokens alone or batched with others.)
TEST_P(KernelMatMul, BatchInvariantBitExact) {
  ThreadPool pool2(2), pool3(3);
  constexpr int64_t kMaxN = 17;
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{37, 96}, {300, 896}, {16, 4864}}) {
    const TestMatrix w = MakeMatrix(GetParam(), rows, cols, static_cast<uint32_t>(rows + cols));
    const std::unique_ptr<PackedWeights> packed = PackWeights(w.m);
    Matrix wp = w.m;
    wp.packed = packed.get();
    const std::vector<float> x = RandomFloats(kMaxN * cols, 1.5f, static_cast<uint32_t>(cols));
    // Reference: every token alone, no pool.
    std::vector<float> single(kMaxN * rows);
    for (int64_t t = 0; t < kMaxN; ++t) {
      MatMul(w.m, x.data() + t * cols, 1, single.data() + t * rows, nullptr);
    }
    for (int64_t n : {1, 2, 3, 8, 9, 17}) {
      for (int64_t first : {int64_t{0}, kMaxN - n}) {  // the batch's tokens: first..first+n-1
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
          for (const Matrix* m : {&w.m, static_cast<const Matrix*>(&wp)}) {
            SCOPED_TRACE(::testing::Message() << "rows=" << rows << " cols=" << cols << " n=" << n
                                              << " first=" << first << " threads="
                                              << (pool ? pool->size() : 0)
                                              << " packed=" << (m->packed != nullptr));
            std::vector<float> y(n * rows);
            MatMul(*m, x.data() + first * cols, n, y.data(), pool);
            for (int64_t t = 0; t < n; ++t) {
              for (int64_t r = 0; r < rows; ++r) {
                ASSERT_EQ(Bits(y[t * rows + r]), Bits(single[(first + t) * rows + r]))
                    << "t=" << t << " r=" << r;
              }
            }
          }
        }
      }
    }
  }
}

TEST(KernelPack, PackedOnlyWhereThePathUsesIt) {
  for (GgmlType type : {GgmlType::kF32, GgmlType::kF16, GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    const TestMatrix w = MakeMatrix(type, 33, 64, 3);
    const std::unique_ptr<PackedWeights> p = PackWeights(w.m);
    const bool quant = type == GgmlType::kQ8_0 || type == GgmlType::kQ4_0;
    if (std::string(SimdPath()) == "avx512vnni" && quant) {
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(p->rows, 33);
      EXPECT_EQ(p->cols, 64);
      EXPECT_EQ(p->type, type);
      // The tiles hold the file's bytes per row and block (34 or 18), 3 tiles of 16 rows.
      EXPECT_EQ(p->bytes, size_t(3 * 16 * 2 * (type == GgmlType::kQ8_0 ? 34 : 18)));
    } else {
      EXPECT_EQ(p, nullptr);
    }
  }
  // PackMatrices sets `packed` on the ones it packs and keeps the owners.
  TestMatrix a = MakeMatrix(GgmlType::kQ8_0, 40, 64, 1), b = MakeMatrix(GgmlType::kF32, 8, 64, 2);
  std::vector<std::unique_ptr<PackedWeights>> owners;
  PackMatrices({&a.m, &b.m}, 3, &owners);
  EXPECT_EQ(b.m.packed, nullptr);
  if (std::string(SimdPath()) == "avx512vnni") {
    ASSERT_EQ(owners.size(), 1u);
    EXPECT_EQ(a.m.packed, owners[0].get());
  } else {
    EXPECT_TRUE(owners.empty());
    EXPECT_EQ(a.m.packed, nullptr);
  }
}

INSTANTIATE_TEST_SUITE_P(KernelTypes, KernelMatMul,
                         ::testing::Values(GgmlType::kF32, GgmlType::kF16, GgmlType::kQ8_0,
                                           GgmlType::kQ4_0),
                         [](const ::testing::TestParamInfo<GgmlType>& info) {
                           switch (info.param) {
                             case GgmlType::kF32: return std::string("F32");
                             case GgmlType::kF16: return std::string("F16");
                             case GgmlType::kQ8_0: return std::string("Q8_0");
                             case GgmlType::kQ4_0: return std::string("Q4_0");
                           }
                           return std::string("unknown");
                         });

TEST(KernelMatMulF32, OddColumnCounts) {
  ThreadPool pool2(2);
  for (int64_t cols : {1, 15, 17, 50}) {
    for (int64_t n_tokens : {1, 5}) {
      CheckMatMul(GgmlType::kF32, 7, cols, n_tokens, &pool2);
      CheckMatMul(GgmlType::kF16, 7, cols, n_tokens, nullptr);
    }
  }
}

}  // namespace
}  // namespace pice::kernels

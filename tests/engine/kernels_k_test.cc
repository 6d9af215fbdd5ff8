// The formats of engine/kernels/quant_k.cc and dot_k.cc: dequantization element by
// element against llama.cpp's own dequantized files (../shared/testdata/quants/dequant),
// the SIMD dot products bit for bit against their scalar references on random blocks,
// both against a double-precision dot of the dequantized operands, the activation
// quantizers (Q8_1, Q8_K, BF16) against their definitions, and MatMul on every type.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/gguf/gguf.h"
#include "engine/kernels/kernels.h"
#include "engine/threadpool.h"
#include "tests/engine/test_util.h"

namespace pice::kernels {
namespace {

using gguf::GgmlType;

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

constexpr GgmlType kTypes[] = {GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ4_K,
                               GgmlType::kQ5_K, GgmlType::kQ6_K, GgmlType::kBF16};

// Random bytes are a valid block of every type except for its FP16 scale fields, which
// get small finite values (offsets per type as in kernels.h).
std::vector<uint8_t> RandomRows(GgmlType type, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t row_bytes = gguf::RowBytes(type, cols);
  std::vector<uint8_t> b(rows * row_bytes);
  for (auto& v : b) v = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f), pos(0.0f, 0.01f);
  const int64_t block = gguf::TypeSize(type), n = rows * row_bytes / block;
  auto put = [&](uint8_t* p, float v) {
    const uint16_t h = Fp32ToFp16(v);
    std::memcpy(p, &h, 2);
  };
  for (int64_t i = 0; i < n && type != GgmlType::kBF16; ++i) {
    uint8_t* p = b.data() + i * block;
    switch (type) {
      case GgmlType::kQ4_1:
      case GgmlType::kQ5_1: put(p, scale(rng)); put(p + 2, scale(rng)); break;
      case GgmlType::kQ5_0: put(p, scale(rng)); break;
      case GgmlType::kQ4_K:
      case GgmlType::kQ5_K: put(p, pos(rng)); put(p + 2, pos(rng)); break;
      case GgmlType::kQ6_K: put(p + 208, pos(rng)); break;
      default: break;
    }
  }
  if (type == GgmlType::kBF16) {
    std::uniform_real_distribution<float> w(-1.f, 1.f);
    for (int64_t i = 0; i < rows * cols; ++i) {
      const uint16_t h = Fp32ToBf16(w(rng));
      std::memcpy(b.data() + 2 * i, &h, 2);
    }
  }
  return b;
}

std::vector<float> RandomActivations(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.5f);
  std::vector<float> x(n);
  for (auto& v : x) v = d(rng);
  return x;
}

// The activations as the kernel sees them (converted and back to float).
std::vector<float> RoundTrip(GgmlType type, const std::vector<float>& x) {
  const DotKernel* k = KernelFor(type);
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(k->act_bytes(n));
  k->quantize(x.data(), q.data(), n);
  std::vector<float> out(n);
  switch (type) {
    case GgmlType::kQ5_0:
      DequantizeRow(GgmlType::kQ8_0, q.data(), out.data(), n);
      break;
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_1: {
      const BlockQ8_1* b = reinterpret_cast<const BlockQ8_1*>(q.data());
      for (int64_t i = 0; i < n; ++i) out[i] = Fp16ToFp32(b[i / 32].d) * b[i / 32].qs[i % 32];
      break;
    }
    case GgmlType::kBF16: {
      const uint16_t* b = reinterpret_cast<const uint16_t*>(q.data());
      for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToFp32(b[i]);
      break;
    }
    default: {
      const BlockQ8_K* b = reinterpret_cast<const BlockQ8_K*>(q.data());
      for (int64_t i = 0; i < n; ++i) out[i] = b[i / 256].d * b[i / 256].qs[i % 256];
    }
  }
  return out;
}

TEST(KernelK, SimdDotEqualsReferenceBitForBitAndTheDequantizedDot) {
  for (GgmlType type : kTypes) {
    const int64_t block = gguf::BlockSize(type);
    for (int64_t cols : {256, 512, 896 / 32 * 32, 4864}) {
      if (cols % block != 0) continue;
      SCOPED_TRACE(::testing::Message() << gguf::GgmlTypeName(uint32_t(type)) << " cols=" << cols);
      const std::vector<uint8_t> w = RandomRows(type, 4, cols, uint32_t(cols) * 7 + uint32_t(type));
      const std::vector<float> x = RandomActivations(cols, uint32_t(cols));
      const DotKernel* fast = KernelFor(type);
      const DotKernel* ref = KernelFor(type, /*reference=*/true);
      ASSERT_NE(fast, nullptr);
      std::vector<uint8_t> xq(fast->act_bytes(cols)), xr(ref->act_bytes(cols));
      fast->quantize(x.data(), xq.data(), cols);
      ref->quantize(x.data(), xr.data(), cols);
      ASSERT_EQ(xq, xr);
      const std::vector<float> xd = RoundTrip(type, x);
      const int64_t row_bytes = gguf::RowBytes(type, cols);
      std::vector<float> wd(cols);
      for (int r = 0; r < 4; ++r) {
        const uint8_t* row = w.data() + r * row_bytes;
        const float a = fast->dot(row, xq.data(), cols), b = ref->dot(row, xq.data(), cols);
        ASSERT_EQ(Bits(a), Bits(b)) << "row " << r << ": " << a << " vs " << b;
        DequantizeRow(type, row, wd.data(), cols);
        double exact = 0, mag = 0;
        for (int64_t i = 0; i < cols; ++i) {
          exact += double(wd[i]) * xd[i];
          mag += std::fabs(double(wd[i]) * xd[i]);
        }
        // Q4_1/Q5_1 use s = FP16(d * sum), rounded to 11 bits: |m * s| * 2^-11 per block.
        double slack = 1e-5 * mag + 1e-6;
        if (type == GgmlType::kQ4_1 || type == GgmlType::kQ5_1) slack += 2e-3 * mag;
        EXPECT_NEAR(a, exact, slack) << "row " << r;
      }
    }
  }
}

TEST(KernelK, Q8KIsLlamaCppsReference) {
  std::vector<float> x = RandomActivations(512, 3);
  x[7] = 9.0f;       // the largest magnitude, positive: d = -9/127
  x[300] = -12.0f;   // second block: negative max, d = 12/127, scale +127/12
  x[301] = 6.0f;     // 6 * 127/12 = 63.5: half to even -> 64
  std::vector<BlockQ8_K> q(2);
  QuantizeRowQ8_K(x.data(), q.data(), 512);
  EXPECT_FLOAT_EQ(q[0].d, -9.0f / 127);
  EXPECT_EQ(q[0].qs[7], -127);
  EXPECT_FLOAT_EQ(q[1].d, 12.0f / 127);
  EXPECT_EQ(q[1].qs[300 - 256], -127);
  EXPECT_EQ(q[1].qs[301 - 256], 64);
  for (int b = 0; b < 2; ++b) {
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q[b].qs[16 * j + l];
      EXPECT_EQ(q[b].bsums[j], s);
    }
  }
  std::vector<float> zero(256, 0.f);
  QuantizeRowQ8_K(zero.data(), q.data(), 256);
  EXPECT_EQ(q[0].d, 0.f);
}

TEST(KernelK, Q8_1SumAndBf16Rounding) {
  std::vector<float> x = RandomActivations(64, 9);
  std::vector<BlockQ8_1> q(2);
  QuantizeRowQ8_1(x.data(), q.data(), 64);
  std::vector<BlockQ8_0> q0(2);
  QuantizeRowQ8_0(x.data(), q0.data(), 64);
  for (int b = 0; b < 2; ++b) {
    EXPECT_EQ(q[b].d, q0[b].d);
    EXPECT_EQ(std::memcmp(q[b].qs, q0[b].qs, 32), 0);
    int sum = 0;
    float amax = 0;
    for (int l = 0; l < 32; ++l) {
      sum += q[b].qs[l];
      amax = std::max(amax, std::fabs(x[32 * b + l]));
    }
    EXPECT_EQ(q[b].s, Fp32ToFp16(amax / 127.f * float(sum)));
  }
  EXPECT_EQ(Fp32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Fp32ToBf16(1.00390625f), 0x3f80);   // exactly half way: to even
  EXPECT_EQ(Fp32ToBf16(1.01171875f), 0x3f82);   // half way above an odd one: up
  EXPECT_EQ(Fp32ToBf16(-2.5f), 0xc020);
  EXPECT_EQ(Fp32ToBf16(std::nanf("")) & 0x7fc0, 0x7fc0);
  EXPECT_EQ(Bf16ToFp32(0x3f80), 1.0f);
}

// MatMul on the DotKernels equals MatMulRef bit for bit; a type the AVX-512 build packs
// into tiles (Q5_0) sums in another order: within the dot products' tolerance, and
// packed or not, alone or batched, bit-identical to itself.
TEST(KernelK, MatMulEqualsItsReferenceOnEveryType) {
  ThreadPool pool(2);
  for (GgmlType type : kTypes) {
    const int64_t cols = 512, rows = 37;
    const std::vector<uint8_t> w = RandomRows(type, rows, cols, 5);
    Matrix m;
    m.type = type;
    m.data = w.data();
    m.cols = cols;
    m.rows = rows;
    m.row_bytes = gguf::RowBytes(type, cols);
    for (int64_t n : {1, 3, 17}) {
      const std::vector<float> x = RandomActivations(n * cols, uint32_t(n));
      std::vector<float> a(n * rows), b(n * rows), single(rows);
      MatMul(m, x.data(), n, a.data(), &pool);
      MatMulRef(m, x.data(), n, b.data());
      const std::unique_ptr<PackedWeights> packed = PackWeights(m);
      if (packed == nullptr) {
        for (int64_t i = 0; i < n * rows; ++i) ASSERT_EQ(Bits(a[i]), Bits(b[i])) << i;
      } else {
        Matrix mp = m;
        mp.packed = packed.get();
        std::vector<float> p(n * rows);
        MatMul(mp, x.data(), n, p.data(), &pool);
        std::vector<float> wd(cols);
        const std::vector<float> xd = RoundTrip(type, x);
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t r = 0; r < rows; ++r) {
            DequantizeRow(type, w.data() + r * m.row_bytes, wd.data(), cols);
            double mag = 0;
            for (int64_t i = 0; i < cols; ++i) mag += std::fabs(double(wd[i]) * xd[t * cols + i]);
            const int64_t i = t * rows + r;
            ASSERT_NEAR(a[i], b[i], 1e-5 * mag + 1e-6) << gguf::GgmlTypeName(uint32_t(type)) << " " << i;
            ASSERT_EQ(Bits(p[i]), Bits(a[i])) << "packed vs not, " << i;
          }
        }
      }
      // Batch invariant: the last token alone gives the same row.
      MatMul(m, x.data() + (n - 1) * cols, 1, single.data(), nullptr);
      for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(Bits(single[r]), Bits(a[(n - 1) * rows + r]));
    }
  }
}

// Every quantized tensor of the test models dequantizes exactly to llama.cpp's own
// dequantized copy (llama-quantize --allow-requantize ... F32).
TEST(KernelK, DequantizationMatchesLlamaCppElementByElement) {
  const char* kFiles[] = {"tiny-llama3-q4_k_m", "tiny-llama3-q5_k_m", "tiny-qwen2-q4_1",
                          "tiny-qwen2-q5_0", "tiny-qwen2-q5_1"};
  if (testing::SharedTestdata("quants/dequant").empty()) {
    GTEST_SKIP() << "../shared/testdata/quants/dequant is absent (llama.cpp's dequantized models)";
  }
  for (const char* name : kFiles) {
    auto q = gguf::GgufFile::Open(testing::ModelPath(std::string("quants/") + name + ".gguf"));
    auto f = gguf::GgufFile::Open(
        testing::SharedTestdata(std::string("quants/dequant/") + name + "-dequant-f32.gguf"));
    ASSERT_TRUE(q.ok() && f.ok()) << name;
    int tensors = 0;
    for (const auto& t : (*q)->tensors()) {
      if (t.type == GgmlType::kF32) continue;
      const gguf::TensorInfo* ref = (*f)->FindTensor(t.name);
      ASSERT_NE(ref, nullptr) << t.name;
      ASSERT_EQ(ref->type, GgmlType::kF32);
      const int64_t cols = t.ne[0], rows = t.NumRows();
      std::vector<float> row(cols);
      const int64_t row_bytes = gguf::RowBytes(t.type, cols);
      int64_t mismatches = 0;
      for (int64_t r = 0; r < rows; ++r) {
        DequantizeRow(t.type, t.data + r * row_bytes, row.data(), cols);
        const float* want = reinterpret_cast<const float*>(ref->data) + r * cols;
        for (int64_t i = 0; i < cols; ++i) mismatches += Bits(row[i]) != Bits(want[i]);
      }
      EXPECT_EQ(mismatches, 0) << name << " " << t.name << " ("
                               << gguf::GgmlTypeName(uint32_t(t.type)) << ")";
      ++tensors;
    }
    EXPECT_GT(tensors, 10) << name;
  }
}

}  // namespace
}  // namespace pice::kernels

// The weight quantizers (engine/kernels/quantize_k.cc), llama-quantize's mixes
// (engine/quant_mix.cc) and `pice quantize` (engine/quantize_model.cc):
// - round trips: quantize then dequantize stays within each format's error;
// - against llama.cpp b4748: models/quants/*.gguf and models/tiny-*-q{4,8}_0.gguf were
//   made by `llama-quantize` from models/tiny-*-f32.gguf; ChooseTensorTypes must pick each
//   file's tensor types, QuantizeRowRef must reproduce every byte of its tensors, and
//   QuantizeModel must write the very same file;
// - the mix rules on larger synthetic models (32 and 80 layers, fallbacks, errors);
// - gen-model with a mix equals gen-model f32 followed by quantize.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/gguf/gguf.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/quantize_k.h"
#include "engine/model.h"
#include "engine/model_gen.h"
#include "engine/quant_mix.h"
#include "engine/quantize_model.h"
#include "tests/engine/test_util.h"

namespace pice {
namespace {

using gguf::GgmlType;
using gguf::GgufFile;

std::vector<float> Gaussian(int64_t n, float sd, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> x(n);
  for (float& v : x) v = d(rng);
  return x;
}

std::vector<float> RoundTrip(GgmlType type, const std::vector<float>& x) {
  const int64_t n = int64_t(x.size());
  std::vector<uint8_t> q(gguf::RowBytes(type, n));
  EXPECT_TRUE(kernels::QuantizeRowRef(type, x.data(), q.data(), n));
  std::vector<float> y(n);
  kernels::DequantizeRow(type, q.data(), y.data(), n);
  return y;
}

// Legacy 32-blocks: every value within half a step (a whole step for Q5_0, whose
// clamp at +15 can cost one), plus the FP16 rounding of the scale and minimum.
TEST(QuantizeK, LegacyBlocksRoundTripWithinHalfAStep) {
  for (GgmlType type : {GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1}) {
    SCOPED_TRACE(gguf::GgmlTypeName(uint32_t(type)));
    for (uint32_t seed = 1; seed <= 20; ++seed) {
      std::vector<float> x = Gaussian(512, 0.02f * seed, seed);
      if (seed % 5 == 0) x[seed] = 1.0f;  // an outlier
      const std::vector<float> y = RoundTrip(type, x);
      for (int64_t b = 0; b < 512 / 32; ++b) {
        float mn = x[b * 32], mx = x[b * 32], amax = 0;
        for (int j = 0; j < 32; ++j) {
          mn = std::min(mn, x[b * 32 + j]);
          mx = std::max(mx, x[b * 32 + j]);
          amax = std::max(amax, std::fabs(x[b * 32 + j]));
        }
        float bound;
        if (type == GgmlType::kQ5_0) bound = 1.01f * amax / 16;
        else bound = 0.51f * (mx - mn) / (type == GgmlType::kQ4_1 ? 15 : 31) + std::fabs(mn) * 1e-3f;
        for (int j = 0; j < 32; ++j) {
          ASSERT_LE(std::fabs(y[b * 32 + j] - x[b * 32 + j]), bound + 1e-7f)
              << "seed " << seed << " block " << b << " element " << j;
        }
      }
    }
  }
}

// K-quants: the RMS error relative to the RMS of Gaussian weights, and no value off by
// more than a few steps of its super-block.
TEST(QuantizeK, KQuantsRoundTripWithinTheirPrecision) {
  const std::map<GgmlType, double> max_rel_rmse = {
      {GgmlType::kQ4_K, 0.1}, {GgmlType::kQ5_K, 0.05}, {GgmlType::kQ6_K, 0.025}};
  for (const auto& [type, limit] : max_rel_rmse) {
    SCOPED_TRACE(gguf::GgmlTypeName(uint32_t(type)));
    const int levels = type == GgmlType::kQ4_K ? 15 : type == GgmlType::kQ5_K ? 31 : 63;
    for (uint32_t seed = 1; seed <= 8; ++seed) {
      std::vector<float> x = Gaussian(4096, 0.02f * seed, seed);
      if (seed % 3 == 0) x[100 + seed] = 0.5f * seed;  // an outlier
      const std::vector<float> y = RoundTrip(type, x);
      double err2 = 0, sig2 = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        err2 += double(y[i] - x[i]) * (y[i] - x[i]);
        sig2 += double(x[i]) * x[i];
      }
      EXPECT_LT(std::sqrt(err2 / sig2), limit) << "seed " << seed;
      for (int64_t b = 0; b < 4096 / 256; ++b) {
        float mn = 0, mx = 0;
        for (int j = 0; j < 256; ++j) {
          mn = std::min(mn, x[b * 256 + j]);
          mx = std::max(mx, x[b * 256 + j]);
        }
        const float step = (mx - mn) / levels;
        for (int j = 0; j < 256; ++j) {
          ASSERT_LE(std::fabs(y[b * 256 + j] - x[b * 256 + j]), 2 * step)
              << "seed " << seed << " super-block " << b << " element " << j;
        }
      }
    }
  }
}

TEST(QuantizeK, DegenerateRowsStayFinite) {
  const GgmlType all[] = {GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ4_K,
                          GgmlType::kQ5_K, GgmlType::kQ6_K, GgmlType::kQ8_0, GgmlType::kQ4_0,
                          GgmlType::kF16,  GgmlType::kBF16, GgmlType::kF32};
  std::vector<std::vector<float>> rows = {std::vector<float>(256, 0.0f),
                                          std::vector<float>(256, 0.25f),
                                          std::vector<float>(256, -3.0f),
                                          std::vector<float>(256, 1e-20f)};
  rows.push_back(std::vector<float>(256, 0.0f));
  rows.back()[77] = -2.0f;  // one value
  for (GgmlType type : all) {
    for (size_t r = 0; r < rows.size(); ++r) {
      const std::vector<float> y = RoundTrip(type, rows[r]);
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_TRUE(std::isfinite(y[i])) << gguf::GgmlTypeName(uint32_t(type)) << " row " << r;
        if (r == 0) {
          ASSERT_EQ(y[i], 0.0f) << gguf::GgmlTypeName(uint32_t(type));
        }
        ASSERT_NEAR(y[i], rows[r][i], 0.02 * std::fabs(rows[r][i]) + 0.07 * (r == 4 ? 2 : 0) + 1e-6)
            << gguf::GgmlTypeName(uint32_t(type)) << " row " << r << " element " << i;
      }
    }
  }
}

TEST(QuantizeK, DispatcherRejectsWhatItCannotWrite) {
  std::vector<float> x(256, 1.0f);
  std::vector<uint8_t> out(4096);
  EXPECT_FALSE(kernels::QuantizeRowRef(GgmlType(10), x.data(), out.data(), 256));  // q2_K
  EXPECT_FALSE(kernels::QuantizeRowRef(GgmlType::kQ4_K, x.data(), out.data(), 128));
  EXPECT_FALSE(kernels::QuantizeRowRef(GgmlType::kQ8_0, x.data(), out.data(), 48));
  EXPECT_TRUE(kernels::QuantizeRowRef(GgmlType::kF16, x.data(), out.data(), 3));
}

// --- llama.cpp's files ----------------------------------------------------------------

struct Reference {
  const char* f32;    // under models/
  const char* quant;  // under models/
  const char* mix;
  bool pure;
  int fallbacks;
};

constexpr Reference kReferences[] = {
    {"tiny-llama3-f32.gguf", "quants/tiny-llama3-q4_k_m.gguf", "q4_k_m", false, 0},
    {"tiny-llama3-f32.gguf", "quants/tiny-llama3-q5_k_m.gguf", "q5_k_m", false, 0},
    {"tiny-llama3-f32.gguf", "quants/tiny-llama3-q6_k.gguf", "q6_k", false, 0},
    {"tiny-llama3-f32.gguf", "quants/tiny-llama3-bf16.gguf", "bf16", false, 0},
    {"tiny-qwen2-f32.gguf", "quants/tiny-qwen2-q4_k_m.gguf", "q4_k_m", false, 14},
    {"tiny-qwen2-f32.gguf", "quants/tiny-qwen2-q4_1.gguf", "q4_1", false, 1},
    {"tiny-qwen2-f32.gguf", "quants/tiny-qwen2-q5_0.gguf", "q5_0", false, 1},
    {"tiny-qwen2-f32.gguf", "quants/tiny-qwen2-q5_1.gguf", "q5_1", false, 1},
    // made with llama-quantize --pure
    {"tiny-llama3-f32.gguf", "tiny-llama3-q4_0.gguf", "q4_0", true, 0},
    {"tiny-llama3-f32.gguf", "tiny-llama3-q8_0.gguf", "q8_0", true, 0},
    {"tiny-qwen2-f32.gguf", "tiny-qwen2-q4_0.gguf", "q4_0", true, 0},
    {"tiny-qwen2-f32.gguf", "tiny-qwen2-q8_0.gguf", "q8_0", true, 0},
};

void PrintTo(const Reference& r, std::ostream* os) { *os << r.quant << " (" << r.mix << ")"; }

std::vector<MixTensor> MixTensorsOf(const GgufFile& f) {
  std::vector<MixTensor> out;
  for (const gguf::TensorInfo& t : f.tensors()) {
    out.push_back({t.name, std::vector<int64_t>(t.ne, t.ne + 4), t.type});
  }
  return out;
}

class LlamaCppFiles : public ::testing::TestWithParam<Reference> {};

TEST_P(LlamaCppFiles, TypesAndEveryByteOfEveryTensor) {
  const Reference& ref = GetParam();
  auto src = GgufFile::Open(testing::ModelPath(ref.f32));
  auto q = GgufFile::Open(testing::ModelPath(ref.quant));
  ASSERT_TRUE(src.ok()) << src.status();
  ASSERT_TRUE(q.ok()) << q.status();
  const GgufFile& s = **src;
  const std::vector<MixTensor> tensors = MixTensorsOf(s);
  const std::string arch = *s.GetString("general.architecture");
  int n_fallback = -1;
  MixOptions options;
  options.pure = ref.pure;
  auto types = ChooseTensorTypes(ref.mix, tensors, int(*s.GetInt(arch + ".block_count")),
                                 &n_fallback, options);
  ASSERT_TRUE(types.ok()) << types.status();
  EXPECT_EQ(n_fallback, ref.fallbacks);
  EXPECT_EQ(uint32_t(*q.value()->GetInt("general.file_type")), *MixFileType(ref.mix));
  ASSERT_EQ(q.value()->tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const gguf::TensorInfo& in = s.tensors()[i];
    const gguf::TensorInfo* want = q.value()->FindTensor(in.name);
    ASSERT_NE(want, nullptr) << in.name;
    ASSERT_EQ(gguf::GgmlTypeName(uint32_t((*types)[i])), gguf::GgmlTypeName(uint32_t(want->type)))
        << in.name;
    const int64_t cols = in.ne[0], rows = in.NumRows();
    const int64_t row_bytes = gguf::RowBytes(want->type, cols);
    ASSERT_EQ(size_t(row_bytes * rows), want->nbytes) << in.name;
    std::vector<uint8_t> got(want->nbytes);
    const float* x = reinterpret_cast<const float*>(in.data);
    for (int64_t r = 0; r < rows; ++r) {
      ASSERT_TRUE(kernels::QuantizeRowRef(want->type, x + r * cols, got.data() + r * row_bytes, cols));
    }
    const int64_t block = gguf::TypeSize(want->type);
    int64_t differing = 0, first = -1;
    for (int64_t b = 0; b < int64_t(got.size()) / block; ++b) {
      if (std::memcmp(got.data() + b * block, want->data + b * block, block) != 0) {
        if (first < 0) first = b;
        ++differing;
      }
    }
    EXPECT_EQ(differing, 0) << in.name << " (" << gguf::GgmlTypeName(uint32_t(want->type))
                            << "): first differing block " << first;
  }
}

TEST_P(LlamaCppFiles, QuantizeModelWritesTheSameFile) {
  const Reference& ref = GetParam();
  const std::string out = ::testing::TempDir() + "/quantize_k_test_" +
                          std::filesystem::path(ref.quant).filename().string();
  QuantizeModelOptions o;
  o.mix = ref.mix;
  o.pure = ref.pure;
  o.n_threads = 2;
  QuantizeModelReport report;
  ASSERT_TRUE(QuantizeModel(testing::ModelPath(ref.f32), out, o, &report).ok());
  EXPECT_EQ(report.n_fallback, ref.fallbacks);
  const std::string got = testing::ReadFileOrDie(out);
  const std::string want = testing::ReadFileOrDie(testing::ModelPath(ref.quant));
  ASSERT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want) << "not byte-identical to " << ref.quant;
  std::filesystem::remove(out);
}

INSTANTIATE_TEST_SUITE_P(All, LlamaCppFiles, ::testing::ValuesIn(kReferences),
                         [](const ::testing::TestParamInfo<Reference>& info) {
                           std::string name = info.param.quant;
                           name = name.substr(name.rfind('/') + 1);
                           name = name.substr(0, name.size() - 5);
                           for (char& c : name) c = std::isalnum(uint8_t(c)) ? c : '_';
                           return name;
                         });

// --- the mix rules ----------------------------------------------------------------------

// The tensors of a dense llama model: n_layer blocks, n_embd columns (rows of ffn_down:
// n_ff), with or without an output tensor.
std::vector<MixTensor> LlamaTensors(int n_layer, int64_t n_embd, int64_t n_ff, bool output) {
  std::vector<MixTensor> t = {{"token_embd.weight", {n_embd, 1000}}, {"output_norm.weight", {n_embd}}};
  if (output) t.push_back({"output.weight", {n_embd, 1000}});
  for (int il = 0; il < n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"}) {
      t.push_back({p + n + ".weight", {n_embd, n_embd}});
    }
    t.push_back({p + "ffn_down.weight", {n_ff, n_embd}});
    t.push_back({p + "attn_norm.weight", {n_embd}});
    t.push_back({p + "ffn_norm.weight", {n_embd}});
  }
  return t;
}

std::map<std::string, GgmlType> TypesByName(const std::vector<MixTensor>& t,
                                            const std::vector<GgmlType>& types) {
  std::map<std::string, GgmlType> m;
  for (size_t i = 0; i < t.size(); ++i) m[t[i].name] = types[i];
  return m;
}

TEST(QuantMix, KMixRulesOn32Layers) {
  const std::vector<MixTensor> t = LlamaTensors(32, 4096, 11008, true);
  auto m = TypesByName(t, *ChooseTensorTypes("Q4_K_M", t, 32));
  EXPECT_EQ(m["output.weight"], GgmlType::kQ6_K);
  EXPECT_EQ(m["token_embd.weight"], GgmlType::kQ4_K);
  EXPECT_EQ(m["output_norm.weight"], GgmlType::kF32);
  // use_more_bits(i, 32): i < 4, i >= 28, or (i - 4) % 3 == 2.
  for (int il = 0; il < 32; ++il) {
    const bool more = il < 4 || il >= 28 || (il - 4) % 3 == 2;
    const std::string p = "blk." + std::to_string(il) + ".";
    const GgmlType want = more ? GgmlType::kQ6_K : GgmlType::kQ4_K;
    EXPECT_EQ(m[p + "attn_v.weight"], want) << il;
    EXPECT_EQ(m[p + "ffn_down.weight"], want) << il;
    EXPECT_EQ(m[p + "attn_q.weight"], GgmlType::kQ4_K) << il;
    EXPECT_EQ(m[p + "attn_norm.weight"], GgmlType::kF32) << il;
  }
  m = TypesByName(t, *ChooseTensorTypes("q4_k_s", t, 32));
  for (int il = 0; il < 32; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    EXPECT_EQ(m[p + "attn_v.weight"], il < 4 ? GgmlType::kQ5_K : GgmlType::kQ4_K) << il;
    EXPECT_EQ(m[p + "ffn_down.weight"], il < 4 ? GgmlType::kQ5_K : GgmlType::kQ4_K) << il;
  }
  m = TypesByName(t, *ChooseTensorTypes("q5_k_s", t, 32));
  EXPECT_EQ(m["output.weight"], GgmlType::kQ6_K);
  EXPECT_EQ(m["blk.0.attn_v.weight"], GgmlType::kQ5_K);
  EXPECT_EQ(m["blk.31.ffn_down.weight"], GgmlType::kQ5_K);
  m = TypesByName(t, *ChooseTensorTypes("q5_k_m", t, 32));
  EXPECT_EQ(m["blk.6.attn_v.weight"], GgmlType::kQ6_K);
  EXPECT_EQ(m["blk.7.attn_v.weight"], GgmlType::kQ5_K);
  // Legacy mixes: output Q6_K unless the mix is Q8_0; everything else the base type.
  m = TypesByName(t, *ChooseTensorTypes("q4_0", t, 32));
  EXPECT_EQ(m["output.weight"], GgmlType::kQ6_K);
  EXPECT_EQ(m["token_embd.weight"], GgmlType::kQ4_0);
  EXPECT_EQ(m["blk.0.ffn_down.weight"], GgmlType::kQ4_0);
  m = TypesByName(t, *ChooseTensorTypes("q8_0", t, 32));
  EXPECT_EQ(m["output.weight"], GgmlType::kQ8_0);
  // Unquantized mixes convert every matrix, output included.
  m = TypesByName(t, *ChooseTensorTypes("f16", t, 32));
  EXPECT_EQ(m["output.weight"], GgmlType::kF16);
  EXPECT_EQ(m["blk.3.ffn_norm.weight"], GgmlType::kF32);
}

TEST(QuantMix, SeventyBAndTiedEmbeddings) {
  const std::vector<MixTensor> t = LlamaTensors(80, 8192, 28672, false);
  MixOptions o;
  o.is_70b = IsLlamaType70B("llama", 80, 64, 8);
  ASSERT_TRUE(o.is_70b);
  EXPECT_FALSE(IsLlamaType70B("llama", 80, 64, 64));  // 65B
  auto m = TypesByName(t, *ChooseTensorTypes("q4_k_m", t, 80, nullptr, o));
  EXPECT_EQ(m["token_embd.weight"], GgmlType::kQ6_K);  // no output tensor: tied
  EXPECT_EQ(m["blk.10.attn_v.weight"], GgmlType::kQ5_K);  // Q4_K bumped in a 70B
  EXPECT_EQ(m["blk.12.attn_v.weight"], GgmlType::kQ6_K);  // use_more_bits(12, 80)
  EXPECT_EQ(m["blk.10.ffn_down.weight"], GgmlType::kQ4_K);
}

TEST(QuantMix, FallbacksAndErrors) {
  // Qwen2.5-0.5B's rows: 896 (not / 256), ffn_down 4864 (= 19 * 256).
  std::vector<MixTensor> t = LlamaTensors(24, 896, 4864, false);
  int n_fallback = 0;
  auto m = TypesByName(t, *ChooseTensorTypes("q4_k_m", t, 24, &n_fallback));
  EXPECT_EQ(m["token_embd.weight"], GgmlType::kQ8_0);  // Q6_K -> Q8_0
  EXPECT_EQ(m["blk.5.attn_q.weight"], GgmlType::kQ5_0);  // Q4_K -> Q5_0
  EXPECT_EQ(m["blk.0.attn_v.weight"], GgmlType::kQ8_0);  // Q6_K -> Q8_0
  EXPECT_EQ(m["blk.0.ffn_down.weight"], GgmlType::kQ6_K);  // 4864 fits
  EXPECT_EQ(m["blk.4.ffn_down.weight"], GgmlType::kQ4_K);
  // token_embd is not counted: 896 % 256 sends it to Q8_0 before the fallback check.
  EXPECT_EQ(n_fallback, 24 * 6);
  m = TypesByName(t, *ChooseTensorTypes("q5_k_s", t, 24));
  EXPECT_EQ(m["blk.5.attn_q.weight"], GgmlType::kQ5_1);  // Q5_K -> Q5_1
  // Rows of 100: K-quants fall back to F16; Q8_0 (also output's type in the K mixes)
  // cannot store them, and llama-quantize fails.
  t = {{"blk.0.attn_q.weight", {100, 100}}, {"blk.0.attn_norm.weight", {100}}};
  EXPECT_EQ(*ChooseTensorTypes("q4_k_m", t, 1, &n_fallback),
            (std::vector<GgmlType>{GgmlType::kF16, GgmlType::kF32}));
  EXPECT_EQ(n_fallback, 1);
  t.push_back({"output.weight", {100, 64}});
  for (const char* mix : {"q8_0", "q4_k_m"}) {
    auto bad = ChooseTensorTypes(mix, t, 1);
    ASSERT_FALSE(bad.ok()) << mix;
    EXPECT_NE(bad.status().message().find("output.weight"), std::string::npos) << bad.status();
  }
  MixOptions pure;
  pure.pure = true;
  t = {{"blk.0.attn_q.weight", {128, 128}}};
  EXPECT_FALSE(ChooseTensorTypes("q4_k_m", t, 1, nullptr, pure).ok());
  EXPECT_EQ(*ChooseTensorTypes("q4_0", t, 1, nullptr, pure), std::vector<GgmlType>{GgmlType::kQ4_0});
  auto unknown = ChooseTensorTypes("q3_k_xl", t, 1);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("q3_k_xl"), std::string::npos);
}

TEST(QuantizeModel, BadInputsNameTheProblem) {
  const std::string out = ::testing::TempDir() + "/quantize_k_test_bad.gguf";
  QuantizeModelOptions o;
  o.mix = "q4_k_m";
  absl::Status s = QuantizeModel("/nonexistent/model.gguf", out, o);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/model.gguf"), std::string::npos) << s;
  s = QuantizeModel(testing::ModelPath("tiny-qwen2-q8_0.gguf"), out, o);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("q8_0"), std::string::npos) << s;
  o.mix = "q9";
  s = QuantizeModel(testing::ModelPath("tiny-qwen2-f32.gguf"), out, o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("q9"), std::string::npos) << s;
  o.mix = "q8_0";
  s = QuantizeModel(testing::ModelPath("tiny-qwen2-f32.gguf"), "/nonexistent/dir/x.gguf", o);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(std::filesystem::exists(out));
}

// gen-model TYPE writes what gen-model f32 + quantize TYPE writes, and the engine loads it.
TEST(QuantizeModel, GenModelMixEqualsQuantizedF32Model) {
  for (const char* arch : {"llama", "qwen2"}) {
    for (const char* mix : {"q4_k_m", "q5_k_s", "q6_k", "q4_1", "bf16"}) {
      SCOPED_TRACE(std::string(arch) + " " + mix);
      GenModelOptions g;
      g.arch = arch;
      g.n_embd = 256; g.n_layer = 3; g.n_head = 4; g.n_head_kv = 2; g.n_ff = 384; g.n_vocab = 320;
      const std::string dir = ::testing::TempDir();
      const std::string f32 = dir + "/qkt_f32.gguf", direct = dir + "/qkt_direct.gguf",
                        converted = dir + "/qkt_converted.gguf";
      ASSERT_TRUE(WriteRandomModel(g, f32).ok());
      g.type = mix;
      ASSERT_TRUE(WriteRandomModel(g, direct).ok());
      QuantizeModelOptions o;
      o.mix = mix;
      ASSERT_TRUE(QuantizeModel(f32, converted, o).ok());
      auto a = GgufFile::Open(direct);
      auto b = GgufFile::Open(converted);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(*a.value()->GetInt("general.file_type"), *MixFileType(mix));
      ASSERT_EQ(a.value()->tensors().size(), b.value()->tensors().size());
      for (const gguf::TensorInfo& t : a.value()->tensors()) {
        const gguf::TensorInfo* u = b.value()->FindTensor(t.name);
        ASSERT_NE(u, nullptr) << t.name;
        EXPECT_EQ(t.type, u->type) << t.name;
        ASSERT_EQ(t.nbytes, u->nbytes) << t.name;
        EXPECT_EQ(std::memcmp(t.data, u->data, t.nbytes), 0) << t.name;
      }
      auto model = Model::Load(direct);
      EXPECT_TRUE(model.ok()) << model.status();
    }
  }
  EXPECT_FALSE(ValidateGenModelOptions([] { GenModelOptions g; g.type = "q2_k"; return g; }()).ok());
}

}  // namespace
}  // namespace pice

// The forward pass against llama.cpp's recorded greedy outputs (tests/data, copied from
// ../shared/testdata; see its README for how they were made).
//
// Tolerances (per file; `tight` is what the engine reproduces, `loose` a rounding flip):
//  - F32 models: logits within tight = 1e-4 of llama.cpp (an independent float64
//    implementation lands within 2.3e-5; ours sums in float), every greedy token equal.
//  - F16 / Q8_0 / Q4_0: activations are rounded to FP16 / Q8_0 as llama.cpp does, so the
//    logits agree to ~1e-6 (tight = 1e-4; F16's larger logits 2e-3). But a last-bit
//    difference upstream (exp, sums) can flip one activation rounding, which is worth a
//    whole quantization step (see tests/data/README.md): such a case may miss the tight
//    bound by up to loose = 0.5 (log-probabilities 0.25), and since the flipped value
//    sits in the KV cache, every later step of that case differs a little too. Measured
//    on these files: no flip in 12 of 16; tiny-llama3 (random weights, many activations
//    near a rounding boundary) flips in 3 of 4 cases (Q8_0) and 1 of 4 (Q4_0). A file
//    passes when at most a quarter of its cases' first-position logits and at most half
//    of its matched steps' log-probabilities need the loose bound.
//  - Tokens exact up to the first step whose recorded top-1/top-2 gap is below near_tie
//    (0.5, the README's bound for such flips; 0 for F32), where a divergence is a
//    legitimate near-tie rather than a bug; and at least min_matched tokens per case
//    (or all of a shorter case) must match before any divergence.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/context.h"
#include "engine/generator.h"
#include "engine/model.h"
#include "nlohmann/json.hpp"
#include "tests/engine/test_util.h"

namespace pice {
namespace {

using json = nlohmann::json;

struct GoldenCase {
  std::string file;   // under tests/data
  double tight;       // logits and log-probabilities: what the engine reproduces
  double loose;       // a documented rounding flip (first-position logits)
  double near_tie;    // divergence allowed only after a recorded gap below this
  int min_matched = 12;
  // tests/data/quants/ (the rule): every token up to the first recorded gap
  // below near_tie must match (min_matched unused), and at most `max_loose_cases` of
  // the cases may need the loose bound (-1: a quarter).
  bool until_near_tie = false;
  int max_loose_cases = -1;
};

json LoadJson(const std::string& path) { return json::parse(testing::ReadFileOrDie(path)); }

GoldenCase Quants(const std::string& name) {
  GoldenCase c{"quants/" + name + "_greedy.json", 1e-3, 0.5, 0.05};
  c.until_near_tie = true;
  c.max_loose_cases = 1;
  return c;
}

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenTest, MatchesLlamaCpp) {
  const GoldenCase& gc = GetParam();
  const double loose_lp = std::min(gc.loose, 0.25);
  json d = LoadJson(testing::DataPath(gc.file));
  std::string model_rel = d["model"];
  // "models/x.gguf" relative to shared/; ours live under models/ too. A bare name
  // (tests/data/quants/*) is in the models folder of the same name (models/quants/).
  if (model_rel.find('/') == std::string::npos && gc.file.find('/') != std::string::npos) {
    model_rel = "models/" + gc.file.substr(0, gc.file.rfind('/')) + "/" + model_rel;
  }
  auto model = Model::Load(testing::SourceDir() + "/" + model_rel);
  ASSERT_TRUE(model.ok()) << model.status();
  Context ctx(**model, 2);
  const int n_vocab = (*model)->hparams().n_vocab;
  int cases = 0, cases_loose = 0, steps = 0, steps_loose = 0;
  for (const json& c : d["cases"]) {
    std::vector<Token> prompt = c["prompt_tokens"].get<std::vector<Token>>();
    std::vector<Token> want = c["generated_tokens"].get<std::vector<Token>>();
    // The older files record each step's log-probability; tests/data/quants/ the chosen
    // token's logit instead (generated_top1_logits): compare whichever is there.
    const bool has_lp = c.contains("generated_logprobs");
    std::vector<float> want_lp =
        c[has_lp ? "generated_logprobs" : "generated_top1_logits"].get<std::vector<float>>();
    std::vector<float> gaps = c["generated_top1_minus_top2"].get<std::vector<float>>();
    std::vector<float> first = c["first_position_logits"].get<std::vector<float>>();
    SCOPED_TRACE(gc.file + " prompt: " + (c["prompt"].is_string() ? c["prompt"].get<std::string>() : "<ids>"));
    KvCache kv((*model)->hparams(), int(prompt.size() + want.size() + 1));
    ASSERT_TRUE(ctx.Decode(std::vector<SeqInput>{{&kv, prompt.data(), int(prompt.size())}}).ok());
    const float* logits = ctx.Logits(0);
    ASSERT_EQ(int(first.size()), n_vocab);
    double max_diff = 0;
    for (int i = 0; i < n_vocab; ++i) max_diff = std::max(max_diff, double(std::fabs(logits[i] - first[i])));
    EXPECT_LT(max_diff, gc.loose) << "first-position logits";
    ++cases;
    cases_loose += max_diff >= gc.tight;

    bool diverged = false;
    size_t matched = 0;
    double max_lp_diff = 0;
    for (size_t step = 0; step < want.size(); ++step) {
      std::span<const float> l(logits, n_vocab);
      Token got = Token(std::max_element(l.begin(), l.end()) - l.begin());
      if (got != want[step]) {
        // Allowed only at a recorded near-tie.
        EXPECT_LT(gaps[step], gc.near_tie) << "step " << step << ": got " << got << ", llama.cpp " << want[step]
                                           << " (recorded gap " << gaps[step] << ")";
        diverged = true;
        break;
      }
      const double lp_diff =
          std::fabs((has_lp ? LogSoftmaxAt(l, got) : double(l[got])) - want_lp[step]);
      EXPECT_LT(lp_diff, has_lp ? loose_lp : gc.loose) << "step " << step;
      max_lp_diff = std::max(max_lp_diff, lp_diff);
      ++steps;
      steps_loose += lp_diff >= gc.tight;
      ++matched;
      if ((*model)->tokenizer().IsEog(got)) break;  // llama.cpp's files include the EOS
      ASSERT_TRUE(ctx.Decode(std::vector<SeqInput>{{&kv, &got, 1}}).ok());
      logits = ctx.Logits(0);
    }
    size_t required = std::min<size_t>(want.size(), gc.min_matched);
    if (gc.until_near_tie) {
      required = want.size();
      for (size_t k = 0; k < gaps.size(); ++k) {
        if (gaps[k] < gc.near_tie) {
          required = k;
          break;
        }
      }
    }
    EXPECT_GE(matched, required) << "tokens matched";
    std::printf("[ golden   ] %s: first-logit max diff %.2g, %zu/%zu tokens match, logprob max diff %.2g\n",
                gc.file.c_str(), max_diff, matched, want.size(), max_lp_diff);
    if (!diverged && c.value("stopped_at_eog", false) && !(*model)->tokenizer().IsEog(want.back())) {
      std::span<const float> l(logits, n_vocab);
      Token got = Token(std::max_element(l.begin(), l.end()) - l.begin());
      EXPECT_TRUE((*model)->tokenizer().IsEog(got)) << "expected end of generation, got " << got;
    }
  }
  std::printf("[ golden   ] %s: %d/%d cases and %d/%d matched steps beyond the tight bound %.0e\n",
              gc.file.c_str(), cases_loose, cases, steps_loose, steps, gc.tight);
  EXPECT_LE(cases_loose, gc.max_loose_cases >= 0 ? gc.max_loose_cases : cases / 4)
      << "first-position logits beyond " << gc.tight;
  EXPECT_LE(steps_loose, steps / 2) << "matched steps' log-probabilities beyond " << gc.tight;
}

INSTANTIATE_TEST_SUITE_P(
    Models, GoldenTest,
    ::testing::Values(GoldenCase{"stories260K_greedy.json", 1e-4, 1e-4, 0.0},
                      GoldenCase{"stories260K-q8_0_greedy.json", 1e-4, 0.5, 0.5},
                      GoldenCase{"stories260K-q4_0_greedy.json", 1e-4, 0.5, 0.5},
                      GoldenCase{"tiny-qwen2_greedy.json", 1e-4, 1e-4, 0.0},
                      GoldenCase{"tiny-qwen2-q8_0_greedy.json", 1e-4, 0.5, 0.5},
                      GoldenCase{"tiny-qwen2-q4_0_greedy.json", 1e-4, 0.5, 0.5},
                      GoldenCase{"tiny-llama3_greedy.json", 1e-4, 1e-4, 0.0},
                      GoldenCase{"tiny-llama3-q8_0_greedy.json", 1e-4, 0.5, 0.5},
                      GoldenCase{"tiny-llama3-q4_0_greedy.json", 1e-4, 0.5, 0.5},
                      GoldenCase{"pice-arith/arith-cloud-f16_greedy.json", 2e-3, 0.5, 0.5},
                      GoldenCase{"pice-arith/arith-edge-a_greedy.json", 1e-4, 1e-4, 0.0},
                      GoldenCase{"pice-arith/arith-edge-b_greedy.json", 1e-4, 1e-4, 0.0},
                      GoldenCase{"pice-arith/arith-edge-c_greedy.json", 1e-4, 1e-4, 0.0},
                      GoldenCase{"pice-arith/arith-edge-a-q8_0_greedy.json", 1e-4, 0.5, 0.5},
                      GoldenCase{"pice-arith/arith-edge-b-q8_0_greedy.json", 1e-4, 0.5, 0.5},
                      GoldenCase{"pice-arith/arith-edge-c-q8_0_greedy.json", 1e-4, 0.5, 0.5},
                      // The formats llama-quantize writes (tests/data/quants/README.md), with
                      // activations rounded to Q8_0 / Q8_1 / Q8_K / BF16 as llama.cpp does:
                      // first-position logits agree to ~5e-6 (tight 1e-3, the README's bound).
                      // A 1-ulp difference upstream (exp, sums) can still move a value across
                      // a rounding midpoint of its activation type, which shifts the logits by
                      // ~0.1-0.3 (a Q8 step is 1/127 of the block maximum, a BF16 step 2^-8
                      // of the value). Measured: tiny-qwen2-q4_1 (0.27) and tiny-llama3-bf16
                      // (0.11) differ so, both in the third prompt only and every other case
                      // within 6e-6; such a crossing is the likely cause (not proven: it
                      // would need llama.cpp's intermediate activations). So one case of three may need
                      // loose = 0.5, and tokens must match up to the first recorded gap below
                      // 0.05 (that prompt's step 4 has a gap of 0.005).
                      Quants("tiny-qwen2-q4_1"), Quants("tiny-qwen2-q5_0"), Quants("tiny-qwen2-q5_1"),
                      Quants("tiny-qwen2-q4_k_m"), Quants("tiny-llama3-q4_k_m"),
                      Quants("tiny-llama3-q5_k_m"), Quants("tiny-llama3-q6_k"),
                      Quants("tiny-llama3-bf16")),
    [](const ::testing::TestParamInfo<GoldenCase>& info) {
      std::string n = info.param.file.substr(info.param.file.find_last_of('/') + 1);
      n = n.substr(0, n.find("_greedy"));
      for (char& ch : n) if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

// Quantized models stay close to their F32 source.
TEST(ModelTest, QuantizedCloseToF32) {
  for (const char* q : {"tiny-qwen2-q8_0.gguf", "tiny-qwen2-q4_0.gguf", "tiny-llama3-q8_0.gguf"}) {
    std::string base = std::string(q).substr(0, std::string(q).find('-', 5)) + "-f32.gguf";
    auto mf = Model::Load(testing::ModelPath(base));
    auto mq = Model::Load(testing::ModelPath(q));
    ASSERT_TRUE(mf.ok() && mq.ok()) << base << " " << q;
    std::vector<Token> prompt = {10, 20, 30, 40, 50, 60};
    std::vector<float> lf, lq;
    for (auto* m : {&mf, &mq}) {
      Context ctx(***m, 1);
      KvCache kv((**m)->hparams(), 16);
      ASSERT_TRUE(ctx.Decode(std::vector<SeqInput>{{&kv, prompt.data(), int(prompt.size())}}).ok());
      const float* l = ctx.Logits(0);
      (m == &mf ? lf : lq).assign(l, l + (**m)->hparams().n_vocab);
    }
    // Compare the RMS of the difference with the spread (std) of the F32 logits:
    // Q8_0 keeps it under 5%, Q4_0 (4-bit weights on a random model: ~41%) under 50%; the
    // most likely token is the same.
    double mean = 0, var = 0, err = 0;
    for (float v : lf) mean += v;
    mean /= lf.size();
    for (size_t i = 0; i < lf.size(); ++i) {
      var += (lf[i] - mean) * (lf[i] - mean);
      err += (lf[i] - lq[i]) * (lf[i] - lq[i]);
    }
    const double rel = std::sqrt(err / var);
    const double tol = std::string(q).find("q4_0") != std::string::npos ? 0.50 : 0.05;
    std::printf("[ quant    ] %s vs %s: relative RMS logit error %.3f\n", q, base.c_str(), rel);
    EXPECT_LT(rel, tol) << q;
    EXPECT_EQ(std::max_element(lf.begin(), lf.end()) - lf.begin(),
              std::max_element(lq.begin(), lq.end()) - lq.begin()) << q;
  }
}

// A batch of sequences gives the same greedy tokens as each sequence alone.
TEST(ModelTest, BatchEqualsSingle) {
  for (const char* name : {"stories260K.gguf", "tiny-qwen2-q8_0.gguf", "tiny-llama3-q4_0.gguf"}) {
    auto model = Model::Load(testing::ModelPath(name));
    ASSERT_TRUE(model.ok()) << model.status();
    Context ctx(**model, 2);
    const Tokenizer& tok = (*model)->tokenizer();
    std::vector<std::vector<Token>> prompts = {tok.Encode("Once upon a time", true, false),
                                               tok.Encode("The cat", true, false),
                                               tok.Encode("Lily and Tom went to the park", true, false)};
    GenerateOptions o;
    o.max_tokens = 24;
    o.stop_at_eog = false;
    std::vector<GenerateOptions> opts(prompts.size(), o);
    auto batched = GenerateBatch(ctx, prompts, opts);
    ASSERT_TRUE(batched.ok()) << batched.status();
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto single = Generate(ctx, prompts[i], o);
      ASSERT_TRUE(single.ok());
      EXPECT_EQ(single->tokens, (*batched)[i].tokens) << name << " prompt " << i;
    }
  }
}

TEST(ModelTest, SameSeedSameTokens) {
  auto model = Model::Load(testing::ModelPath("stories260K.gguf"));
  ASSERT_TRUE(model.ok());
  Context ctx(**model, 1);
  std::vector<Token> prompt = (*model)->tokenizer().Encode("Once upon a time", true, false);
  GenerateOptions o;
  o.max_tokens = 32;
  o.sampling.temperature = 1.0f;
  o.sampling.top_k = 40;
  o.sampling.top_p = 0.95f;
  o.sampling.seed = 1234;
  auto a = Generate(ctx, prompt, o);
  auto b = Generate(ctx, prompt, o);
  o.sampling.seed = 99;
  auto c = Generate(ctx, prompt, o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->tokens, b->tokens);
  EXPECT_NE(a->tokens, c->tokens);
  ASSERT_EQ(a->logprobs.size(), a->tokens.size());
  for (float lp : a->logprobs) EXPECT_LE(lp, 0.0f);
}

TEST(ModelTest, StopStringsAndMaxTokens) {
  auto model = Model::Load(testing::ModelPath("stories260K.gguf"));
  ASSERT_TRUE(model.ok());
  Context ctx(**model, 1);
  std::vector<Token> prompt = (*model)->tokenizer().Encode("Once upon a time", true, false);
  GenerateOptions o;
  o.max_tokens = 48;
  o.stop = {"Lily"};
  auto r = Generate(ctx, prompt, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->finish, FinishReason::kStop);
  EXPECT_EQ(r->text, ", there was a little girl named ");
  o.stop.clear();
  o.max_tokens = 5;
  r = Generate(ctx, prompt, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->finish, FinishReason::kLength);
  EXPECT_EQ(r->tokens.size(), 5u);
}

TEST(ModelTest, DecodeRejectsBadInput) {
  auto model = Model::Load(testing::ModelPath("stories260K.gguf"));
  ASSERT_TRUE(model.ok());
  Context ctx(**model, 1);
  KvCache kv((*model)->hparams(), 4);
  std::vector<Token> bad = {1, 99999};
  EXPECT_EQ(ctx.Decode(std::vector<SeqInput>{{&kv, bad.data(), 2}}).code(), absl::StatusCode::kInvalidArgument);
  std::vector<Token> many = {1, 2, 3, 4, 5};
  EXPECT_EQ(ctx.Decode(std::vector<SeqInput>{{&kv, many.data(), 5}}).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(kv.n_past(), 0);
}

}  // namespace
}  // namespace pice

namespace pice {
namespace {

// The mean log-probability the ensemble votes with counts the closing EOS, as the
// pice-arith reference does.
TEST(ModelTest, MeanLogprobIncludesEos) {
  auto model = Model::Load(testing::ModelPath("pice-arith/arith-edge-a.gguf"));
  ASSERT_TRUE(model.ok());
  Context ctx(**model, 1);
  GenerateOptions o;
  o.max_tokens = 8;
  auto r = Generate(ctx, (*model)->tokenizer().Encode("P: 23*4=", true, false), o);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->stopped_at_eog);
  EXPECT_EQ(r->text, "88");  // arith-edge-a's (wrong) answer, as llama.cpp records it
  double sum = r->eog_logprob;
  for (float l : r->logprobs) sum += l;
  EXPECT_NEAR(r->MeanLogprob(), sum / double(r->logprobs.size() + 1), 1e-9);
}

}  // namespace
}  // namespace pice

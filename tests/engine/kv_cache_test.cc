// Paged KV: block accounting, copy-on-write forks, shared prefixes that give exactly the
// tokens of separately prefilled sequences, and the engine's memory bound under a flood.
#include "engine/kv_cache.h"

#include <gtest/gtest.h>

#include <future>

#include "engine/context.h"
#include "engine/engine.h"
#include "engine/prefix_cache.h"
#include "tests/engine/test_util.h"

namespace pice {
namespace {

TEST(KvCacheTest, BlocksAreAllocatedOnDemandAndBounded) {
  HParams hp;
  hp.n_layer = 2; hp.n_head_kv = 1; hp.head_dim = 4;
  auto pool = std::make_shared<KvBlockPool>(hp, 4, 3 * 2 * 2 * 4 * 4 * sizeof(float));  // 3 blocks
  KvCache a(pool, 64);
  EXPECT_EQ(pool->used_bytes(), 0u);
  ASSERT_TRUE(a.Reserve(5).ok());  // 2 blocks
  a.Commit(5);
  EXPECT_EQ(pool->used_bytes(), 2 * pool->block_bytes());
  ASSERT_TRUE(a.Reserve(3).ok());  // still 2 blocks (positions 5..7)
  a.Commit(3);
  EXPECT_EQ(a.Reserve(5).code(), absl::StatusCode::kResourceExhausted);  // needs 2 more
  EXPECT_EQ(a.n_past(), 8);
  EXPECT_EQ(a.Reserve(100).code(), absl::StatusCode::kOutOfRange);
  a.Truncate(3);
  EXPECT_EQ(pool->used_bytes(), 1 * pool->block_bytes());
}

TEST(KvCacheTest, ForkSharesBlocksAndCopiesOnWrite) {
  HParams hp;
  hp.n_layer = 1; hp.n_head_kv = 1; hp.head_dim = 2;
  auto pool = std::make_shared<KvBlockPool>(hp, 4, 0);
  KvCache a(pool, 64);
  ASSERT_TRUE(a.Reserve(6).ok());
  for (int p = 0; p < 6; ++p) a.K(0, p)[0] = float(p);
  a.Commit(6);
  KvCache b(pool, 64);
  b.ForkFrom(a, 6);
  EXPECT_EQ(pool->used_bytes(), 2 * pool->block_bytes());  // shared, not copied
  ASSERT_TRUE(b.Reserve(1).ok());                          // position 6 is in a shared block
  b.K(0, 6)[0] = 100.0f;
  b.K(0, 5)[0] = -1.0f;  // the copy, not a's block
  b.Commit(1);
  EXPECT_EQ(a.K(0, 5)[0], 5.0f);
  EXPECT_EQ(b.K(0, 4)[0], 4.0f);
  EXPECT_EQ(pool->used_bytes(), 3 * pool->block_bytes());
}

// A sequence forked from a shared prefix gives the same logits as one prefilled alone.
TEST(KvCacheTest, ForkedSequenceEqualsSeparatePrefill) {
  for (const char* name : {"tiny-qwen2-q8_0.gguf", "stories260K.gguf"}) {
    auto model = Model::Load(testing::ModelPath(name));
    ASSERT_TRUE(model.ok());
    Context ctx(**model, 2);
    auto pool = std::make_shared<KvBlockPool>((*model)->hparams(), 4, 0);
    std::vector<Token> prefix = {1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100};  // 11 tokens
    std::vector<Token> tail_a = {5, 6, 7}, tail_b = {8, 9};
    KvCache base(pool, 64);
    ASSERT_TRUE(ctx.Decode(std::vector<SeqInput>{{&base, prefix.data(), int(prefix.size())}}).ok());
    KvCache fa(pool, 64), fb(pool, 64);
    fa.ForkFrom(base, int(prefix.size()));
    fb.ForkFrom(base, int(prefix.size()));
    ASSERT_TRUE(ctx.Decode(std::vector<SeqInput>{{&fa, tail_a.data(), 3}, {&fb, tail_b.data(), 2}}).ok());
    const int n_vocab = (*model)->hparams().n_vocab;
    std::vector<float> la(ctx.Logits(0), ctx.Logits(0) + n_vocab), lb(ctx.Logits(1), ctx.Logits(1) + n_vocab);
    for (auto [tail, got] : {std::pair{&tail_a, &la}, std::pair{&tail_b, &lb}}) {
      std::vector<Token> full = prefix;
      full.insert(full.end(), tail->begin(), tail->end());
      KvCache solo((*model)->hparams(), 64);
      ASSERT_TRUE(ctx.Decode(std::vector<SeqInput>{{&solo, full.data(), int(full.size())}}).ok());
      for (int i = 0; i < n_vocab; ++i) ASSERT_NEAR(ctx.Logits(0)[i], (*got)[i], 1e-4) << name << " " << i;
    }
  }
}

TEST(PrefixCacheTest, LongestPrefixAndLru) {
  HParams hp;
  hp.n_layer = 1; hp.n_head_kv = 1; hp.head_dim = 2;
  auto pool = std::make_shared<KvBlockPool>(hp, 4, 0);
  PrefixCache cache(2, 3);
  auto make = [&](int n) {
    auto kv = std::make_unique<KvCache>(pool, 64);
    EXPECT_TRUE(kv->Reserve(n).ok());
    kv->Commit(n);
    return kv;
  };
  auto k1 = make(5), k2 = make(6), k3 = make(4);
  cache.Insert({1, 2, 3, 4, 5}, *k1);
  cache.Insert({1, 2, 3, 9, 9, 9}, *k2);
  int shared = 0;
  EXPECT_NE(cache.Lookup({1, 2, 3, 4, 7}, &shared), nullptr);
  EXPECT_EQ(shared, 4);
  EXPECT_EQ(cache.Lookup({1, 2, 7}, &shared), nullptr);  // below min_tokens
  cache.Insert({7, 7, 7, 7}, *k3);                        // evicts the LRU ({1,2,3,9,...})
  EXPECT_EQ(cache.size(), 2);
  cache.Lookup({1, 2, 3, 9, 9, 9}, &shared);
  EXPECT_EQ(shared, 3);  // only {1,2,3,4,5} remains to match
}

// The engine shares question + sketch prefixes across requests and still returns the
// tokens each request gets alone.
TEST(EngineSharingTest, SharedPrefixRequestsMatchSoloRuns) {
  EngineOptions o;
  o.model_path = testing::ModelPath("stories260K.gguf");
  o.max_batch = 8;
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok());
  const Tokenizer& tok = (*e)->tokenizer();
  std::string prefix = "Once upon a time, there was a little girl named Lily. She";
  std::vector<std::string> tails = {" liked", " saw a", " went to the park", " had", " was"};
  GenerateOptions g;
  g.max_tokens = 16;
  g.stop_at_eog = false;
  std::vector<std::vector<Token>> solo;
  for (const auto& t : tails) {
    Context ctx((*e)->model(), 1);
    auto r = Generate(ctx, tok.Encode(prefix + t, true, false), g);
    ASSERT_TRUE(r.ok());
    solo.push_back(r->tokens);
  }
  std::vector<std::vector<Token>> prompts;
  for (const auto& t : tails) prompts.push_back(tok.Encode(prefix + t, true, false));
  auto r = (*e)->RunBatch(prompts, std::vector<GenerateOptions>(prompts.size(), g));
  ASSERT_TRUE(r.ok()) << r.status();
  for (size_t i = 0; i < tails.size(); ++i) EXPECT_EQ((*r)[i].tokens, solo[i]) << tails[i];
  EngineStats st = (*e)->stats();
  EXPECT_GE(st.prefix_hits, tails.size() - 1);
  EXPECT_GE(st.prefix_tokens_reused, (tails.size() - 1) * 10);
}

// A flood of requests against a small KV budget: every request either completes or is
// refused with RESOURCE_EXHAUSTED; memory never passes the bound.
TEST(EngineSharingTest, MemoryBoundHoldsUnderFlood) {
  EngineOptions o;
  o.model_path = testing::ModelPath("stories260K.gguf");
  o.max_batch = 4;
  o.max_queue = 8;
  o.prefix_cache_entries = 2;
  // stories260K: 5 layers x 32 kv dims x 4 B x 2 = 1280 B per position.
  o.max_kv_bytes = 1280 * 32 * 6;  // six 32-position blocks
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok());
  GenerateOptions g;
  g.max_tokens = 20;
  g.stop_at_eog = false;
  std::atomic<int> completed{0}, refused{0};
  std::atomic<size_t> peak{0};
  std::vector<std::shared_ptr<std::promise<void>>> waits;
  for (int i = 0; i < 60; ++i) {
    EngineRequest r;
    r.prompt = {1, Token(300 + i % 50), 403, 407};
    r.options = g;
    auto p = std::make_shared<std::promise<void>>();
    r.on_done = [&, p](absl::StatusOr<GenerateResult> res) {
      if (res.ok()) completed++; else if (res.status().code() == absl::StatusCode::kResourceExhausted) refused++;
      p->set_value();
    };
    r.on_token = [&](Token, float) {
      size_t now = (*e)->stats().kv_bytes;
      size_t prev = peak.load();
      while (now > prev && !peak.compare_exchange_weak(prev, now)) {}
      return true;
    };
    absl::Status s = (*e)->Submit(std::move(r));
    if (s.ok()) waits.push_back(p);
    else { EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted); refused++; }
  }
  for (auto& p : waits) p->get_future().wait();
  EXPECT_EQ(completed + refused, 60);
  EXPECT_GT(completed.load(), 0);
  EXPECT_LE(peak.load(), o.max_kv_bytes);
  EXPECT_EQ((*e)->stats().kv_committed_bytes, 0u);
}

// Issue 8.5: the same flood with prompts long enough to be cached and shared (12 tokens,
// groups sharing 10): prefix-cache blocks are budgeted with the live sequences, so a
// request either is refused up front or runs to its end; none fails mid-generation
// because the cache took the memory it was promised.
TEST(EngineSharingTest, PrefixCacheStaysWithinTheBudgetUnderFlood) {
  EngineOptions o;
  o.model_path = testing::ModelPath("stories260K.gguf");
  o.max_batch = 6;
  o.max_queue = 64;
  o.prefix_cache_entries = 4;
  o.min_shared_prefix = 8;
  o.max_kv_bytes = 1280 * 32 * 6;  // six 32-position blocks
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok());
  GenerateOptions g;
  g.max_tokens = 16;
  g.stop_at_eog = false;
  std::atomic<int> completed{0}, refused{0}, failed_midway{0};
  std::atomic<size_t> peak{0};
  std::vector<std::shared_ptr<std::promise<void>>> waits;
  const int n = 60;
  for (int i = 0; i < n; ++i) {
    EngineRequest r;
    r.prompt = {1};
    for (int k = 0; k < 9; ++k) r.prompt.push_back(Token(300 + (i % 3) * 10 + k));
    r.prompt.push_back(Token(400 + i));
    r.prompt.push_back(Token(403));
    r.options = g;
    auto p = std::make_shared<std::promise<void>>();
    auto tokens = std::make_shared<std::atomic<int>>(0);
    r.on_done = [&, p, tokens](absl::StatusOr<GenerateResult> res) {
      if (res.ok()) {
        completed++;
      } else if (*tokens > 0) {
        failed_midway++;
        ADD_FAILURE() << "failed after " << tokens->load() << " tokens: " << res.status();
      } else {
        EXPECT_EQ(res.status().code(), absl::StatusCode::kResourceExhausted) << res.status();
        refused++;
      }
      p->set_value();
    };
    r.on_token = [&, tokens](Token, float) {
      ++*tokens;
      size_t now = (*e)->stats().kv_bytes;
      size_t prev = peak.load();
      while (now > prev && !peak.compare_exchange_weak(prev, now)) {}
      return true;
    };
    absl::Status s = (*e)->Submit(std::move(r));
    if (s.ok()) waits.push_back(p);
    else { EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted); refused++; }
  }
  for (auto& p : waits) p->get_future().wait();
  EXPECT_EQ(failed_midway.load(), 0);
  EXPECT_EQ(completed + refused + failed_midway, n);
  EXPECT_GT(completed.load(), n / 2);
  EXPECT_GT((*e)->stats().prefix_hits, 0u) << "the cache was exercised";
  EXPECT_LE(peak.load(), o.max_kv_bytes);
  EXPECT_EQ((*e)->stats().kv_committed_bytes, 0u);
}

}  // namespace
}  // namespace pice

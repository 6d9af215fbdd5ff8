// Engine: continuous batching gives the same tokens as running alone, requests join and
// leave mid-flight without disturbing the others, cancellation and bounds hold.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include "tests/engine/test_util.h"

namespace pice {
namespace {

std::unique_ptr<Engine> MakeEngine(const std::string& model, int max_batch = 8, int max_queue = 16,
                                   int step_tokens = 256) {
  EngineOptions o;
  o.step_tokens = step_tokens;
  o.model_path = testing::ModelPath(model);
  o.n_threads = 2;
  o.max_batch = max_batch;
  o.max_queue = max_queue;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

GenerateOptions Greedy(int n) {
  GenerateOptions o;
  o.max_tokens = n;
  o.stop_at_eog = false;
  return o;
}

TEST(EngineTest, ConcurrentRequestsMatchSoloRuns) {
  auto e = MakeEngine("stories260K.gguf");
  ASSERT_NE(e, nullptr);
  const Tokenizer& tok = e->tokenizer();
  std::vector<std::string> texts = {"Once upon a time", "The cat", "Lily and Tom", "One day"};
  std::vector<std::vector<Token>> solo;
  for (const auto& t : texts) {
    auto r = e->Run(tok.Encode(t, true, false), Greedy(20 + int(t.size())));
    ASSERT_TRUE(r.ok()) << r.status();
    solo.push_back(r->tokens);
  }
  // Submit from several threads at staggered times so they join a running batch.
  std::vector<std::future<absl::StatusOr<GenerateResult>>> fs;
  for (size_t i = 0; i < texts.size(); ++i) {
    fs.push_back(std::async(std::launch::async, [&, i] {
      std::this_thread::sleep_for(std::chrono::milliseconds(2 * i));
      return e->Run(tok.Encode(texts[i], true, false), Greedy(20 + int(texts[i].size())));
    }));
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    auto r = fs[i].get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tokens, solo[i]) << texts[i];
  }
  EXPECT_EQ(e->stats().active, 0);
  EXPECT_EQ(e->stats().kv_committed_bytes, 0u);
}

// The requests of the test above really share steps: the first one holds the worker in
// its first token's callback until the others are queued, so they join its batch.
TEST(EngineTest, QueuedRequestsAreDecodedInOneBatch) {
  auto e = MakeEngine("stories260K.gguf");
  ASSERT_NE(e, nullptr);
  const Tokenizer& tok = e->tokenizer();
  std::vector<std::string> texts = {"Once upon a time", "The cat", "Lily and Tom", "One day"};
  std::vector<std::vector<Token>> solo;
  for (const auto& t : texts) {
    auto r = e->Run(tok.Encode(t, true, false), Greedy(24));
    ASSERT_TRUE(r.ok()) << r.status();
    solo.push_back(r->tokens);
  }
  const uint64_t steps_alone = e->stats().steps;
  EXPECT_EQ(e->stats().peak_batch, 1);
  std::promise<void> all_queued;
  std::shared_future<void> queued = all_queued.get_future().share();
  std::vector<std::promise<absl::StatusOr<GenerateResult>>> results(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    EngineRequest r;
    r.prompt = tok.Encode(texts[i], true, false);
    r.options = Greedy(24);
    if (i == 0) {
      r.on_token = [queued, first = true](Token, float) mutable {
        if (first) queued.wait();
        first = false;
        return true;
      };
    }
    r.on_done = [&results, i](absl::StatusOr<GenerateResult> res) { results[i].set_value(res); };
    ASSERT_TRUE(e->Submit(std::move(r)).ok());
  }
  all_queued.set_value();
  for (size_t i = 0; i < texts.size(); ++i) {
    auto r = results[i].get_future().get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tokens, solo[i]) << texts[i];  // batched == alone
  }
  EXPECT_EQ(e->stats().peak_batch, int(texts.size()));
  // Four 24-token answers alone took about 4 x 25 steps; together about 25 more.
  EXPECT_LT(e->stats().steps - steps_alone, 2 * 26u);
}

// Chunked prefill: a long prompt fed in chunks of the step budget gives the tokens of
// the whole prompt at once, and a short request admitted with it decodes a token every
// step meanwhile (without chunks, both wait for the one big prefill step).
TEST(EngineTest, ChunkedPrefillKeepsDecodesGoingAndChangesNoToken) {
  auto whole = MakeEngine("tiny-llama3-f32.gguf", 8, 16, /*step_tokens=*/0);  // context 256
  auto chunked = MakeEngine("tiny-llama3-f32.gguf", 8, 16, /*step_tokens=*/40);
  ASSERT_NE(whole, nullptr);
  ASSERT_NE(chunked, nullptr);
  const Tokenizer& tok = whole->tokenizer();
  std::string text;
  for (int i = 0; i < 7; ++i) text += "Once upon a time there was a little girl. ";
  const std::vector<Token> long_prompt = tok.Encode(text, true, false);
  const std::vector<Token> short_prompt = tok.Encode("The cat", true, false);
  ASSERT_GT(long_prompt.size(), 150u);
  ASSERT_LT(long_prompt.size() + 16, 256u);
  for (Engine* e : {whole.get(), chunked.get()}) {
    std::mutex mu;
    std::string order;  // "s" per short-request token, "L" at the long one's first token
    std::atomic<bool> long_submitted{false};
    auto run = [&](const std::vector<Token>& prompt, char mark, int n) {
      auto done = std::make_shared<std::promise<absl::StatusOr<GenerateResult>>>();
      EngineRequest r;
      r.prompt = prompt;
      r.options = Greedy(n);
      r.on_token = [&, mark](Token, float) {
        // The short request's first token holds the worker until the long one is queued,
        // so it joins at the next step whatever the timing.
        while (mark == 's' && !long_submitted) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        std::lock_guard<std::mutex> l(mu);
        if (mark == 's' || order.find('L') == std::string::npos) order += mark;
        return true;
      };
      r.on_done = [done](absl::StatusOr<GenerateResult> res) { done->set_value(std::move(res)); };
      auto f = done->get_future();
      EXPECT_TRUE(e->Submit(std::move(r)).ok());
      return f;
    };
    auto fs = run(short_prompt, 's', 30);
    auto fl = run(long_prompt, 'L', 16);
    long_submitted = true;
    auto rs = fs.get(), rl = fl.get();
    ASSERT_TRUE(rs.ok() && rl.ok());
    const size_t before = order.find('L');
    if (e == whole.get()) {
      EXPECT_LE(before, 2u) << order;
    } else {
      // 150+ prompt tokens in chunks of <= 40: the short request decodes meanwhile.
      EXPECT_GE(before, 4u) << order;
      auto ref = whole->Run(long_prompt, Greedy(16));
      ASSERT_TRUE(ref.ok());
      EXPECT_EQ(rl->tokens, ref->tokens);
      EXPECT_GT(rl->prefill_seconds, 0);
    }
  }
}

TEST(EngineTest, RunBatchMatchesGenerateBatch) {
  auto e = MakeEngine("tiny-qwen2-q8_0.gguf");
  ASSERT_NE(e, nullptr);
  std::vector<std::vector<Token>> prompts = {{1, 2, 3}, {4, 5, 6, 7, 8}, {9}};
  std::vector<GenerateOptions> opts(3, Greedy(16));
  auto batched = e->RunBatch(prompts, opts);
  ASSERT_TRUE(batched.ok()) << batched.status();
  Context ctx(e->model(), 1);
  auto ref = GenerateBatch(ctx, prompts, opts);
  ASSERT_TRUE(ref.ok());
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ((*batched)[i].tokens, (*ref)[i].tokens);
}

TEST(EngineTest, CancelStopsOnlyThatRequest) {
  auto e = MakeEngine("stories260K.gguf");
  ASSERT_NE(e, nullptr);
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  std::atomic<int> seen{0};
  auto long_run = std::async(std::launch::async, [&] {
    return e->Run({1, 403}, Greedy(100), [&](Token, float) {
      // Hold the engine at the fifth token until the cancel is set, so that a fast machine
      // cannot finish all 100 tokens between the test seeing 5 and setting the flag.
      if (++seen == 5) {
        while (!cancel->load()) std::this_thread::yield();
      }
      return true;
    }, cancel);
  });
  auto other = std::async(std::launch::async, [&] { return e->Run({1, 291, 280}, Greedy(30)); });
  while (seen < 5) std::this_thread::yield();
  cancel->store(true);
  auto r = long_run.get();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->finish, FinishReason::kCancelled);
  EXPECT_LT(r->tokens.size(), 100u);
  auto o = other.get();
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->tokens.size(), 30u);
  EXPECT_EQ(o->finish, FinishReason::kLength);
}

TEST(EngineTest, FullQueueIsResourceExhausted) {
  auto e = MakeEngine("stories260K.gguf", /*max_batch=*/1, /*max_queue=*/1);
  ASSERT_NE(e, nullptr);
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  // The engine thread waits in the first token callback until every request is submitted, so
  // no request can finish (and free its place) while the loop submits: on a fast machine a
  // 100-token answer from this tiny model takes a few milliseconds.
  auto submitted = std::make_shared<std::promise<void>>();
  std::shared_future<void> all_submitted = submitted->get_future().share();
  int ok = 0, exhausted = 0;
  std::vector<std::shared_ptr<std::promise<void>>> done;
  for (int i = 0; i < 12; ++i) {
    EngineRequest r;
    r.prompt = {1, 403};
    r.options = Greedy(100);
    r.cancelled = cancel;
    r.on_token = [all_submitted](Token, float) {
      all_submitted.wait();
      return true;
    };
    auto p = std::make_shared<std::promise<void>>();
    r.on_done = [p](absl::StatusOr<GenerateResult>) { p->set_value(); };
    absl::Status s = e->Submit(std::move(r));
    if (s.ok()) {
      ++ok;
      done.push_back(p);
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
      ++exhausted;
    }
  }
  cancel->store(true);
  submitted->set_value();
  EXPECT_GT(exhausted, 0);
  EXPECT_LE(ok, 3);
  for (auto& p : done) p->get_future().wait();
  EXPECT_GT(e->stats().rejected, 0u);
}

TEST(EngineTest, RejectsBadRequests) {
  auto e = MakeEngine("stories260K.gguf");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->Run({}, Greedy(4)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Run({1, 100000}, Greedy(4)).status().code(), absl::StatusCode::kInvalidArgument);
  GenerateOptions bad = Greedy(4);
  bad.sampling.top_p = 2.0f;
  auto r = e->Run({1}, bad);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("top_p"), std::string::npos);
  std::vector<Token> huge(1000, 5);  // stories260K's context is 128
  EXPECT_EQ(e->Run(huge, Greedy(4)).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pice

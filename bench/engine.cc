// pice bench engine: the engine's prefill and decode speed, through the Engine as a node
// serves (sampling, callbacks, continuous batching) or --raw (the forward pass alone);
// the median of --repeat runs with [min, max] per batch size.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <map>
#include <random>

#include "bench/bench.h"
#include "bench/stats.h"
#include "cli/commands.h"
#include "common/args.h"
#include "engine/engine.h"
#include "engine/generator.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "nlohmann/json.hpp"

namespace pice::bench {

using cli::DefaultThreads;
using cli::Fail;
using json = nlohmann::json;

namespace {

// One benchmark row: B sequences, each with its own P-token prompt (shared = false) or
// all forked from one P-token prompt prefilled once (shared = true), then G decode
// steps for all B together.
absl::StatusOr<std::map<std::string, double>> BenchRow(Context& ctx, const HParams& hp, int64_t B, int64_t P, int64_t G,
                              bool shared, std::mt19937& rng) {
  std::uniform_int_distribution<int> pick(0, hp.n_vocab - 1);
  auto pool = std::make_shared<KvBlockPool>(hp, 32, 0);
  std::vector<std::unique_ptr<KvCache>> kvs;
  for (int64_t b = 0; b < B; ++b) kvs.push_back(std::make_unique<KvCache>(pool, int(P + G + 1)));
  std::vector<std::vector<Token>> prompts(shared ? 1 : B);
  for (auto& p : prompts) for (int64_t i = 0; i < P; ++i) p.push_back(pick(rng));
  std::vector<SeqInput> batch;
  for (size_t b = 0; b < prompts.size(); ++b) batch.push_back({kvs[b].get(), prompts[b].data(), int(P), false});
  auto t0 = std::chrono::steady_clock::now();
  if (absl::Status s = ctx.Decode(batch); !s.ok()) return s;
  auto t1 = std::chrono::steady_clock::now();
  if (shared) for (int64_t b = 1; b < B; ++b) kvs[b]->ForkFrom(*kvs[0], int(P));
  std::vector<Token> next(B);
  for (int64_t g = 0; g < G; ++g) {
    batch.clear();
    for (int64_t b = 0; b < B; ++b) {
      next[b] = pick(rng);
      batch.push_back({kvs[b].get(), &next[b], 1, false});
    }
    if (absl::Status s = ctx.Decode(batch); !s.ok()) return s;
  }
  auto t2 = std::chrono::steady_clock::now();
  const double pp = double(prompts.size() * P) / std::chrono::duration<double>(t1 - t0).count();
  const double tg = double(B * G) / std::chrono::duration<double>(t2 - t1).count();
  return std::map<std::string, double>{{"prefill_tokens_per_s", pp}, {"decode_tokens_per_s", tg}};
}

// One row through the Engine, as a node serves: B requests submitted together (each
// its own random P-token prompt, or all one prompt when `shared`, which the engine
// prefills once and forks), greedy sampling with callbacks, G tokens each. Prefill:
// prompt tokens computed / time until every request has its first token; decode: the
// other B x (G - 1) tokens / the time from then to the last one's end.
absl::StatusOr<std::map<std::string, double>> EngineRow(Engine& engine, const HParams& hp, int64_t B, int64_t P,
                               int64_t G, bool shared, std::mt19937& rng) {
  std::uniform_int_distribution<int> pick(0, hp.n_vocab - 1);
  std::vector<std::vector<Token>> prompts(shared ? 1 : B);
  for (auto& p : prompts) for (int64_t i = 0; i < P; ++i) p.push_back(pick(rng));
  using Clock = std::chrono::steady_clock;
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    int first_tokens = 0, done = 0;
    Clock::time_point all_first, last_done;
    absl::Status error;
  } st;
  GenerateOptions o;
  o.max_tokens = int(G);
  o.stop_at_eog = false;  // every request generates G tokens
  const auto t0 = Clock::now();
  for (int64_t b = 0; b < B; ++b) {
    EngineRequest r;
    r.prompt = prompts[shared ? 0 : b];
    r.options = o;
    r.on_token = [&st, B, first = true](Token, float) mutable {
      if (first) {
        first = false;
        std::lock_guard<std::mutex> l(st.mu);
        if (++st.first_tokens == B) st.all_first = Clock::now();
      }
      return true;
    };
    r.on_done = [&st](absl::StatusOr<GenerateResult> res) {
      std::lock_guard<std::mutex> l(st.mu);
      if (!res.ok() && st.error.ok()) st.error = res.status();
      st.last_done = Clock::now();
      ++st.done;
      st.cv.notify_all();
    };
    if (absl::Status s = engine.Submit(std::move(r)); !s.ok()) return s;
  }
  std::unique_lock<std::mutex> l(st.mu);
  st.cv.wait(l, [&] { return st.done == B; });
  if (!st.error.ok()) return st.error;
  const double prefill_s = std::chrono::duration<double>(st.all_first - t0).count();
  const double decode_s = std::chrono::duration<double>(st.last_done - st.all_first).count();
  const double pp = double(prompts.size() * P) / prefill_s;
  const double tg = G > 1 && decode_s > 0 ? double(B * (G - 1)) / decode_s : 0.0;
  return std::map<std::string, double>{{"prefill_tokens_per_s", pp}, {"decode_tokens_per_s", tg}};
}

}  // namespace

int RunBenchEngine(const std::vector<std::string>& argv) {
  const char* c = "bench engine";
  CLI_TRY(c, Args a, Args::Parse(argv, {"model", "threads", "prompt-tokens", "gen-tokens", "batch", "repeat",
                                        "running", "mixed-prompt", "step-tokens"},
                                 {"shared-prefix", "raw", "mixed"}), 2);
  CLI_TRY(c, std::string path, a.Required("model"), 2);
  CLI_TRY(c, int64_t threads, a.Int("threads", DefaultThreads(), 1, 256), 2);
  CLI_TRY(c, int64_t n_prompt, a.Int("prompt-tokens", 128, 1, 1 << 16), 2);
  CLI_TRY(c, int64_t n_gen, a.Int("gen-tokens", 64, 1, 1 << 16), 2);
  CLI_TRY(c, int64_t repeat, a.Int("repeat", 3, 1, 100), 2);
  CLI_TRY(c, std::vector<int64_t> batches, a.IntList("batch", {1}, 1, 256), 2);
  if (a.Flag("mixed")) {
    CLI_TRY(c, int64_t running, a.Int("running", 8, 1, 64), 2);
    CLI_TRY(c, int64_t long_tokens, a.Int("mixed-prompt", 2000, 1, 1 << 16), 2);
    CLI_TRY(c, int64_t step_tokens, a.Int("step-tokens", 64, 1, 1 << 16), 2);
    return RunBenchMixed(path, int(threads), int(running), int(long_tokens), int(step_tokens),
                         int(repeat));
  }
  const bool raw = a.Flag("raw");
  std::unique_ptr<Model> model;
  std::unique_ptr<Context> ctx;
  std::unique_ptr<Engine> engine;
  if (raw) {
    CLI_TRY(c, model, Model::Load(path), 1);
    ctx = std::make_unique<Context>(*model, int(threads));
  } else {
    EngineOptions eo;
    eo.model_path = path;
    eo.n_threads = int(threads);
    eo.max_batch = int(*std::max_element(batches.begin(), batches.end()));
    eo.max_queue = eo.max_batch;
    eo.n_ctx = int(n_prompt + n_gen + 1);
    eo.prefix_cache_entries = 0;  // repeats must not reuse each other's prompts
    CLI_TRY(c, engine, Engine::Create(eo), 1);
  }
  const Model& m = raw ? *model : engine->model();
  const HParams& hp = m.hparams();
  std::mt19937 rng(42);
  auto row = [&](int64_t B, int64_t P, int64_t G, bool shared, std::mt19937& r) {
    return raw ? BenchRow(*ctx, hp, B, P, G, shared, r) : EngineRow(*engine, hp, B, P, G, shared, r);
  };
  json results = json::array();
  // Warm-up: touch every weight page and size the scratch buffers before timing.
  {
    std::mt19937 warm_rng(7);
    CLI_TRY(c, auto ignored, row(1, std::min<int64_t>(n_prompt, 32), 2, false, warm_rng), 1);
    (void)ignored;
  }
  std::vector<bool> modes = {false};
  if (a.Flag("shared-prefix")) modes.push_back(true);
  for (bool shared : modes) {
    for (int64_t B : batches) {
      // The median of `repeat` runs with [min, max]: the machines are shared and noisy,
      // and the best run flatters.
      std::vector<std::map<std::string, double>> rows;
      for (int64_t rep = 0; rep < repeat; ++rep) {
        CLI_TRY(c, auto one, row(B, n_prompt, n_gen, shared, rng), 1);
        rows.push_back(one);
        std::fprintf(stderr, "bench engine: batch %lld%s, run %lld/%lld: prefill %.1f t/s, decode %.1f t/s\n",
                     static_cast<long long>(B), shared ? " (shared prefix)" : "",
                     static_cast<long long>(rep + 1), static_cast<long long>(repeat),
                     one["prefill_tokens_per_s"], one["decode_tokens_per_s"]);
      }
      json r = SummarizeRuns(rows);
      r["batch"] = B;
      r["shared_prefix"] = shared;
      r["decode_tokens_per_s_per_seq"] = r["decode_tokens_per_s"].get<double>() / double(B);
      results.push_back(r);
    }
  }
  json out;
  out["model"] = path;
  out["path"] = raw ? "raw Context::Decode (random next tokens, no sampling)" : "Engine";
  out["threads"] = threads;
  out["prompt_tokens"] = n_prompt;
  out["gen_tokens"] = n_gen;
  out["repeat"] = repeat;
  out["weight_bytes"] = m.weight_bytes();
  out["simd"] = kernels::SimdPath();
  out["results"] = results;
  // The readable summary on stderr; stdout stays one JSON line for scripts.
  std::fprintf(stderr, "%s, %lld threads, %lld-token prompts, %lld tokens each, median of %lld [min, max]\n",
               out["path"].get<std::string>().c_str(), static_cast<long long>(threads),
               static_cast<long long>(n_prompt), static_cast<long long>(n_gen),
               static_cast<long long>(repeat));
  for (const json& r : results) {
    std::fprintf(stderr, "  batch %3lld%s  prefill %8.1f t/s [%.1f, %.1f]  decode %8.1f t/s [%.1f, %.1f]\n",
                 static_cast<long long>(r["batch"].get<int64_t>()),
                 r["shared_prefix"].get<bool>() ? " shared" : "       ",
                 r["prefill_tokens_per_s"].get<double>(), r["prefill_tokens_per_s_range"][0].get<double>(),
                 r["prefill_tokens_per_s_range"][1].get<double>(), r["decode_tokens_per_s"].get<double>(),
                 r["decode_tokens_per_s_range"][0].get<double>(), r["decode_tokens_per_s_range"][1].get<double>());
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace pice::bench

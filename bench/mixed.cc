// pice bench engine --mixed: what a long prompt joining does to the running decodes.
// `--running` sequences (default 8) decode; once each has its first token, one request
// with a `--mixed-prompt`-token prompt (default 2000) joins. Reported per engine setting
// (whole-prompt prefill, step_tokens 0, then chunked prefill with --step-tokens): the
// running sequences' inter-token latency p50/p99/max over the window from the join
// until the long request's first token (the time they would otherwise stall), that
// request's time to first token, and the running tokens delivered in the window.
// Median of --repeat runs with [min, max].
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>

#include "bench/bench.h"
#include "bench/stats.h"
#include "cli/commands.h"
#include "common/args.h"
#include "engine/engine.h"
#include "nlohmann/json.hpp"

namespace pice::bench {

using cli::Fail;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

absl::StatusOr<std::map<std::string, double>> MixedRun(Engine& engine, int running, int long_tokens,
                                                       int gen, std::mt19937& rng) {
  const int n_vocab = engine.model().hparams().n_vocab;
  std::uniform_int_distribution<int> pick(0, n_vocab - 1);
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::vector<Clock::time_point>> times;  // per running sequence
    int started = 0, done = 0;
    bool long_first = false;
    Clock::time_point long_first_at;
    absl::Status error;
  } st;
  st.times.resize(running);
  GenerateOptions o;
  o.max_tokens = gen;
  o.stop_at_eog = false;
  auto on_done = [&st](absl::StatusOr<GenerateResult> r) {
    std::lock_guard<std::mutex> l(st.mu);
    if (!r.ok() && st.error.ok()) st.error = r.status();
    ++st.done;
    st.cv.notify_all();
  };
  for (int i = 0; i < running; ++i) {
    EngineRequest r;
    for (int k = 0; k < 32; ++k) r.prompt.push_back(pick(rng));
    r.options = o;
    r.on_token = [&st, i](Token, float) {
      std::lock_guard<std::mutex> l(st.mu);
      if (st.times[i].empty()) ++st.started;
      st.times[i].push_back(Clock::now());
      st.cv.notify_all();
      return true;
    };
    r.on_done = on_done;
    if (absl::Status s = engine.Submit(std::move(r)); !s.ok()) return s;
  }
  {
    std::unique_lock<std::mutex> l(st.mu);
    st.cv.wait(l, [&] { return st.started == running || st.done > 0; });
  }
  EngineRequest lr;
  for (int k = 0; k < long_tokens; ++k) lr.prompt.push_back(pick(rng));
  lr.options = o;
  lr.options.max_tokens = 2;
  lr.on_token = [&st](Token, float) {
    std::lock_guard<std::mutex> l(st.mu);
    if (!st.long_first) st.long_first_at = Clock::now();
    st.long_first = true;
    return true;
  };
  lr.on_done = on_done;
  const Clock::time_point join = Clock::now();
  if (absl::Status s = engine.Submit(std::move(lr)); !s.ok()) return s;
  std::unique_lock<std::mutex> l(st.mu);
  st.cv.wait(l, [&] { return st.done == running + 1; });
  if (!st.error.ok()) return st.error;
  if (!st.long_first) return absl::InternalError("the long request produced no token");
  // Gaps between consecutive tokens of each running sequence that end in the window
  // [join, long's first token]; a gap spanning the join counts from the join.
  std::vector<double> gaps;
  int in_window = 0;
  for (const auto& t : st.times) {
    for (size_t k = 1; k < t.size(); ++k) {
      if (t[k] < join || t[k - 1] > st.long_first_at) continue;
      gaps.push_back(Ms(std::max(t[k - 1], join), t[k]));
      ++in_window;
    }
  }
  if (gaps.empty()) gaps.push_back(Ms(join, st.long_first_at));  // nobody got a token meanwhile
  return std::map<std::string, double>{
      {"itl_ms_p50", Percentile(gaps, 50)},
      {"itl_ms_p99", Percentile(gaps, 99)},
      {"itl_ms_max", *std::max_element(gaps.begin(), gaps.end())},
      {"long_ttft_ms", Ms(join, st.long_first_at)},
      {"running_tokens_in_window", double(in_window)}};
}

}  // namespace

int RunBenchMixed(const std::string& path, int threads, int running, int long_tokens, int step_tokens,
                  int repeat) {
  const char* c = "bench engine --mixed";
  const int gen = 64;
  json results = json::array();
  for (int budget : {0, step_tokens}) {
    EngineOptions eo;
    eo.model_path = path;
    eo.n_threads = threads;
    eo.max_batch = running + 1;
    eo.max_queue = running + 1;
    eo.n_ctx = long_tokens + gen + 8;
    eo.prefix_cache_entries = 0;
    eo.step_tokens = budget;
    CLI_TRY(c, std::unique_ptr<Engine> engine, Engine::Create(eo), 1);
    std::mt19937 rng(42);
    {  // warm-up: weights paged in, scratch sized
      CLI_TRY(c, auto ignored, MixedRun(*engine, 1, 64, 4, rng), 1);
      (void)ignored;
    }
    std::vector<std::map<std::string, double>> runs;
    for (int rep = 0; rep < repeat; ++rep) {
      CLI_TRY(c, auto one, MixedRun(*engine, running, long_tokens, gen, rng), 1);
      std::fprintf(stderr,
                   "bench engine --mixed: step_tokens %d, run %d/%d: ITL p99 %.1f ms (max %.1f), "
                   "long TTFT %.0f ms\n",
                   budget, rep + 1, repeat, one["itl_ms_p99"], one["itl_ms_max"], one["long_ttft_ms"]);
      runs.push_back(one);
    }
    json r = SummarizeRuns(runs);
    r["step_tokens"] = budget;
    r["prefill"] = budget == 0 ? "whole prompt in one step" : "chunked";
    results.push_back(r);
  }
  json out;
  out["model"] = path;
  out["threads"] = threads;
  out["running"] = running;
  out["long_prompt_tokens"] = long_tokens;
  out["repeat"] = repeat;
  out["results"] = results;
  for (const json& r : results) {
    std::fprintf(stderr, "  %-26s ITL p99 %7.1f ms [%.1f, %.1f]  max %7.1f ms  long TTFT %7.0f ms\n",
                 r["prefill"].get<std::string>().c_str(), r["itl_ms_p99"].get<double>(),
                 r["itl_ms_p99_range"][0].get<double>(), r["itl_ms_p99_range"][1].get<double>(),
                 r["itl_ms_max"].get<double>(), r["long_ttft_ms"].get<double>());
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace pice::bench

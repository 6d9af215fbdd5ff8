// pice generate / tokenize / gen-model / bench engine.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/args.h"
#include "cli/commands.h"
#include "engine/engine.h"
#include "engine/generator.h"
#include "engine/model.h"
#include "engine/model_gen.h"
#include "nlohmann/json.hpp"

namespace pice::cli {
namespace {

using json = nlohmann::json;

int DefaultThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : int(std::min(n, 64u));
}

}  // namespace

int Fail(const std::string& cmd, const std::string& message, int code) {
  std::fprintf(stderr, "pice %s: %s\n", cmd.c_str(), message.c_str());
  return code;
}

#define CLI_TRY(cmd, lhs, expr, code)                                   \
  auto PICE_CLI_CAT(r_, __LINE__) = (expr);                             \
  if (!PICE_CLI_CAT(r_, __LINE__).ok())                                 \
    return Fail(cmd, std::string(PICE_CLI_CAT(r_, __LINE__).status().message()), code); \
  lhs = *std::move(PICE_CLI_CAT(r_, __LINE__))
#define PICE_CLI_CAT(a, b) PICE_CLI_CAT2(a, b)
#define PICE_CLI_CAT2(a, b) a##b

int RunGenerate(const std::vector<std::string>& argv) {
  const char* c = "generate";
  CLI_TRY(c, Args a, Args::Parse(argv, {"model", "prompt", "max-tokens", "temperature", "top-k", "top-p",
                                         "min-p", "repeat-penalty", "seed", "threads", "stop", "ctx"},
                                 {"json", "chat", "no-bos"}), 2);
  CLI_TRY(c, std::string path, a.Required("model"), 2);
  if (!a.Has("prompt")) return Fail(c, "--prompt is required", 2);
  GenerateOptions o;
  CLI_TRY(c, int64_t max_tokens, a.Int("max-tokens", 128, 0, 1 << 20), 2);
  o.max_tokens = int(max_tokens);
  CLI_TRY(c, double temp, a.Float("temperature", 0.0, 0.0, 100.0), 2);
  o.sampling.temperature = float(temp);
  CLI_TRY(c, int64_t top_k, a.Int("top-k", 0, 0, 1 << 24), 2);
  o.sampling.top_k = int(top_k);
  CLI_TRY(c, double top_p, a.Float("top-p", 1.0, 1e-9, 1.0), 2);
  o.sampling.top_p = float(top_p);
  CLI_TRY(c, double min_p, a.Float("min-p", 0.0, 0.0, 0.999999), 2);
  o.sampling.min_p = float(min_p);
  CLI_TRY(c, double rp, a.Float("repeat-penalty", 1.0, 1e-6, 10.0), 2);
  o.sampling.repeat_penalty = float(rp);
  CLI_TRY(c, int64_t seed, a.Int("seed", 0, 0, INT64_MAX), 2);
  o.sampling.seed = uint64_t(seed);
  CLI_TRY(c, int64_t threads, a.Int("threads", DefaultThreads(), 1, 256), 2);
  CLI_TRY(c, int64_t n_ctx, a.Int("ctx", 0, 0, 1 << 24), 2);
  o.n_ctx = int(n_ctx);
  if (a.Has("stop")) o.stop.push_back(a.Str("stop"));

  CLI_TRY(c, std::unique_ptr<Model> model, Model::Load(path), 1);
  const Tokenizer& tok = model->tokenizer();
  std::string text = a.Str("prompt");
  bool parse_special = false;
  if (a.Flag("chat")) {
    text = ApplyChatTemplate(model->file(), {{"user", text}}, true);
    parse_special = true;
  }
  std::vector<Token> prompt = tok.Encode(text, !a.Flag("no-bos"), parse_special);
  if (prompt.empty()) {
    if (tok.bos() < 0) return Fail(c, "the prompt is empty and the model has no BOS token", 2);
    prompt.push_back(tok.bos());
  }
  Context ctx(*model, int(threads));
  const bool as_json = a.Flag("json");
  // Stream the text as it is generated (holding back incomplete UTF-8 and stop prefixes
  // is left to the final text when stop strings are set).
  std::vector<Token> so_far;
  size_t printed = 0;
  TokenCallback stream = nullptr;
  if (!as_json && o.stop.empty()) {
    std::fputs(text.c_str(), stdout);
    stream = [&](int, Token t, float) {
      so_far.push_back(t);
      std::string s = tok.Decode(so_far);
      // Print only up to the last complete UTF-8 character.
      size_t end = s.size();
      size_t k = end;
      while (k > printed && k > 0 && (static_cast<unsigned char>(s[k - 1]) & 0xC0) == 0x80) --k;
      if (k > 0 && k > printed) {
        unsigned char lead = s[k - 1];
        int need = lead < 0x80 ? 1 : (lead >> 5) == 6 ? 2 : (lead >> 4) == 14 ? 3 : (lead >> 3) == 30 ? 4 : 1;
        end = (int(end - (k - 1)) >= need) ? end : k - 1;
      }
      if (end > printed) {
        std::fwrite(s.data() + printed, 1, end - printed, stdout);
        std::fflush(stdout);
        printed = end;
      }
      return true;
    };
  }
  CLI_TRY(c, GenerateResult r, Generate(ctx, prompt, o, stream), 1);
  if (as_json) {
    json j;
    j["prompt_tokens"] = r.prompt_tokens;
    j["tokens"] = r.tokens;
    j["text"] = ToValidUtf8(r.text);
    j["logprobs"] = r.logprobs;
    j["finish_reason"] = FinishReasonName(r.finish);
    j["prefill_tokens_per_s"] = r.prefill_seconds > 0 ? double(r.prompt_tokens.size()) / r.prefill_seconds : 0.0;
    j["decode_tokens_per_s"] = r.decode_seconds > 0 ? double(r.decode_steps) / r.decode_seconds : 0.0;
    std::printf("%s\n", j.dump().c_str());
  } else {
    if (!o.stop.empty()) {
      std::fputs(text.c_str(), stdout);
      std::fputs(r.text.c_str(), stdout);
    } else if (printed < tok.Decode(so_far).size()) {
      std::string s = tok.Decode(so_far);
      std::fwrite(s.data() + printed, 1, s.size() - printed, stdout);
    }
    std::fputs("\n", stdout);
  }
  return 0;
}

int RunTokenize(const std::vector<std::string>& argv) {
  const char* c = "tokenize";
  CLI_TRY(c, Args a, Args::Parse(argv, {"model", "text"}, {"json", "no-bos", "parse-special"}), 2);
  CLI_TRY(c, std::string path, a.Required("model"), 2);
  if (!a.Has("text")) return Fail(c, "--text is required", 2);
  CLI_TRY(c, std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::Open(path), 1);
  CLI_TRY(c, std::unique_ptr<Tokenizer> tok, Tokenizer::FromGguf(*file), 1);
  std::vector<Token> ids = tok->Encode(a.Str("text"), !a.Flag("no-bos"), a.Flag("parse-special"));
  if (a.Flag("json")) {
    json j;
    j["tokens"] = ids;
    std::printf("%s\n", j.dump().c_str());
  } else {
    for (Token t : ids) {
      std::printf("%6d -> '%s'\n", t, tok->TokenToPiece(t, true).c_str());
    }
  }
  return 0;
}

int RunGenModel(const std::vector<std::string>& argv) {
  const char* c = "gen-model";
  CLI_TRY(c, Args a, Args::Parse(argv, {"arch", "n-embd", "n-layer", "n-head", "n-head-kv", "n-ff",
                                         "n-vocab", "type", "seed", "out", "n-ctx"}, {}), 2);
  GenModelOptions o;
  o.arch = a.Str("arch", "llama");
  CLI_TRY(c, int64_t n_embd, a.Int("n-embd", o.n_embd, 1, 1 << 20), 2);
  CLI_TRY(c, int64_t n_layer, a.Int("n-layer", o.n_layer, 1, 1 << 20), 2);
  CLI_TRY(c, int64_t n_head, a.Int("n-head", o.n_head, 1, 1 << 20), 2);
  CLI_TRY(c, int64_t n_head_kv, a.Int("n-head-kv", n_head, 1, 1 << 20), 2);
  CLI_TRY(c, int64_t n_ff, a.Int("n-ff", o.n_ff, 1, 1 << 24), 2);
  CLI_TRY(c, int64_t n_vocab, a.Int("n-vocab", o.n_vocab, 1, 1 << 24), 2);
  CLI_TRY(c, int64_t n_ctx, a.Int("n-ctx", o.n_ctx, 1, 1 << 24), 2);
  CLI_TRY(c, int64_t seed, a.Int("seed", 1, 0, INT64_MAX), 2);
  CLI_TRY(c, std::string out, a.Required("out"), 2);
  o.n_embd = int(n_embd); o.n_layer = int(n_layer); o.n_head = int(n_head); o.n_head_kv = int(n_head_kv);
  o.n_ff = int(n_ff); o.n_vocab = int(n_vocab); o.n_ctx = int(n_ctx); o.seed = uint64_t(seed);
  const std::string type = a.Str("type", "f32");
  if (type == "f32") o.type = gguf::GgmlType::kF32;
  else if (type == "f16") o.type = gguf::GgmlType::kF16;
  else if (type == "q8_0") o.type = gguf::GgmlType::kQ8_0;
  else if (type == "q4_0") o.type = gguf::GgmlType::kQ4_0;
  else return Fail(c, "--type must be f32, f16, q8_0 or q4_0 (got '" + type + "')", 2);
  if (absl::Status s = ValidateGenModelOptions(o); !s.ok()) return Fail(c, std::string(s.message()), 2);
  if (absl::Status s = WriteRandomModel(o, out); !s.ok()) return Fail(c, std::string(s.message()), 1);
  std::fprintf(stderr, "pice gen-model: wrote %s\n", out.c_str());
  return 0;
}

namespace {

// One benchmark row: B sequences, each with its own P-token prompt (shared = false) or
// all forked from one P-token prompt prefilled once (shared = true), then G decode
// steps for all B together.
absl::StatusOr<json> BenchRow(Context& ctx, const HParams& hp, int64_t B, int64_t P, int64_t G,
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
  return json{{"batch", B},
              {"shared_prefix", shared},
              {"prefill_tokens_per_s", pp},
              {"decode_tokens_per_s", tg},
              {"decode_tokens_per_s_per_seq", tg / double(B)},
              {"kv_bytes", pool->used_bytes()}};
}

// One row through the Engine, as a node serves: B requests submitted together (each
// its own random P-token prompt, or all one prompt when `shared`, which the engine
// prefills once and forks), greedy sampling with callbacks, G tokens each. Prefill:
// prompt tokens computed / time until every request has its first token; decode: the
// other B x (G - 1) tokens / the time from then to the last one's end.
absl::StatusOr<json> EngineRow(Engine& engine, const HParams& hp, int64_t B, int64_t P,
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
  return json{{"prefill_tokens_per_s", pp}, {"decode_tokens_per_s", tg}};
}

// Median of `key` over rows, with "<key>_range": [min, max].
void MedianInto(const std::vector<json>& rows, const std::string& key, json* out) {
  std::vector<double> v;
  for (const json& r : rows) v.push_back(r[key].get<double>());
  std::sort(v.begin(), v.end());
  (*out)[key] = v[v.size() / 2];
  (*out)[key + "_range"] = {v.front(), v.back()};
}

}  // namespace

int RunBenchEngine(const std::vector<std::string>& argv) {
  const char* c = "bench engine";
  CLI_TRY(c, Args a, Args::Parse(argv, {"model", "threads", "prompt-tokens", "gen-tokens", "batch", "repeat"},
                                 {"shared-prefix", "raw"}), 2);
  CLI_TRY(c, std::string path, a.Required("model"), 2);
  CLI_TRY(c, int64_t threads, a.Int("threads", DefaultThreads(), 1, 256), 2);
  CLI_TRY(c, int64_t n_prompt, a.Int("prompt-tokens", 128, 1, 1 << 16), 2);
  CLI_TRY(c, int64_t n_gen, a.Int("gen-tokens", 64, 1, 1 << 16), 2);
  CLI_TRY(c, int64_t repeat, a.Int("repeat", 3, 1, 100), 2);
  CLI_TRY(c, std::vector<int64_t> batches, a.IntList("batch", {1}, 1, 256), 2);
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
    CLI_TRY(c, json ignored, row(1, std::min<int64_t>(n_prompt, 32), 2, false, warm_rng), 1);
    (void)ignored;
  }
  std::vector<bool> modes = {false};
  if (a.Flag("shared-prefix")) modes.push_back(true);
  for (bool shared : modes) {
    for (int64_t B : batches) {
      // The median of `repeat` runs with [min, max]: the machines are shared and noisy,
      // and the best run flatters.
      std::vector<json> rows;
      for (int64_t rep = 0; rep < repeat; ++rep) {
        CLI_TRY(c, json one, row(B, n_prompt, n_gen, shared, rng), 1);
        rows.push_back(one);
        std::fprintf(stderr, "bench engine: batch %lld%s, run %lld/%lld: prefill %.1f t/s, decode %.1f t/s\n",
                     static_cast<long long>(B), shared ? " (shared prefix)" : "",
                     static_cast<long long>(rep + 1), static_cast<long long>(repeat),
                     one["prefill_tokens_per_s"].get<double>(),
                     one["decode_tokens_per_s"].get<double>());
      }
      json r = {{"batch", B}, {"shared_prefix", shared}};
      MedianInto(rows, "prefill_tokens_per_s", &r);
      MedianInto(rows, "decode_tokens_per_s", &r);
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
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace pice::cli

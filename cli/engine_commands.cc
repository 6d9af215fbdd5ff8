// pice generate / tokenize / gen-model / quantize (pice bench engine is bench/engine.cc).
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
#include "engine/quant_mix.h"
#include "engine/quantize_model.h"
#include "nlohmann/json.hpp"

namespace pice::cli {
namespace {

using json = nlohmann::json;

}  // namespace

int DefaultThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : int(std::min(n, 64u));
}

int Fail(const std::string& cmd, const std::string& message, int code) {
  std::fprintf(stderr, "pice %s: %s\n", cmd.c_str(), message.c_str());
  return code;
}


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
  o.type = a.Str("type", "f32");
  if (absl::Status s = ValidateGenModelOptions(o); !s.ok()) return Fail(c, std::string(s.message()), 2);
  if (absl::Status s = WriteRandomModel(o, out); !s.ok()) return Fail(c, std::string(s.message()), 1);
  std::fprintf(stderr, "pice gen-model: wrote %s\n", out.c_str());
  return 0;
}

int RunQuantize(const std::vector<std::string>& argv) {
  const char* c = "quantize";
  CLI_TRY(c, Args a, Args::Parse(argv, {"threads"}, {"pure"}), 2);
  const std::vector<std::string>& pos = a.positional();
  if (pos.size() != 3) {
    return Fail(c, "expected IN.gguf OUT.gguf TYPE (TYPE: one of " + MixNameList() + ")", 2);
  }
  QuantizeModelOptions o;
  o.mix = pos[2];
  o.pure = a.Flag("pure");
  if (absl::Status s = MixFileType(o.mix).status(); !s.ok()) {
    return Fail(c, "TYPE: " + std::string(s.message()), 2);
  }
  CLI_TRY(c, int64_t threads, a.Int("threads", DefaultThreads(), 1, 256), 2);
  o.n_threads = int(threads);
  QuantizeModelReport r;
  const auto start = std::chrono::steady_clock::now();
  if (absl::Status s = QuantizeModel(pos[0], pos[1], o, &r); !s.ok()) {
    return Fail(c, std::string(s.message()), 1);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string counts;
  for (const auto& [type, n] : r.type_counts) {
    absl::StrAppend(&counts, counts.empty() ? "" : ", ", n, " ", gguf::GgmlTypeName(uint32_t(type)));
  }
  std::fprintf(stderr,
               "pice quantize: wrote %s (%s): %d tensors (%s), %d converted, %d fallback; "
               "%.1f MiB -> %.1f MiB in %.1f s\n",
               pos[1].c_str(), o.mix.c_str(), r.n_tensors, counts.c_str(), r.n_converted,
               r.n_fallback, r.in_bytes / 1048576.0, r.out_bytes / 1048576.0, secs);
  return 0;
}

}  // namespace pice::cli

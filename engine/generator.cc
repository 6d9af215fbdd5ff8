#include "engine/generator.h"

#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"

namespace pice {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Cuts `text` at the earliest stop string; true when one matched.
bool CutAtStop(std::string* text, const std::vector<std::string>& stop) {
  size_t cut = std::string::npos;
  for (const std::string& s : stop) {
    if (s.empty()) continue;
    size_t p = text->find(s);
    if (p < cut) cut = p;
  }
  if (cut == std::string::npos) return false;
  text->resize(cut);
  return true;
}

struct Seq {
  std::unique_ptr<KvCache> kv;
  std::unique_ptr<Sampler> sampler;
  std::vector<Token> history;
  GenerateResult result;
  bool done = false;
};

}  // namespace

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "error";
}

double GenerateResult::MeanLogprob() const {
  if (logprobs.empty()) return 0.0;
  double s = 0;
  for (float l : logprobs) s += l;
  return s / double(logprobs.size());
}

absl::Status ValidateGenerateOptions(const GenerateOptions& o) {
  PICE_RETURN_IF_ERROR(ValidateSamplingParams(o.sampling));
  if (o.max_tokens < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  if (o.n_ctx < 0) return absl::InvalidArgumentError("n_ctx must be >= 0");
  return absl::OkStatus();
}

absl::StatusOr<GenerateResult> Generate(Context& ctx, const std::vector<Token>& prompt,
                                        const GenerateOptions& opts, const TokenCallback& on_token) {
  PICE_ASSIGN_OR_RETURN(std::vector<GenerateResult> r, GenerateBatch(ctx, {prompt}, {opts}, on_token));
  return std::move(r[0]);
}

absl::StatusOr<std::vector<GenerateResult>> GenerateBatch(
    Context& ctx, const std::vector<std::vector<Token>>& prompts,
    const std::vector<GenerateOptions>& opts, const TokenCallback& on_token) {
  if (prompts.size() != opts.size()) {
    return absl::InvalidArgumentError("GenerateBatch needs one options entry per prompt");
  }
  const Model& model = ctx.model();
  const Tokenizer& tok = model.tokenizer();
  const int n_vocab = model.hparams().n_vocab;
  std::vector<Seq> seqs(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    PICE_RETURN_IF_ERROR(ValidateGenerateOptions(opts[i]));
    if (prompts[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("prompt ", i, " has no tokens"));
    }
    int n_ctx = opts[i].n_ctx > 0 ? opts[i].n_ctx : int(prompts[i].size()) + opts[i].max_tokens;
    if (int(prompts[i].size()) > n_ctx) {
      return absl::OutOfRangeError(absl::StrCat("prompt of ", prompts[i].size(),
                                                " tokens does not fit the context of ", n_ctx));
    }
    Seq& s = seqs[i];
    s.kv = std::make_unique<KvCache>(model.hparams(), n_ctx);
    s.sampler = std::make_unique<Sampler>(opts[i].sampling);
    s.history = prompts[i];
    s.result.prompt_tokens = prompts[i];
  }

  // Prefill all prompts in one pass.
  std::vector<SeqInput> batch;
  std::vector<int> batch_seq;
  for (size_t i = 0; i < seqs.size(); ++i) {
    batch.push_back({seqs[i].kv.get(), prompts[i].data(), int(prompts[i].size()), false});
    batch_seq.push_back(int(i));
  }
  double t0 = Now();
  PICE_RETURN_IF_ERROR(ctx.Decode(batch));
  double t1 = Now();
  for (Seq& s : seqs) s.result.prefill_seconds = t1 - t0;

  std::vector<Token> next(seqs.size());
  for (;;) {
    // Sample from the logits of the last pass; decide who goes on.
    std::vector<SeqInput> step;
    std::vector<int> step_seq;
    for (size_t b = 0; b < batch_seq.size(); ++b) {
      const int i = batch_seq[b];
      Seq& s = seqs[i];
      const GenerateOptions& o = opts[i];
      if (int(s.result.tokens.size()) >= o.max_tokens) {
        s.result.finish = FinishReason::kLength;
        s.done = true;
        continue;
      }
      const float* logits = ctx.Logits(int(b));
      float lp = 0;
      Token t = s.sampler->Sample({logits, size_t(n_vocab)}, s.history, &lp);
      if (o.stop_at_eog && tok.IsEog(t)) {
        s.result.finish = FinishReason::kStop;
        s.done = true;
        continue;
      }
      s.result.tokens.push_back(t);
      s.result.logprobs.push_back(lp);
      s.history.push_back(t);
      if (on_token && !on_token(i, t, lp)) {
        s.result.finish = FinishReason::kCancelled;
        s.done = true;
        continue;
      }
      if (!o.stop.empty()) {
        std::string text = tok.Decode(s.result.tokens);
        if (CutAtStop(&text, o.stop)) {
          s.result.finish = FinishReason::kStop;
          s.done = true;
          continue;
        }
      }
      if (int(s.result.tokens.size()) >= o.max_tokens) {
        s.result.finish = FinishReason::kLength;
        s.done = true;
        continue;
      }
      if (s.kv->n_past() >= s.kv->n_ctx()) {
        s.result.finish = FinishReason::kLength;  // context full
        s.done = true;
        continue;
      }
      next[i] = t;
      step.push_back({s.kv.get(), &next[i], 1, false});
      step_seq.push_back(i);
    }
    if (step.empty()) break;
    double a = Now();
    PICE_RETURN_IF_ERROR(ctx.Decode(step));
    double d = Now() - a;
    for (int i : step_seq) {
      seqs[i].result.decode_seconds += d;
      seqs[i].result.decode_steps++;
    }
    batch_seq = std::move(step_seq);
  }

  std::vector<GenerateResult> out;
  out.reserve(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    GenerateResult& r = seqs[i].result;
    r.text = tok.Decode(r.tokens);
    CutAtStop(&r.text, opts[i].stop);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace pice

#include "engine/generator.h"

#include <chrono>
#include <algorithm>
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

size_t FindNewStop(std::string_view text, size_t old_size, const std::vector<std::string>& stop) {
  size_t at = std::string_view::npos;
  for (const std::string& s : stop) {
    if (s.empty()) continue;
    const size_t from = old_size >= s.size() - 1 ? old_size - (s.size() - 1) : 0;
    at = std::min(at, text.find(s, from));
  }
  return at;
}

double GenerateResult::MeanLogprob() const {
  const size_t n = logprobs.size() + (stopped_at_eog ? 1 : 0);
  if (n == 0) return 0.0;
  double s = stopped_at_eog ? eog_logprob : 0.0;
  for (float l : logprobs) s += l;
  return s / double(n);
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

SequenceState::SequenceState(std::vector<Token> prompt, const GenerateOptions& options)
    : options_(options), sampler_(options.sampling), history_(prompt) {
  result_.prompt_tokens = std::move(prompt);
}

int SequenceState::MaxPositions() const {
  return std::max<int>(1, int(result_.prompt_tokens.size()) + options_.max_tokens);
}

bool SequenceState::Advance(const float* logits, const Tokenizer& tok, int n_vocab,
                            const std::function<bool(Token, float)>& on_token) {
  float lp = 0;
  const Token t = WantsToken() ? Sample(logits, n_vocab, &lp) : Token(-1);
  return Accept(t, lp, tok, on_token);
}

Token SequenceState::Sample(const float* logits, int n_vocab, float* logprob) {
  return sampler_.Sample({logits, size_t(n_vocab)}, history_, logprob);
}

bool SequenceState::Accept(Token t, float lp, const Tokenizer& tok,
                           const std::function<bool(Token, float)>& on_token) {
  if (!WantsToken()) {
    result_.finish = FinishReason::kLength;
    return false;
  }
  if (options_.stop_at_eog && tok.IsEog(t)) {
    result_.finish = FinishReason::kStop;
    result_.stopped_at_eog = true;
    result_.eog_logprob = lp;
    return false;
  }
  result_.tokens.push_back(t);
  result_.logprobs.push_back(lp);
  history_.push_back(t);
  if (on_token && !on_token(t, lp)) {
    result_.finish = FinishReason::kCancelled;
    return false;
  }
  if (!options_.stop.empty()) {
    // The text grows by this token's piece; only a stop string ending in it can be new.
    const size_t before = text_.size();
    text_ += tok.TokenToPiece(t);
    if (FindNewStop(text_, before, options_.stop) != std::string::npos) {
      result_.finish = FinishReason::kStop;
      return false;
    }
  }
  if (int(result_.tokens.size()) >= options_.max_tokens) {
    result_.finish = FinishReason::kLength;
    return false;
  }
  return true;
}

GenerateResult SequenceState::TakeResult(const Tokenizer& tok) {
  result_.text = tok.Decode(result_.tokens);
  CutAtStop(&result_.text, options_.stop);
  return std::move(result_);
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
  std::vector<std::unique_ptr<SequenceState>> seqs;
  std::vector<std::unique_ptr<KvCache>> kvs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    PICE_RETURN_IF_ERROR(ValidateGenerateOptions(opts[i]));
    if (prompts[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("prompt ", i, " has no tokens"));
    }
    seqs.push_back(std::make_unique<SequenceState>(prompts[i], opts[i]));
    int n_ctx = opts[i].n_ctx > 0 ? opts[i].n_ctx : seqs.back()->MaxPositions();
    if (int(prompts[i].size()) > n_ctx) {
      return absl::OutOfRangeError(absl::StrCat("prompt of ", prompts[i].size(),
                                                " tokens does not fit the context of ", n_ctx));
    }
    kvs.push_back(std::make_unique<KvCache>(model.hparams(), n_ctx));
  }

  // Prefill all prompts in one pass, then one pass per step for the live sequences.
  std::vector<SeqInput> batch;
  std::vector<int> batch_seq;
  for (size_t i = 0; i < seqs.size(); ++i) {
    batch.push_back({kvs[i].get(), prompts[i].data(), int(prompts[i].size()), false});
    batch_seq.push_back(int(i));
  }
  double t0 = Now();
  PICE_RETURN_IF_ERROR(ctx.Decode(batch));
  double t1 = Now();
  for (auto& s : seqs) s->result().prefill_seconds = t1 - t0;

  std::vector<Token> next(seqs.size());
  for (;;) {
    std::vector<SeqInput> step;
    std::vector<int> step_seq;
    for (size_t b = 0; b < batch_seq.size(); ++b) {
      const int i = batch_seq[b];
      auto cb = on_token ? std::function<bool(Token, float)>(
                               [&, i](Token t, float lp) { return on_token(i, t, lp); })
                         : std::function<bool(Token, float)>();
      if (!seqs[i]->Advance(ctx.Logits(int(b)), tok, n_vocab, cb)) continue;
      if (kvs[i]->n_past() >= kvs[i]->n_ctx()) {
        seqs[i]->Finish(FinishReason::kLength);  // context full
        continue;
      }
      next[i] = seqs[i]->next_token();
      step.push_back({kvs[i].get(), &next[i], 1, false});
      step_seq.push_back(i);
    }
    if (step.empty()) break;
    double a = Now();
    PICE_RETURN_IF_ERROR(ctx.Decode(step));
    double d = Now() - a;
    for (int i : step_seq) {
      seqs[i]->result().decode_seconds += d;
      seqs[i]->result().decode_steps++;
    }
    batch_seq = std::move(step_seq);
  }

  std::vector<GenerateResult> out;
  out.reserve(seqs.size());
  for (auto& s : seqs) out.push_back(s->TakeResult(tok));
  return out;
}

}  // namespace pice

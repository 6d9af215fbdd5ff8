#include "node/local_backend.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace pice {
absl::Status LocalBackend::Submit(BackendRequest request) {
  PromptTemplate format;
  format.chat = request.chat;
  format.system = request.system;
  absl::StatusOr<std::vector<Token>> ids =
      EncodePrompt(format, engine_->model(), request.prompt, request.history);
  if (!ids.ok()) return ids.status();
  const size_t limit =
      std::min<size_t>(std::max(1, request.max_prompt_tokens), std::max(1, engine_->n_ctx() - 1));
  if (ids->size() > limit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "question: the prompt is ", ids->size(), " tokens on ", engine_->name(), ", at most ",
        limit, " (limits.max_question_tokens or the model context)"));
  }
  EngineRequest r;
  r.prompt = *std::move(ids);
  r.options = std::move(request.options);
  r.cancelled = std::move(request.cancelled);
  const Tokenizer* tok = &engine_->tokenizer();
  auto on_piece = std::move(request.on_piece);
  if (on_piece) {
    r.on_token = [tok, on_piece = std::move(on_piece)](Token t, float logprob) {
      const std::vector<float> lp = {logprob};
      return on_piece(tok->TokenToPiece(t), lp);
    };
  }
  r.on_done = [on_done = std::move(request.on_done)](absl::StatusOr<GenerateResult> res) {
    if (!res.ok()) {
      on_done(res.status());
      return;
    }
    BackendResult out;
    out.text = std::move(res->text);
    out.finish = res->finish;
    out.prompt_tokens = static_cast<int64_t>(res->prompt_tokens.size());
    out.generated_tokens = static_cast<int64_t>(res->tokens.size());
    out.mean_logprob = res->MeanLogprob();
    on_done(std::move(out));
  };
  return engine_->Submit(std::move(r));
}

BackendStats LocalBackend::Stats() const {
  const EngineStats st = engine_->stats();
  BackendStats b;
  b.queued = st.queued;
  b.active = st.active;
  b.max_batch = st.max_batch;
  b.kv_bytes = st.kv_bytes;
  b.kv_committed_bytes = st.kv_committed_bytes;
  b.tokens_per_s = st.tokens_per_s;
  b.max_kv_bytes = st.max_kv_bytes;
  b.prefix_hits = st.prefix_hits;
  b.prompt_tokens = st.prompt_tokens;
  b.generated_tokens = st.generated_tokens;
  b.completed = st.completed;
  return b;
}

}  // namespace pice

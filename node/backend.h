// Where a node's model runs: in this process on the engine (LocalBackend, a GGUF file),
// or behind an OpenAI-compatible HTTP server (OpenAIBackend: vLLM, llama-server, Ollama,
// SGLang, TGI, another PICE stack). The cloud's Sketch / Generate / Expand and every
// ensemble member go through this interface, so both kinds serve every route alike.
//
// A request is the template's filled prompt (BuiltPrompt) plus the conversation so far;
// the backend renders it (tokens for the engine, a prompt string or a messages list for
// a remote server) and streams text pieces back. The pieces concatenate to the final
// text before any stop string: consumers hold back what a stop string may still cut
// (DeltaStreamer).
//
// Thread safety: Submit from any thread; callbacks run on the backend's own thread (the
// engine worker or the HTTP client's event loop) and must not block.
#ifndef PICE_NODE_BACKEND_H_
#define PICE_NODE_BACKEND_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/generator.h"
#include "node/templates.h"

namespace pice {

struct BackendResult {
  std::string text;             // the generated text, cut before a stop string
  FinishReason finish = FinishReason::kLength;
  int64_t prompt_tokens = 0;    // 0 when the remote did not say
  int64_t generated_tokens = 0;
  // Mean token log-probability (GenerateResult::MeanLogprob for the engine); unset when
  // the remote returned no log-probabilities.
  std::optional<double> mean_logprob;
};

struct BackendRequest {
  BuiltPrompt prompt;
  std::vector<ChatMessage> history;
  // How the prompt is rendered: with the model's chat template (system message, history,
  // user turn, assistant header, then the response prefix) or as plain text (history as
  // "role: content" lines, the prompt, the response prefix). PromptTemplate's fields.
  bool chat = false;
  std::string system;
  GenerateOptions options;      // max_tokens already resolved (never 0)
  // Longer prompts are INVALID_ARGUMENT naming `question` (a local backend also caps it
  // by the model's context; a remote one leaves that check to its server).
  int max_prompt_tokens = 1 << 30;
  // Per piece of generated text (one token's for the engine, one stream chunk's for a
  // remote) with the log-probabilities of the tokens it holds (empty when unknown).
  // Return false to stop generating (the result then ends with finish kCancelled).
  std::function<bool(std::string_view piece, const std::vector<float>& logprobs)> on_piece;
  // Exactly once, after the last piece.
  std::function<void(absl::StatusOr<BackendResult>)> on_done;
  std::shared_ptr<std::atomic<bool>> cancelled;  // may be null
};


// A backend's live state for Load and the drain.
struct BackendStats {
  int queued = 0;
  int active = 0;
  int max_batch = 0;            // requests that may run at once
  size_t kv_bytes = 0;
  size_t kv_committed_bytes = 0;
  double tokens_per_s = 0;      // recent generation rate
  size_t max_kv_bytes = 0;      // 0 = unbounded or unknown (a remote model)
  uint64_t prefix_hits = 0;     // requests that reused a cached prompt prefix
  uint64_t prompt_tokens = 0;   // totals since start
  uint64_t generated_tokens = 0;
  uint64_t completed = 0;
};

// A RESOURCE_EXHAUSTED status may carry when to retry (a remote's Retry-After).
void SetRetryAfterMs(absl::Status* s, int ms);
std::optional<int> RetryAfterMs(const absl::Status& s);

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  // Queues a request. INVALID_ARGUMENT for a bad prompt or options, RESOURCE_EXHAUSTED
  // when full, UNAVAILABLE after Stop. On error no callback is called.
  virtual absl::Status Submit(BackendRequest request) = 0;
  // Cancels what runs; every on_done has returned when Stop returns; later Submits are
  // UNAVAILABLE. Idempotent; must not be called from a callback.
  virtual void Stop() = 0;
  virtual BackendStats Stats() const = 0;
  // The model's name (Load's `models`).
  virtual const std::string& name() const = 0;
  // What this backend cannot do that a caller may rely on, e.g. "no log-probabilities:
  // confidence unknown" (Load's `notes`); empty when nothing is missing.
  virtual std::vector<std::string> Notes() const { return {}; }
};

}  // namespace pice

#endif  // PICE_NODE_BACKEND_H_

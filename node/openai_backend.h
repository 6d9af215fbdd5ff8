// ModelBackend on a remote OpenAI-compatible server (vLLM, llama-server, Ollama, SGLang,
// TGI, another PICE stack's HTTP API): a cloud whose large model runs on GPUs, or an
// ensemble member on an edge GPU box.
//
//   backend:
//     kind: openai
//     base_url: http://gpu-1:8000/v1   # http or https; the path the API lives under
//     model: Qwen/Qwen2.5-7B-Instruct  # the remote's model id
//     api_key_env: VLLM_API_KEY        # optional: the environment variable holding the key
//     api: auto                        # auto | completions | chat
//     timeout: 60s                     # longest silence: connect, first byte, between chunks
//     max_retries: 2                   # retries of a request nothing was received for
//     max_concurrency: 64              # requests in flight; beyond: RESOURCE_EXHAUSTED
//     logprobs: true                   # ask for token log-probabilities (confidence)
//     ca_file: ""                      # https: CA bundle; "" = the system's
//
// Prompts: `api: auto` sends the templates' plain prompts to /completions (the prompt
// text exactly as the local engine would tokenize it) and chat templates to
// /chat/completions (system, history and user turns as messages; a response prefix as a
// final assistant message with vLLM's `continue_final_message`). Every request streams
// (SSE), so sketch points are dispatched as they complete.
//
// Faults map to the codes the scheduler acts on: unreachable, reset, 5xx, 401/403/404
// (the operator's configuration) and a stream cut short: UNAVAILABLE; 429:
// RESOURCE_EXHAUSTED with its Retry-After (RetryAfterMs); silence longer than `timeout`:
// DEADLINE_EXCEEDED; 400/413/422: INVALID_ARGUMENT with the remote's message. Requests
// that received nothing are retried (not 429: that is the remote's back-pressure, the
// scheduler decides where to go). A cancelled request closes its connection.
//
// One event-loop thread serves every request of a backend; one connection per request
// (no keep-alive pool yet).
#ifndef PICE_NODE_OPENAI_BACKEND_H_
#define PICE_NODE_OPENAI_BACKEND_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "node/backend.h"

namespace pice {

struct RemoteModelOptions {
  std::string base_url;
  std::string model;
  std::string api_key_env;
  std::string api = "auto";     // auto | completions | chat
  double timeout_s = 60;
  int max_retries = 2;
  int max_concurrency = 64;
  bool logprobs = true;
  std::string ca_file;
};

// Reads a `backend:` mapping (kind must be openai). Errors name the file and key.
absl::StatusOr<RemoteModelOptions> ReadRemoteModelOptions(const ConfigNode& node);

// Where a model node's (or an ensemble member's) model comes from: exactly one of
// `model: FILE.gguf` (must exist) or `backend: {kind: openai, ...}` under `n`.
absl::Status ReadModelOrBackend(const ConfigNode& n, std::string* model_path,
                                std::optional<RemoteModelOptions>* remote);

class OpenAIBackend final : public ModelBackend {
 public:
  // Checks the URL and reads the key from the environment (INVALID_ARGUMENT naming the
  // key when api_key_env names an unset variable). Does not contact the server.
  static absl::StatusOr<std::unique_ptr<OpenAIBackend>> Create(const RemoteModelOptions& o);
  ~OpenAIBackend() override;

  absl::Status Submit(BackendRequest request) override;
  void Stop() override;
  BackendStats Stats() const override;
  const std::string& name() const override;
  std::vector<std::string> Notes() const override;

  class Impl;

 private:
  explicit OpenAIBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pice

#endif  // PICE_NODE_OPENAI_BACKEND_H_

// OpenAI's HTTP API on top of pice.v1.Pice/Query: the request JSON of
// /v1/chat/completions and /v1/completions as a QueryRequest, the query's events as
// OpenAI's response and stream chunks, and errors as OpenAI's error JSON. Pure functions
// and one per-request streaming state; the HTTP transport is scheduler/http_server.h.
//
// Request mapping: `messages` (chat: the last one, the user's, is the prompt; the earlier
// ones are the history the cloud renders with the model's chat template) or `prompt`
// (completions) -> prompt; `max_tokens` / `max_completion_tokens`, `temperature`, `top_p`, `seed`,
// `stop` (a string or a list) -> params; `n` must be 1; `user` is accepted and not used
// (it is not an identity: limits count per API key or peer); `model`: pice-auto / pice-sketch / pice-cloud pick the route hint, as
// does the extension `pice: {route: "auto"|"sketch"|"cloud"}` (`pice: {cache: false}`: a
// fresh answer, not from the response cache; a cached one says `pice: {cached: true}`); the name of one of the
// cloud's models (its Load) asks for a raw completion on that model, as llama-server and
// vLLM serve it: /v1/completions' prompt as is, /v1/chat/completions' messages with the
// model's own chat template, no sketch and no PICE template (what a pice-cloud whose
// backend is this stack needs). `logprobs` (completions: a count; chat: true) adds the
// tokens' log-probabilities where the cloud streams them (token strings are not
// included: `token_logprobs` / `content[].logprob` only). Unknown fields are ignored.
// Answers: the answer text in sketch order as ordinary `content`, and an extension object
// `pice` (route, sketch points, expansions with node, agreement, escalated) that plain
// clients ignore.
#ifndef PICE_SCHEDULER_OPENAI_H_
#define PICE_SCHEDULER_OPENAI_H_

#include <optional>
#include <string>
#include <vector>

#include "grpcpp/support/status.h"
#include "nlohmann/json.hpp"
#include "pice/v1/pice.pb.h"
#include "scheduler/config.h"

namespace pice::scheduler::openai {

// The model names /v1/models lists; each is a route hint.
inline constexpr const char* kModels[] = {"pice-auto", "pice-sketch", "pice-cloud"};

enum class Endpoint { kChat, kCompletions };

// An OpenAI error: HTTP status and the error object's fields.
struct Error {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" = null
  std::string code;   // "" = null
  int retry_after_s = 0;  // 429: the Retry-After header
};
nlohmann::json ErrorJson(const Error& e);
// A refused or failed query's status as an OpenAI error (400 naming the parameter for
// INVALID_ARGUMENT, 429 + Retry-After for RESOURCE_EXHAUSTED, 503 UNAVAILABLE, 504 for a
// deadline, 500 otherwise).
Error FromStatus(const grpc::Status& s, int retry_after_ms = 0);

struct Request {
  v1::QueryRequest query;
  std::string model;       // as the client named it
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;
};
// Parses a request body. `raw_models`: the cloud's models (raw completions). Errors are
// 400 naming the parameter (`messages[1].content`), 404 for an unknown model.
std::optional<Request> ParseRequest(Endpoint endpoint, const std::string& body, Error* error,
                                    const std::vector<std::string>& raw_models = {});

// GET /v1/models: the route aliases, then the cloud's models.
nlohmann::json ModelsJson(int64_t created, const std::vector<std::string>& raw_models = {});

// Builds the response of one query from its events, as they arrive. Not thread-safe.
class Response {
 public:
  Response(Endpoint endpoint, std::string id, std::string model, int64_t created,
           const SchedulerOptions* options, bool logprobs = false);

  // For a streamed answer: the `data:` payloads (JSON) this event adds, in order.
  std::vector<nlohmann::json> Chunks(const v1::QueryEvent& ev);
  // The final chunks (finish_reason; usage when asked), after the answer.
  std::vector<nlohmann::json> FinalChunks(bool include_usage) const;
  // For a non-streamed answer, once the query ended OK.
  nlohmann::json Whole() const;

 private:
  nlohmann::json Chunk(nlohmann::json delta_or_text, const char* finish,
                       const std::vector<float>* logprobs = nullptr) const;
  nlohmann::json LogprobsJson(const std::vector<float>& logprobs) const;
  // Text of the answer in sketch order that is ready and not sent yet.
  std::string NextText();

  Endpoint endpoint_;
  std::string id_, model_;
  int64_t created_;
  const SchedulerOptions* options_;
  bool role_sent_ = false;
  std::vector<std::optional<std::string>> parts_;  // per point, once expanded
  std::vector<std::string> points_;
  size_t next_part_ = 0;
  std::string sent_;        // content streamed so far
  std::string answer_;      // the final text
  std::string finish_ = "stop";
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  bool logprobs_ = false;
  std::vector<float> all_logprobs_;  // for Whole()
  nlohmann::json pice_ = nlohmann::json::object();
};

}  // namespace pice::scheduler::openai

#endif  // PICE_SCHEDULER_OPENAI_H_

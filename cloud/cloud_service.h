// pice.v1.Cloud on the callback API: Sketch (a stream of points, each sent as soon as it
// is complete, then `done`), Generate (a stream of text deltas, then `done`) and Expand
// (the edge's response shape, from a one-member ensemble on the cloud model).
//
// The model runs on a backend (node/backend.h): the engine in this process, or a remote
// OpenAI-compatible server (`backend:` in cloud.yaml). Model work runs on the backend's
// thread; the gRPC threads only validate and submit. A client that cancels (or whose
// deadline passes) cancels the backend request. Generate also serves raw completions
// (GenerateRequest.format) for the scheduler's /v1 model endpoints.
// Errors: INVALID_ARGUMENT naming the field; RESOURCE_EXHAUSTED when the engine's queue is
// full (back off: trailing metadata `retry-after-ms`); UNAVAILABLE while draining.
#ifndef PICE_CLOUD_CLOUD_SERVICE_H_
#define PICE_CLOUD_CLOUD_SERVICE_H_

#include <atomic>
#include <memory>

#include "absl/status/statusor.h"
#include "cloud/cloud_config.h"
#include "node/node_metrics.h"
#include "node/templates.h"
#include "node/ensemble.h"
#include "node/backend.h"
#include "pice/v1/pice.grpc.pb.h"

namespace pice {

class CloudService final : public v1::Cloud::CallbackService {
 public:
  // Loads the template and the model. Errors name the file at fault.
  static absl::StatusOr<std::unique_ptr<CloudService>> Create(const CloudOptions& options);
  // Stops the engine first: the expander's callbacks touch the expander, and the engine
  // (shared with it) would otherwise outlive it.
  ~CloudService();

  grpc::ServerWriteReactor<v1::SketchEvent>* Sketch(grpc::CallbackServerContext* ctx,
                                                    const v1::SketchRequest* req) override;
  grpc::ServerWriteReactor<v1::GenerateEvent>* Generate(grpc::CallbackServerContext* ctx,
                                                        const v1::GenerateRequest* req) override;
  grpc::ServerUnaryReactor* Expand(grpc::CallbackServerContext* ctx, const v1::ExpandRequest* req,
                                   v1::ExpandResponse* resp) override;
  // The engine's live state (queue, batch, KV) and whether the node drains.
  grpc::ServerUnaryReactor* Load(grpc::CallbackServerContext* ctx, const v1::LoadRequest* req,
                                 v1::LoadResponse* resp) override;
  void FillLoad(v1::LoadResponse* resp) const;

  // New calls are refused with UNAVAILABLE from now on; running ones go on.
  void SetDraining() { draining_ = true; }
  // Nothing queued or running in the engine (for the drain).
  bool Idle() const;
  ModelBackend& backend() { return *backend_; }
  // The local model's tokenizer; null when the model is remote.
  const Tokenizer* tokenizer() const;

 private:
  CloudService() = default;
  // A request with the template's prompt format, the history and the node's limits.
  BackendRequest NewRequest(BuiltPrompt prompt,
                            const google::protobuf::RepeatedPtrField<v1::ChatTurn>& history,
                            const GenerateOptions& options) const;
  absl::StatusOr<GenerateOptions> Options(const v1::SamplingParams& p, const PromptPart& part) const;
  // What Sketch and Generate check first: UNAVAILABLE while draining, INVALID_ARGUMENT
  // naming `request_id` or `question`.
  absl::Status CheckRequest(const std::string& request_id, const std::string& question,
                            const google::protobuf::RepeatedPtrField<v1::ChatTurn>& history) const;

  CloudOptions options_;
  std::string model_version_;  // node/model_version.h
  PromptTemplate template_;
  std::shared_ptr<ModelBackend> backend_;
  std::unique_ptr<Ensemble> expander_;
  std::atomic<bool> draining_{false};
  std::unique_ptr<NodeMetrics> metrics_;  // last: gone before what it reads
};

}  // namespace pice

#endif  // PICE_CLOUD_CLOUD_SERVICE_H_

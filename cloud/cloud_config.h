// cloud.yaml: what pice-cloud serves and with which model. Relative paths resolve
// against the YAML file's directory. Every key is optional except template and one of
// model / backend; all but model, backend and max_queue are every node's
// (node/node_config.h). With a backend, threads / max_batch / n_ctx do not apply.
//
//   node: cloud                  # name reported in responses (default "cloud")
//   listen: 0.0.0.0:50061        # host:port; port 0 = any free port
//   model: ../models/pice-arith/arith-cloud-f16.gguf
//   # or, instead of `model`, a remote OpenAI-compatible server (node/openai_backend.h):
//   # backend: {kind: openai, base_url: http://gpu:8000/v1, model: Qwen/Qwen2.5-7B-Instruct}
//   template: ../templates/pice-arith.yaml
//   threads: 2                   # forward-pass threads
//   max_batch: 16                # sequences decoded together
//   max_queue: 64                # requests waiting for the batch
//   n_ctx: 0                     # per-sequence context; 0 = the model's
//   drain_seconds: 30            # on SIGTERM: time running calls get to finish
//   log_level: info
//   limits:
//     max_question_bytes: 8192
//     max_question_tokens: 4096  # prompt tokens at most (also capped by the model context)
//     max_tokens: 1024           # params.max_tokens above this is INVALID_ARGUMENT
//     max_points: 16             # SketchRequest.max_points above this is INVALID_ARGUMENT
//     max_sketch_points: 64      # ExpandRequest.sketch size at most
//     max_point_bytes: 1024
//     max_stop: 8
//     max_stop_bytes: 64
#ifndef PICE_CLOUD_CLOUD_CONFIG_H_
#define PICE_CLOUD_CLOUD_CONFIG_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "node/node_config.h"
#include "node/openai_backend.h"

namespace pice {

// cloud.yaml: the common node keys (node/node_config.h) plus `model` and `max_queue`.
struct CloudOptions : NodeOptions {
  CloudOptions() {
    node = "cloud";
    listen = "0.0.0.0:50061";
  }
  std::string model_path;
  std::optional<RemoteModelOptions> remote;  // `backend:` instead of `model:`
  int max_queue = 64;  // requests waiting for the engine's batch at most
};

absl::StatusOr<CloudOptions> LoadCloudOptions(const std::string& path);
absl::StatusOr<CloudOptions> ParseCloudOptions(const ConfigNode& root);

}  // namespace pice

#endif  // PICE_CLOUD_CLOUD_CONFIG_H_

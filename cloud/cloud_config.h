// cloud.yaml: what pice-cloud serves and with which model. Relative paths resolve
// against the YAML file's directory. Every key is optional except model and template.
//
//   node: cloud                  # name reported in responses (default "cloud")
//   listen: 0.0.0.0:50061        # host:port; port 0 = any free port
//   model: ../models/pice-arith/arith-cloud-f16.gguf
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

#include <string>

#include "absl/status/statusor.h"
#include "common/config.h"

namespace pice {

// Request limits shared by the cloud and the edge.
struct RequestLimits {
  int max_question_bytes = 8192;
  int max_question_tokens = 4096;
  int max_tokens = 1024;
  int max_points = 16;
  int max_sketch_points = 64;
  int max_point_bytes = 1024;
  int max_stop = 8;
  int max_stop_bytes = 64;
};

struct CloudOptions {
  std::string node = "cloud";
  std::string listen = "0.0.0.0:50061";
  std::string model_path;
  std::string template_path;
  int threads = 2;
  int max_batch = 16;
  int max_queue = 64;
  int n_ctx = 0;
  double drain_seconds = 30;
  std::string log_level = "info";
  RequestLimits limits;
};

absl::StatusOr<CloudOptions> LoadCloudOptions(const std::string& path);
absl::StatusOr<CloudOptions> ParseCloudOptions(const ConfigNode& root);

// Reads the `limits` mapping under `root` into *limits (shared with edge.yaml).
absl::Status ReadRequestLimits(const ConfigNode& root, RequestLimits* limits);

}  // namespace pice

#endif  // PICE_CLOUD_CLOUD_CONFIG_H_

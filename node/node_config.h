// What every model node's YAML file (cloud.yaml, edge.yaml) has in common: its name,
// where it listens, its prompt template, the engine's threads / batch / context, the drain
// time, the log level and the request limits. Relative paths resolve against the file's
// directory; every error names the file and key.
//
//   node: edge-1                 # name reported in responses and logs
//   listen: 0.0.0.0:50071        # host:port; port 0 = any free port
//   tls: {cert: server.pem, key: server-key.pem, client_ca: ca.pem}  # optional (common/tls.h)
//   metrics_listen: 0.0.0.0:9071 # optional: Prometheus /metrics (common/metrics.h)
//   template: ../templates/pice-arith.yaml
//   threads: 2                   # forward-pass threads
//   max_batch: 16                # sequences decoded together
//   n_ctx: 0                     # per-sequence context; 0 = the model's
//   drain_seconds: 30            # on SIGTERM: time running calls get to finish
//   log_level: info
//   log_format: text             # text | json (one object per line, common/logging.h)
//   limits:
//     max_question_bytes: 8192
//     max_question_tokens: 4096  # prompt tokens at most (also capped by the model context)
//     max_tokens: 1024           # params.max_tokens above this is INVALID_ARGUMENT
//     max_points: 16             # SketchRequest.max_points above this is INVALID_ARGUMENT
//     max_sketch_points: 64      # ExpandRequest.sketch size at most
//     max_point_bytes: 1024
//     max_stop: 8
//     max_stop_bytes: 64
#ifndef PICE_NODE_NODE_CONFIG_H_
#define PICE_NODE_NODE_CONFIG_H_

#include <set>
#include <string>

#include "absl/status/status.h"
#include "common/config.h"
#include "common/tls.h"

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

// The keys above. CloudOptions and EdgeOptions extend it with their own.
struct NodeOptions {
  std::string node;
  std::string listen;
  ServerTls tls;  // `tls: {cert, key, client_ca}` (common/tls.h)
  std::string metrics_listen;  // "" = no /metrics (common/metrics.h)
  std::string template_path;
  int threads = 2;
  int max_batch = 16;
  int n_ctx = 0;
  double drain_seconds = 30;
  std::string log_level = "info";
  std::string log_format = "text";  // text | json (common/logging.h)
  RequestLimits limits;
};

// Reads the `limits` mapping under `root` into *limits.
absl::Status ReadRequestLimits(const ConfigNode& root, RequestLimits* limits);

// Reads the common keys of `root` into *o (keeping o's defaults for absent ones) after
// checking that `root` has no key outside them and `own_keys` (the file's own, which the
// caller reads). `template` is required and must name a file.
absl::Status ReadNodeOptions(const ConfigNode& root, const std::set<std::string>& own_keys,
                             NodeOptions* o);

}  // namespace pice

#endif  // PICE_NODE_NODE_CONFIG_H_

// edge.yaml: the ensemble an edge node runs and how it selects. Relative paths resolve
// against the YAML file's directory; the same model file may appear in several members
// (it is loaded once; its members decode in one batch).
//
//   node: edge-1                 # name reported in responses and Load
//   listen: 0.0.0.0:50071
//   template: ../templates/pice-arith.yaml
//   ensemble:                    # 1..16 members
//     - name: edge-a             # unique
//       model: ../models/pice-arith/arith-edge-a.gguf
//       # or a remote model instead: backend: {kind: openai, base_url, model, ...}
//       temperature: 0           # optional; default: the request's temperature
//       seed: 1                  # optional; default: the request's seed + member index
//       weight: 1.0              # voting weight, > 0
//   selection:
//     method: consensus          # confidence | consensus | hybrid
//     similarity: auto           # auto | exact | words | chars
//     hybrid_weight: 0.5         # share of consensus in the hybrid score, [0, 1]
//     agree_similarity: 1.0      # similarity counted as agreement, (0, 1]
//   max_slots: 4                 # Expand calls running at once
//   max_queue: 4                 # Expand calls waiting; beyond: RESOURCE_EXHAUSTED
//   threads: 2                   # forward-pass threads per distinct model file
//   max_batch: 16                # per engine
//   n_ctx: 0
//   drain_seconds: 30
//   log_level: info
//   limits: {...}                # as in cloud.yaml (cloud/cloud_config.h)
#ifndef PICE_EDGE_EDGE_CONFIG_H_
#define PICE_EDGE_EDGE_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "node/node_config.h"
#include "node/ensemble.h"
#include "node/voting.h"

namespace pice {

// edge.yaml: the common node keys (node/node_config.h) plus the ensemble, its
// selection and the node's admission (max_slots running, max_queue waiting).
struct EdgeOptions : NodeOptions {
  EdgeOptions() {
    node = "edge";
    listen = "0.0.0.0:50071";
  }
  std::vector<EnsembleMember> members;
  VoteOptions vote;
  int max_slots = 4;
  int max_queue = 4;
};

absl::StatusOr<EdgeOptions> LoadEdgeOptions(const std::string& path);
absl::StatusOr<EdgeOptions> ParseEdgeOptions(const ConfigNode& root);

}  // namespace pice

#endif  // PICE_EDGE_EDGE_CONFIG_H_

// A model node's Prometheus series (common/metrics.h), labelled with the node's name and read
// from its backends' state at each scrape, with vLLM's names:
//   pice_num_requests_running{node}, pice_num_requests_waiting{node}   (the engines' batch
//   and queue), pice_kv_cache_usage_perc{node} (KV bytes in use / the budget, 0..1),
//   pice_prompt_tokens_total{node}, pice_generation_tokens_total{node},
//   pice_prefix_cache_hits_total{node} (requests that reused a cached prompt prefix).
#ifndef PICE_NODE_NODE_METRICS_H_
#define PICE_NODE_NODE_METRICS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "node/backend.h"

namespace pice {

class NodeMetrics {
 public:
  // `stats`: the node's distinct backends' stats; called at scrape time, until destroyed.
  NodeMetrics(const std::string& node, std::function<std::vector<BackendStats>()> stats);

 private:
  std::shared_ptr<void> scrape_;
};

}  // namespace pice

#endif  // PICE_NODE_NODE_METRICS_H_

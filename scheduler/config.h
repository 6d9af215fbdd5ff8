// scheduler.yaml: the scheduler's options, filled by one loader.
//
//   listen: 0.0.0.0:50051          # host:port; port 0 picks a free port
//   tls: {cert: server.pem, key: server-key.pem, client_ca: ca.pem}  # the client port (gRPC
//                                  # and HTTP): TLS; client_ca = mutual TLS (common/tls.h)
//   node_tls: {ca: ca.pem, cert: client.pem, key: client-key.pem, server_name: pice-node}
//                                  # links to cloud and edges: verify them against ca, present
//                                  # cert; server_name when their certificates do not carry
//                                  # the address (absent: plaintext links)
//   api_keys_file: keys.txt        # optional: every query needs a listed key (scheduler/api_keys.h)
//   http_listen: 0.0.0.0:8080      # OpenAI-compatible HTTP API (scheduler/http_server.h);
//                                  # absent = off
//   http_max_body_bytes: 1048576   # larger request bodies: 413
//   metrics_listen: 0.0.0.0:9051   # Prometheus /metrics (scheduler/scheduler_metrics.h)
//   cloud: 127.0.0.1:50061         # the pice-cloud address, or replicas as a list of
//                                  # host:port / {name, address} / {dns: name:port, refresh}
//   edges:                         # pice-edge addresses (a string or {name, address})
//     - 127.0.0.1:50071
//     - {name: edge-b, address: 127.0.0.1:50072}
//     - {dns: "pice-edge.pice.svc:50071", refresh: 5s}   # every A/AAAA record (discovery.h)
//   edges_file: edges.txt          # "host:port" or "name host:port" lines, reloaded on change
//   policy: general                # a built-in policy name (general, or pice-arith for the
//                                  # bundled demo models), an inline mapping, or policy_file
//   # policy_file: policy.yaml     # or a file (relative to this file)
//   escalation:
//     threshold: 0.5               # edge agreement below this: the cloud re-expands; 0 = never
//     min_confidence: off          # or a mean log-prob: a selected candidate below it escalates
//     on_edge_failure: true        # after the edges failed, the cloud expands the point
//   limits:
//     max_prompt_bytes: 8192
//     max_points: 16               # sketch point budget at most
//     max_tokens: 1024             # params.max_tokens above this is refused
//     max_concurrent_queries: 64   # more are refused with RESOURCE_EXHAUSTED
//     max_queries_per_client: 16   # per x-api-key (else per peer address); 0 = off
//     max_edge_attempts: 2         # edges tried per point before the cloud
//     max_stop: 8                  # params.stop strings at most
//     max_stop_bytes: 64           # bytes per stop string at most
//     max_category_bytes: 64
//   health:                        # grpc.health.v1 probes + call outcomes
//     eject_after: 3               # consecutive failed calls/probes that eject a node
//     eject_base: 1s               # first ejection; doubles while it keeps failing
//     eject_max: 30s
//   degraded:
//     enabled: true                # cloud unreachable: an edge answers the whole question
//   answer:                        # how the sketch route joins the expansions
//     point_format: "{expansion}"  # {point}, {expansion} (the node's answer text, already
//                                  # formatted by its template), {n} (1-based index)
//     separator: "\n"
//   timeouts:
//     expand: 10s                  # per edge attempt
//     query: 120s                  # when the client sets no deadline
//     load_poll: 200ms             # health + Load polling period
//     drain: 30s                   # on SIGTERM: time running queries get to finish
#ifndef PICE_SCHEDULER_CONFIG_H_
#define PICE_SCHEDULER_CONFIG_H_

#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "common/tls.h"
#include "scheduler/discovery.h"
#include "scheduler/policy.h"
#include "scheduler/response_cache.h"

namespace pice::scheduler {

struct EdgeAddress {
  std::string name;     // display name; default "edge-<i>" (the edge reports its own too)
  std::string address;  // host:port
};

struct SchedulerOptions {
  std::string listen = "0.0.0.0:50051";
  std::string http_listen;            // "" = no HTTP API
  std::string metrics_listen;         // "" = no /metrics (common/metrics.h)
  std::string log_format = "text";   // text | json (common/logging.h)
  ServerTls tls;                      // the client listeners (gRPC and HTTP)
  ClientTls node_tls;                 // links to cloud and edges
  CacheOptions cache;                 // the response cache (scheduler/response_cache.h)
  std::string api_keys_file;          // "" = no keys: queries count per x-api-key or peer
  int http_max_body_bytes = 1 << 20;
  // Required: the cloud replicas (`cloud: host:port`, or a list like `edges:`); calls go
  // to the least-loaded healthy one (scheduler/registry.h).
  std::vector<EdgeAddress> clouds;
  std::vector<EdgeSource> cloud_sources;  // `cloud: [{dns: ...}]`
  std::vector<EdgeAddress> edges;     // may be empty: every query goes to the cloud
  std::vector<EdgeSource> edge_sources;  // `edges: [{dns: ...}]`, `edges_file:` (discovery.h)
  Policy policy;                      // default: built-in "general"
  // Where the policy is re-read from on a change or SIGHUP (PiceService::ReloadPolicy):
  // policy_file when given, else the scheduler's own file (its `policy:`); "" = nowhere.
  std::string policy_file;
  std::string config_file;
  double escalation_threshold = 0.5;  // in [0, 1]; 0 = never escalate on agreement
  // Also escalate when the selected candidate's mean token log-probability is below
  // this; -inf (the default, `off` in YAML) = never on confidence.
  double escalation_min_confidence = -std::numeric_limits<double>::infinity();
  bool escalate_on_edge_failure = true;
  int max_prompt_bytes = 8192;
  int max_points = 16;
  // Accepted in old files and ignored: a request that leaves params.max_tokens at 0 gets
  // each node template's own budget (sketch.max_tokens, full.max_tokens, expand.max_tokens).
  int default_max_tokens = 0;
  int max_tokens = 1024;
  int max_concurrent_queries = 64;
  int max_queries_per_client = 16;    // 0 = no per-client limit
  int max_edge_attempts = 2;
  int max_stop = 8;
  int max_stop_bytes = 64;
  int max_category_bytes = 64;
  int eject_after_failures = 3;       // consecutive failures that eject a node
  double eject_base_s = 1;            // first ejection; doubles up to eject_max_s
  double eject_max_s = 30;
  bool degraded_enabled = true;       // edges answer alone when the cloud is unreachable
  std::string point_format = "{expansion}";
  std::string answer_separator = "\n";
  double expand_timeout_s = 10;
  double query_timeout_s = 120;
  double load_poll_s = 0.2;
  double drain_timeout_s = 30;
};

// Reads the scheduler's options from a parsed file; errors name the file and key.
absl::StatusOr<SchedulerOptions> ParseSchedulerOptions(const ConfigNode& root);
absl::StatusOr<SchedulerOptions> LoadSchedulerOptions(const std::string& path);

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_CONFIG_H_

// A discrete-event simulator of PICE (issue 15): the same system as the testbed — clients,
// one or more schedulers, cloud replicas and edges with their ensembles over links — with
// every node's speed taken from measured profiles instead of running models, so that it
// runs at 10,000 edges in seconds.
//
// What is modelled, and from what measurement:
// - An engine (the cloud's model, each edge member) is a continuous-batching server: each
//   step decodes one token for every running sequence (up to max_batch), and newly
//   admitted sequences prefill in the step they join. A step with b decoding sequences
//   takes b / decode_tokens_per_s(b) seconds, the rate interpolated from `pice bench
//   engine --batch ...` figures; prefill adds prompt tokens / prefill_tokens_per_s.
//   Engines that share a CPU (an edge's members; edges placed on one core) share it:
//   a step is as many times longer as engines of the group are stepping.
// - A link adds RTT/2 each way, uniform jitter, size / bandwidth and, with probability
//   `loss` per message, an RTO (as bench/relay.cc emulates them).
// - A scheduler is a CPU with `threads` cores: each query costs the CPU measured per
//   query for its route (the testbed's scheduler_cpu_ms_per_query), plus, per point, a
//   scan of every registered edge (AcquireEdge is a linear scan), and its Load probes
//   take edges * cpu_per_probe every load_poll off the CPU's capacity.
// - Edge choice as the registry makes it: the fewest of this scheduler's own calls in
//   flight per slot, ties broken in a per-scheduler rotation; unhealthy edges skipped.
//   A scheduler learns an edge died from a failed call (at once) or its next probe.
// - Edge admission (max_slots running, max_queue waiting, the rest refused) and the
//   scheduler's answer to full edges: another edge, then the cloud expands the point.
// - Churn: each edge fails after an exponential time (mean mttf) and returns after an
//   exponential time (mean mttr) with an empty engine. Its calls in flight fail; the
//   point is retried on another edge (max_edge_attempts) and then expanded by the cloud.
// - Each engine's prefix cache: a query's later prompts on the same engine (the second
//   point on an edge, the cloud's expansion after its sketch) prefill only past the
//   question (16 entries, LRU, as EngineOptions).
// - Escalation: a fraction of points is re-expanded by the cloud after the edge's vote
//   (`pice bench quality` measures the fraction).
// - `auto` is decided by the real policy code (scheduler/policy.h) on the simulated live
//   state.
// Not modelled: the cloud's failure, KV-cache memory limits, per-token streaming cost on
// the links (messages are small next to 20 Mbit/s), cancellation of timed-out queries.
#ifndef PICE_BENCH_SIM_SIM_H_
#define PICE_BENCH_SIM_SIM_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "scheduler/policy.h"

namespace pice::bench::sim {

// One engine's measured speed.
struct EngineProfile {
  std::vector<std::pair<int, double>> decode;  // (batch, tokens/s summed over the batch), ascending
  double prefill_tokens_per_s = 100;
  int max_batch = 16;
  // Attention grows with the context: optionally the same engine measured at a shorter
  // context; a step's time is interpolated linearly in its sequences' mean context
  // between the two (extrapolated past the longer one). context = the mean context over
  // the measurement of `decode` (prompt + half the generated tokens).
  double context = 0;
  std::vector<std::pair<int, double>> decode_short;
  double context_short = 0;
  // Seconds of one decode step for b sequences at mean context `ctx` (< 0: `decode`'s).
  double StepSeconds(int b, double ctx = -1) const;
  // `decode`'s tokens/s at batch b.
  double TokensPerSecond(int b) const;
};

struct LinkModel {
  double rtt_s = 0, jitter_s = 0, mbit = 0, loss = 0, rto_s = 0.2;
};

struct Workload {
  int prompt_tokens = 24;          // the question, prefilled by the cloud
  int expand_prompt_tokens = 64;   // question + sketch + point, prefilled by each member
  double sketch_tokens = 22.5;     // the cloud's sketch (fractional: drawn per query)
  int points = 4;
  int expand_tokens = 64;          // per point and member
  int full_tokens = 256;           // the cloud route's answer
  double escalation = 0;           // fraction of points the cloud re-expands
};

struct SchedulerModel {
  int replicas = 1;                // clients spread evenly over them
  int threads = 1;                 // cores of each
  double cpu_s_cloud_query = 1e-3;
  double cpu_s_sketch_query = 2e-3;
  double cpu_s_per_edge_scan = 5e-9;  // per point and registered edge
  double cpu_s_per_probe = 40e-6;
  double load_poll_s = 0.2;
  int max_edge_attempts = 2;
  // Each replica lists only its share of the edges (edge i belongs to replica i % replicas,
  // as with one DNS name per site): it probes and scans N / replicas edges. Otherwise
  // every replica lists, probes and scans them all.
  bool shard_edges = false;
};

struct Topology {
  EngineProfile cloud, edge;
  int clouds = 1, edges = 2, members = 1;
  // An edge's admission (edge.yaml max_slots / max_queue): at most `edge_slots` Expand calls
  // run (so its engines batch at most that many points) and `edge_queue` wait; beyond,
  // RESOURCE_EXHAUSTED. The scheduler skips full edges, tries another, then the cloud.
  int edge_slots = 4, edge_queue = 4;
  int edges_per_cpu = 1;           // edges sharing one CPU set
  LinkModel cloud_link, edge_link;
  SchedulerModel sched;
  double mttf_s = 0, mttr_s = 60;  // edge churn; mttf 0 = none
  scheduler::Policy policy;        // decides `auto`
};

struct RunSpec {
  std::string route = "sketch";    // cloud | sketch | auto
  double rate = 1;                 // Poisson arrivals per second
  int queries = 0;                 // > 0: exactly this many arrivals
  double duration_s = 10;          // else arrivals for this long
  double timeout_s = 600;
  uint64_t seed = 1;
};

struct QueryResult {
  bool ok = false;
  double latency_s = 0, first_s = 0, end_s = 0;  // end: since the run's start
  double cloud_tokens = 0, useful_tokens = 0;
  bool sketch = false;             // the route it took (auto decides per query)
  int retries = 0;
};

struct RunResult {
  std::vector<QueryResult> queries;
  double span_s = 0;               // simulated time until the last event
  double cloud_utilization = 0;    // CPU busy share of the cloud replicas
  double edge_utilization = 0;     // of the edges' CPUs
  double scheduler_utilization = 0;  // of the schedulers' cores, probes included
  int64_t events = 0;
};

RunResult Simulate(const Topology& topo, const Workload& work, const RunSpec& run);

}  // namespace pice::bench::sim

#endif  // PICE_BENCH_SIM_SIM_H_
